"""Creation in any order (issue 23): a virtual node's backend may name a virtual service that
does not exist yet, as on App Mesh ("App Mesh doesn't validate the existence of those virtual
services specified in backends ... The virtual service can be created afterwards").

The node is valid and compiles without a route or cluster for the missing service;
``meshplane validate``, ``/status`` and ``explain`` say why; creating the service later
recompiles the caller (its plan recorded the missing service), and the result is what a cold
compile of the new model gives, byte for byte. The references App Mesh does check (a
route's target node, a service's provider, a gateway route's service) stay errors.
"""
from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mesh_model import ModelError, load_texts
from mesh_model.compiler import Placement, compile_node, model_warnings, type_urls
from mesh_model.explain import explain_node, http_request
from mesh_model.node_id import NodeRef
from xds_server.cache.snapshot import Snapshot
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane

from tests.unit.test_incremental_property import MODELS, PLACEMENTS, _content, _documents, _envoy_node, _ModelSource, _nodes, _texts

RETAIL = "retail"
CART = "cart.retail.local"


def _retail_without(*names: str) -> list[dict]:
    return [d for d in _documents(RETAIL) if not (d["kind"] == "VirtualService" and d["name"] in names)]


def _load(docs: list[dict]):
    return load_texts(_texts(docs))


def _front(model, placement: Placement = Placement()):
    return compile_node(model, NodeRef(RETAIL, "virtualNode", "front"), placement)


def _domains(resources) -> set[str]:
    return {d for rc in resources[type_urls.ROUTE].values() for vh in rc.virtual_hosts for d in vh.domains}


def test_a_backend_that_does_not_exist_yet_is_valid_and_gets_no_route():
    model = _load(_retail_without(CART))  # front lists cart.retail.local; the service is not created yet
    resources = _front(model)
    assert not any(d.startswith(CART) for d in _domains(resources))
    assert "cds_egress_retail_cart_http_7070" not in resources[type_urls.CLUSTER]
    assert any(d.startswith("catalog.retail.local") for d in _domains(resources))  # the other backends still work
    assert model_warnings(model) == [
        f"VirtualNode retail/front: backend virtual service '{CART}' does not exist in mesh 'retail' (yet): "
        "requests to it find no route until it is created"]
    # once created, the caller has its route and cluster, exactly as if it had been there all along
    full = _load(_documents(RETAIL))
    assert any(d.startswith(CART) for d in _domains(_front(full)))
    assert "cds_egress_retail_cart_http_7070" in _front(full)[type_urls.CLUSTER]
    assert model_warnings(full) == []


def test_a_node_whose_backend_is_the_service_it_provides():
    """CDK's case (aws-cdk #17322): the node comes first, naming its own service as a backend."""
    node = {"kind": "VirtualNode", "mesh": "m", "name": "a",
            "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                     "serviceDiscovery": {"dns": {"hostname": "a.local"}},
                     "backends": [{"virtualService": {"virtualServiceName": "a.local"}}]}}
    service = {"kind": "VirtualService", "mesh": "m", "name": "a.local",
               "spec": {"provider": {"virtualNode": {"virtualNodeName": "a"}}}}
    first = _load([{"kind": "Mesh", "name": "m"}, node])
    ref = NodeRef("m", "virtualNode", "a")
    assert "cds_egress_m_a_http_8080" not in compile_node(first, ref)[type_urls.CLUSTER]
    second = _load([{"kind": "Mesh", "name": "m"}, node, service])
    assert "cds_egress_m_a_http_8080" in compile_node(second, ref)[type_urls.CLUSTER]


def _body(route: dict) -> dict:
    """The httpRoute/grpcRoute/... of a route document."""
    return next(v for v in route["spec"].values() if isinstance(v, dict) and "action" in v)


