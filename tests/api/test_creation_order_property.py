"""Creation in any order (issue 23), as a property: the shop mesh (``tests/golden/retail``) and
every project input (``tests/inputs/appmesh``), created resource by resource through the App
Mesh API in CloudFormation order, in reverse order and in seeded random orders, end as the
same model and the same compiled config, byte for byte, with no refused call.

What App Mesh itself checks still orders the calls, as it would for any client: a resource
after its mesh (and a route after its router, a gateway route after its gateway), a route
after the nodes it targets, a gateway route after the service it targets, and a service's
provider set once the provider exists (a service whose provider is not there yet is created
without one and updated later). A node's backends order nothing: App Mesh does not check
them, so callers may come before the services they call, and a node before its own service.

* CloudFormation order: the order a stack creates the resources in, each after everything it
  refers to, backends included where that is possible (a node after the services it calls,
  unless that is a cycle: a node calling a service it provides comes first), ties in the
  order of the model's documents;
* reverse order: that list backwards (callers and services first), each call as soon as App
  Mesh would take it;
* random orders: a seeded shuffle, each call as soon as App Mesh would take it.

Cloud Map stand-ins (``CloudMapService``, meshplane's own, no App Mesh resource) are in the
store from the start. (In-process ``ApiService`` over SQLite, through boto3.)
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mesh_model import load_paths
from mesh_model.compiler import compile_node
from mesh_model.load import load_documents
from mesh_model.node_id import NodeRef
from xds_server.api.file_source import resources_of
from xds_server.api.resources import native
from xds_server.store.base import Put

from tests.appmesh_inputs import CASES, input_paths, prepared_inputs
from tests.paths import GOLDEN

RANDOM_ORDERS = 3
KIND_RANK = {"Mesh": 0, "VirtualNode": 1, "VirtualRouter": 2, "Route": 3, "VirtualService": 4, "VirtualGateway": 5, "GatewayRoute": 6}
INPUTS = ["retail"] + sorted(CASES)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_inputs(tmp_path_factory.mktemp("inputs"))


def _model(name: str, prepared: dict[str, Path]):
    return load_paths([GOLDEN / "retail" / "model"] if name == "retail" else input_paths(prepared, name))


def _key(doc: dict) -> tuple:
    return (doc["kind"], doc.get("mesh", ""), doc.get("virtualRouter", doc.get("virtualGateway", "")), doc["name"])


def _body(doc: dict) -> dict:
    return next(v for v in doc["spec"].values() if isinstance(v, dict) and "action" in v)


def _needs(doc: dict) -> set[tuple]:
    """What App Mesh checks exists before it takes ``doc`` (its provider apart: see ``_provider``)."""
    kind, mesh = doc["kind"], doc.get("mesh", "")
    if kind == "Mesh":
        return set()
    needs = {("Mesh", "", "", mesh)}
    if kind == "Route":
        needs.add(("VirtualRouter", mesh, "", doc["virtualRouter"]))
        needs |= {("VirtualNode", mesh, "", t["virtualNode"]) for t in _body(doc)["action"]["weightedTargets"]}
    elif kind == "GatewayRoute":
        needs.add(("VirtualGateway", mesh, "", doc["virtualGateway"]))
        needs.add(("VirtualService", mesh, "", _body(doc)["action"]["target"]["virtualService"]["virtualServiceName"]))
    return needs


def _provider(doc: dict) -> tuple | None:
    provider = (doc.get("spec") or {}).get("provider") if doc["kind"] == "VirtualService" else None
    if not provider:
        return None
    if "virtualNode" in provider:
        return ("VirtualNode", doc["mesh"], "", provider["virtualNode"]["virtualNodeName"])
    return ("VirtualRouter", doc["mesh"], "", provider["virtualRouter"]["virtualRouterName"])


def _backends(doc: dict) -> set[tuple]:
    if doc["kind"] != "VirtualNode":
        return set()
    return {("VirtualService", doc["mesh"], "", b["virtualService"]["virtualServiceName"])
            for b in (doc.get("spec") or {}).get("backends") or ()}


def _steps(priority: list[dict], *, soft_backends: bool) -> list[tuple[str, dict]]:
    """``("create", doc)`` / ``("provide", service doc)`` calls: repeatedly the first document of
    ``priority`` App Mesh would take now (with ``soft_backends``, preferring one whose backends
    exist); a service is created without its provider when the provider is not there yet,
    and given it right after the provider is created."""
    keys = {_key(d) for d in priority}
    done: set[tuple] = set()
    unprovided: list[dict] = []
    pending = list(priority)
    steps = []
    while pending:
        ready = [d for d in pending if _needs(d) <= done]
        assert ready, f"nothing can be created next: {[_key(d) for d in pending]}"
        if soft_backends:
            # a backend counts once it exists, or when waiting for it would be a cycle (the
            # service it names waits, through its provider, for this very node)
            preferred = [d for d in ready if all(b in done or b not in keys or _waits_for(b, _key(d), pending) for b in _backends(d))]
            ready = preferred or ready
        doc = ready[0]
        pending.remove(doc)
        provider = _provider(doc)
        if provider is not None and provider not in done:
            steps.append(("create", {**doc, "spec": {k: v for k, v in doc["spec"].items() if k != "provider"}}))
            unprovided.append(doc)
        else:
            steps.append(("create", doc))
        done.add(_key(doc))
        for service in [s for s in unprovided if _provider(s) in done]:
            steps.append(("provide", service))
            unprovided.remove(service)
    assert not unprovided
    return steps


def _waits_for(service: tuple, node: tuple, pending: list[dict]) -> bool:
    """Whether creating ``service`` with its provider waits for ``node`` (its provider is
    ``node``, or a router whose routes target ``node``)."""
    doc = next((d for d in pending if _key(d) == service), None)
    provider = _provider(doc) if doc is not None else None
    if provider is None:
        return False
    if provider == node:
        return True
    return provider[0] == "VirtualRouter" and any(
        d["kind"] == "Route" and d["virtualRouter"] == provider[3] and ("VirtualNode", d["mesh"], "", node[3]) in _needs(d)
        for d in pending)


def _call(client, step: str, doc: dict) -> None:
    kind, mesh, spec = doc["kind"], doc.get("mesh"), doc.get("spec") or {}
    if kind == "Mesh":
        client.create_mesh(meshName=doc["name"], spec=spec)
    elif step == "provide":
        client.update_virtual_service(meshName=mesh, virtualServiceName=doc["name"], spec=spec)
    elif kind == "VirtualService":
        client.create_virtual_service(meshName=mesh, virtualServiceName=doc["name"], spec=spec)
    elif kind == "VirtualNode":
        client.create_virtual_node(meshName=mesh, virtualNodeName=doc["name"], spec=spec)
    elif kind == "VirtualRouter":
        client.create_virtual_router(meshName=mesh, virtualRouterName=doc["name"], spec=spec)
    elif kind == "Route":
        client.create_route(meshName=mesh, virtualRouterName=doc["virtualRouter"], routeName=doc["name"], spec=spec)
    elif kind == "VirtualGateway":
        client.create_virtual_gateway(meshName=mesh, virtualGatewayName=doc["name"], spec=spec)
    elif kind == "GatewayRoute":
        client.create_gateway_route(meshName=mesh, virtualGatewayName=doc["virtualGateway"], gatewayRouteName=doc["name"], spec=spec)
    else:  # pragma: no cover
        raise AssertionError(f"no App Mesh call creates {kind}")


def _compiled(model) -> dict:
    """Every node's and gateway's resources, serialized deterministically."""
    out = {}
    for mesh in model.meshes.values():
        for kind, names in (("virtualNode", mesh.virtual_nodes), ("virtualGateway", mesh.virtual_gateways)):
            for name in sorted(names):
                resources = compile_node(model, NodeRef(mesh.name, kind, name))
                out[(mesh.name, kind, name)] = {t: {n: m.SerializeToString(deterministic=True) for n, m in items.items()}
                                                for t, items in resources.items()}
    return out


def _orders(docs: list[dict], seed_base: int) -> dict[str, list[tuple[str, dict]]]:
    by_kind = sorted(docs, key=lambda d: KIND_RANK[d["kind"]])  # stable: document order within a kind
    cfn = _steps(by_kind, soft_backends=True)
    cfn_docs = [doc for step, doc in cfn if step == "create"]
    originals = {_key(d): d for d in docs}
    orders = {"cloudformation": cfn, "reverse": _steps([originals[_key(d)] for d in reversed(cfn_docs)], soft_backends=False)}
    for i in range(RANDOM_ORDERS):
        shuffled = list(docs)
        random.Random(seed_base * 100 + i).shuffle(shuffled)
        orders[f"random-{i}"] = _steps(shuffled, soft_backends=False)
    return orders


@pytest.mark.parametrize("name", INPUTS)
def test_any_creation_order_gives_the_same_model_and_config(name, prepared, inproc_api):
    model = _model(name, prepared)
    resources = resources_of(model)
    docs = [native(r) for r in resources if r.key.kind != "CloudMapService"]
    cloud_map = [r for r in resources if r.key.kind == "CloudMapService"]
    expected_docs = sorted((native(r) for r in resources), key=_key_any)
    expected_config = _compiled(model)
    assert expected_config, f"{name}: no node to compile"
    orders = _orders(docs, INPUTS.index(name))
    assert any(step == "provide" for step, _ in orders["reverse"]), "the reverse order creates a service before its provider"
    if any(_backends(d) for d in docs):
        assert _dangles(orders["reverse"]), "the reverse order creates a caller before the service it calls"
    for order, steps in orders.items():
        api = inproc_api()
        store = api.extra["store"]
        if cloud_map:
            store.commit([Put(r, expected_version=0) for r in cloud_map])
        client = api.client()
        for i, (step, doc) in enumerate(steps):
            try:
                _call(client, step, doc)
            except ClientError as exc:
                raise AssertionError(f"{name}, {order} order, call {i} ({step} {_key(doc)}) refused: {exc}") from None
        final = sorted((native(r) for r in store.read_all().resources), key=_key_any)
        assert final == expected_docs, f"{name}, {order} order: another model"
        assert _compiled(load_documents([("store", d) for d in final])) == expected_config, f"{name}, {order} order: another config"


def _dangles(steps: list[tuple[str, dict]]) -> bool:
    """Whether some node is created before a service it lists as a backend."""
    done = set()
    for step, doc in steps:
        if step == "create" and _backends(doc) - done:
            return True
        done.add(_key(doc))
    return False


def _key_any(doc: dict) -> tuple:
    return (doc["kind"], doc.get("mesh", doc.get("namespaceName", "")), doc.get("virtualRouter", doc.get("virtualGateway", "")), doc["name"])