def test_references_app_mesh_checks_stay_errors():
    docs = _documents(RETAIL)
    bad = copy.deepcopy(docs)
    route = next(d for d in bad if d["kind"] == "Route")
    _body(route)["action"]["weightedTargets"][0]["virtualNode"] = "ghost"
    with pytest.raises(ModelError, match="virtual node 'ghost' not found in mesh 'retail'"):
        _load(bad)
    bad = copy.deepcopy(docs)
    next(d for d in bad if d["name"] == CART)["spec"] = {"provider": {"virtualNode": {"virtualNodeName": "ghost"}}}
    with pytest.raises(ModelError, match="virtual node 'ghost' not found"):
        _load(bad)
    gateway = [d for d in _documents("gateway")]
    target = next(d for d in gateway if d["kind"] == "GatewayRoute")
    service = _body(target)["action"]["target"]["virtualService"]["virtualServiceName"]
    with pytest.raises(ModelError, match=f"virtual service '{service}' not found"):
        _load([d for d in gateway if not (d["kind"] == "VirtualService" and d["name"] == service)])


def test_validate_warns_and_passes(tmp_path):
    (tmp_path / "model.yaml").write_text(yaml.safe_dump_all(_retail_without(CART), sort_keys=False))
    proc = subprocess.run([str(Path(sys.executable).parent / "meshplane"), "validate", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: VirtualNode retail/front: backend virtual service '{CART}' does not exist" in proc.stderr
    assert "valid: mesh retail" in proc.stderr


def test_explain_says_why_a_backend_has_no_route():
    model = _load(_retail_without(CART))
    ex = explain_node(model, NodeRef(RETAIL, "virtualNode", "front"), http_request(f"http://{CART}:7070/cart"))
    assert ex.status == 404
    assert f"'{CART}' is a backend of front, but virtual service '{CART}' does not exist in mesh 'retail' (yet)" in ex.reason
    docs = _retail_without()  # a service with no provider yet (created first, provided later)
    next(d for d in docs if d["name"] == CART)["spec"] = {}
    ex = explain_node(_load(docs), NodeRef(RETAIL, "virtualNode", "front"), http_request(f"http://{CART}:7070/cart"))
    assert ex.status == 404 and f"virtual service '{CART}' has no provider" in ex.reason


def test_status_shows_the_warning():
    source = _ModelSource(_load(_retail_without(CART)))
    control = ControlPlane([], SnapshotCache(), source=source)
    assert any(f"backend virtual service '{CART}' does not exist" in w for w in control.status()["warnings"])
    source.model = _load(_documents(RETAIL))
    assert asyncio.run(control.reload()), control.last_error
    assert control.status()["warnings"] == []


def _backend_services(docs: list[dict]) -> list[str]:
    """Every virtual service some node lists as a backend, in document order."""
    found = []
    for d in docs:
        if d["kind"] == "VirtualNode":
            for b in (d.get("spec") or {}).get("backends") or ():
                name = b["virtualService"]["virtualServiceName"]
                if name not in found and any(x["kind"] == "VirtualService" and x["name"] == name for x in docs):
                    found.append(name)
    return found


def _without_service(docs: list[dict], name: str) -> list[dict]:
    """The model before ``name`` was created: without it and the gateway routes targeting it
    (App Mesh checks those), keeping the nodes that list it as a backend."""
    def targets(d):
        return d["kind"] == "GatewayRoute" and _body(d)["action"]["target"]["virtualService"]["virtualServiceName"] == name
    return [d for d in docs if not (d["kind"] == "VirtualService" and d["name"] == name) and not targets(d)]


CASES = [(model, service) for model in MODELS for service in _backend_services(_documents(model))]


@pytest.mark.parametrize("model_name, service", CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_a_dangling_backend_created_later_recompiles_its_callers_as_cold(model_name, service):
    """Incremental == cold across the creation (and deletion) of a backend service that its
    callers named before it existed: the served snapshots are a cold compile's bytes."""
    full = _documents(model_name)
    before = _load(_without_service(full, service))
    source = _ModelSource(before)
    cache = SnapshotCache()
    control = ControlPlane([], cache, source=source)
    keys = {(ref, placement): control.resolve(_envoy_node(ref, placement)) for ref in _nodes(before) for placement in PLACEMENTS}
    for docs in (full, _without_service(full, service), full):  # created, deleted again, created again
        source.model = model = _load(docs)
        assert asyncio.run(control.reload()), control.last_error
        for (ref, placement), key in keys.items():
            cold = Snapshot.from_resources(compile_node(model, ref, placement))
            assert _content(cache.get(key)) == _content(cold), f"{ref.node_id} at {placement.key}"
