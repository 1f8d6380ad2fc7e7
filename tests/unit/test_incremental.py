"""A model change recompiles exactly the nodes it affects, and shared pieces are built once."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2

from mesh_model import load_paths
from mesh_model.compiler import CompileCache, Placement, compile_node
from mesh_model.compiler import changed_keys, node_dependencies
from mesh_model.node_id import parse_node_id
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane, compile_snapshot
from tests.paths import GOLDEN

RETAIL = GOLDEN / "retail" / "model"
GATEWAY_MODEL = GOLDEN / "gateway" / "model"
NODES = ["front", "catalog-v1", "catalog-v2", "cart", "recommend"]

# (description, file, old text, new text): single edits of one resource each
EDITS = [
    ("route weight", "routers.yaml", "weight: 90}", "weight: 80}"),
    ("add a route", "routers.yaml", "{virtualNode: recommend, weight: 1}\n", "{virtualNode: recommend, weight: 1}\n---\nkind: Route\nmesh: retail\nvirtualRouter: recommend-router\nname: extra\nspec:\n  httpRoute:\n    match: {prefix: /x}\n    action:\n      weightedTargets: [{virtualNode: recommend, weight: 1}]\n"),
    ("target node health check", "nodes.yaml", "intervalMillis: 10000", "intervalMillis: 20000"),
    ("connection pool of cart", "nodes.yaml", "maxConnections: 10}", "maxConnections: 20}"),
    ("cloud map instance", "nodes.yaml", "10.0.1.21", "10.0.1.31"),
    ("mesh egress filter", "mesh.yaml", "type: DROP_ALL", "type: ALLOW_ALL"),
    ("front backends", "nodes.yaml", "    - virtualService: {virtualServiceName: cart.retail.local}\n", ""),
]


def _node(name: str):
    return parse_node_id(f"mesh/retail/virtualNode/{name}")


def _versions(model, name: str):
    return compile_snapshot(model, _node(name), Placement()).versions()


@pytest.mark.parametrize("description,file,old,new", EDITS, ids=[e[0] for e in EDITS])
def test_dependencies_cover_every_node_whose_config_changes(tmp_path, description, file, old, new):
    """The claim incremental pushes rest on: a node outside a change's reach compiles identically."""
    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    before = load_paths([model_dir])
    text = (model_dir / file).read_text()
    assert old in text, f"edit {description!r} does not apply"
    (model_dir / file).write_text(text.replace(old, new, 1))
    after = load_paths([model_dir])
    changed = changed_keys(before, after)
    assert changed, "the edit changed nothing?"
    affected_somewhere = False
    for name in NODES:
        deps = node_dependencies(before, "retail", name)
        differs = _versions(before, name) != _versions(after, name)
        if differs:
            assert deps & changed, f"{name}'s config changed but its dependencies {sorted(deps)} miss {sorted(changed)}"
            affected_somewhere = True
    assert affected_somewhere, "every edit in EDITS changes at least one node's config"


def _fake_node(name: str) -> base_pb2.Node:
    return base_pb2.Node(id=f"mesh/retail/virtualNode/{name}")


def test_rebuild_recompiles_only_affected_nodes(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    cache = SnapshotCache()
    control = ControlPlane([str(model_dir)], cache)
    keys = {name: control.resolve(_fake_node(name)) for name in NODES}
    old = {name: cache.get(key) for name, key in keys.items()}

    routers = model_dir / "routers.yaml"
    routers.write_text(routers.read_text().replace("weight: 90}", "weight: 70}", 1))
    snapshots, _, warnings, _ = control.rebuild(load_paths([model_dir]))
    assert not warnings
    assert set(snapshots) == {keys["front"]}, "only front calls catalog.retail.local"
    new_front = snapshots[keys["front"]]
    assert new_front.versions()["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"] != old["front"].versions()["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"]
    assert new_front.versions()["type.googleapis.com/envoy.config.cluster.v3.Cluster"] == old["front"].versions()["type.googleapis.com/envoy.config.cluster.v3.Cluster"]


def test_shared_pieces_are_built_once_per_model():
    model = load_paths([RETAIL])
    cache = CompileCache(model)
    first = compile_node(model, _node("front"), Placement(), cache)
    before = set(cache._items)
    other = Placement(app_address="127.0.0.9")
    second = compile_node(model, _node("front"), other, cache)
    added = set(cache._items) - before
    assert added, "the node's own pieces (local-app cluster, listeners) are built for the new placement"
    assert all(cache._items[key][2] == other for key in added), "a second placement reuses every shared piece"
    cluster_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    name = "cds_egress_retail_catalog-v1_http_8080"
    assert first[cluster_url][name] is second[cluster_url][name]


def test_cache_refuses_another_model():
    model = load_paths([RETAIL])
    other = load_paths([RETAIL])
    with pytest.raises(ValueError):
        compile_node(other, _node("front"), Placement(), CompileCache(model))


GATEWAY_EDITS = [
    ("gateway route rewrite", "rewrite: {prefix: {value: /red/}}", "rewrite: {prefix: {value: /blue/}}"),
    ("route behind the gateway", "match: {prefix: /red}", "match: {prefix: /crimson}"),
    ("gateway listener pool", "maxConnections: 1000", "maxConnections: 2000"),
    ("target node of a gateway service", "hostname: white.ingress.local", "hostname: white2.ingress.local"),
]


@pytest.mark.parametrize("description,old,new", GATEWAY_EDITS, ids=[e[0] for e in GATEWAY_EDITS])
def test_gateway_dependencies_cover_its_changes(tmp_path, description, old, new):
    model_dir = tmp_path / "model"
    shutil.copytree(GATEWAY_MODEL, model_dir)
    before = load_paths([model_dir])
    file = model_dir / "mesh.yaml"
    assert old in file.read_text()
    file.write_text(file.read_text().replace(old, new, 1))
    after = load_paths([model_dir])
    gateway = parse_node_id("mesh/ingress/virtualGateway/gateway")
    versions = [compile_snapshot(m, gateway, Placement()).versions() for m in (before, after)]
    assert versions[0] != versions[1], "the edit changes the gateway's config"
    deps = node_dependencies(before, "ingress", "gateway", "virtualGateway")
    assert deps & changed_keys(before, after), f"{sorted(deps)} misses {sorted(changed_keys(before, after))}"


def test_successor_cache_keeps_only_untouched_pieces():
    """After a route edit, the clusters carry over to the new model; the edited service's virtual host does not."""
    model = load_paths([RETAIL])
    cache = CompileCache(model)
    compile_node(model, _node("front"), Placement(), cache)
    edited = load_texts_with(RETAIL, "routers.yaml", "weight: 90}", "weight: 80}")
    nxt = cache.successor(edited, changed_keys(model, edited))
    kept = {key[0] for key in nxt._items}
    assert "egress" in kept and "endpoints" in kept
    assert not any(key[0] == "vhost" and key[2] == "catalog.retail.local" for key in nxt._items)
    assert any(key[0] == "vhost" and key[2] == "cart.retail.local" for key in nxt._items)
    fresh = compile_node(edited, _node("front"), Placement())
    reused = compile_node(edited, _node("front"), Placement(), nxt)
    assert {t: {n: m.SerializeToString(deterministic=True) for n, m in r.items()} for t, r in fresh.items()} == \
           {t: {n: m.SerializeToString(deterministic=True) for n, m in r.items()} for t, r in reused.items()}


def load_texts_with(folder: Path, file: str, old: str, new: str):
    from mesh_model import load_texts

    texts = [(str(p.relative_to(folder)), p.read_text()) for p in sorted(folder.glob("*.yaml"))]
    texts = [(label, text.replace(old, new, 1) if label == file else text) for label, text in texts]
    return load_texts(texts)


def test_placements_without_streams_are_forgotten(tmp_path):
    """Tasks come and go with new addresses: their snapshots must not pile up or be recompiled forever."""
    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    cache = SnapshotCache()
    in_use: set[str] = set()
    control = ControlPlane([str(model_dir)], cache, keys_in_use=lambda: set(in_use))
    keys = {name: control.resolve(_fake_node(name)) for name in NODES}
    in_use.add(keys["front"])
    assert control.forget_unused() == len(NODES) - 1
    assert set(control.keys) == {keys["front"]} and cache.get(keys["front"]) is not None
    assert cache.get(keys["cart"]) is None and keys["cart"] not in control.dependencies
    again = control.resolve(_fake_node("cart"))  # a node that comes back is compiled again
    assert again == keys["cart"] and cache.get(again) is not None


def test_model_diff_of_two_fresh_loads_uses_content_digests(tmp_path):
    """Without the parse cache every resource object is new: the diff still finds exactly the edit."""
    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    first, second = load_paths([model_dir]), load_paths([model_dir])
    assert changed_keys(first, second) == set()
    routers = model_dir / "routers.yaml"
    routers.write_text(routers.read_text().replace("weight: 90}", "weight: 70}", 1))
    assert changed_keys(first, load_paths([model_dir])) == {("Routes", "retail", "catalog-router")}


def test_a_target_that_moves_to_cloud_map_brings_its_instances_into_its_callers_dependencies(tmp_path):
    """A caller's pieces for a target are shared and cached; what they read must follow the
    target: once recommend is discovered through Cloud Map, an instance change reaches its callers."""
    from mesh_model.compiler import compile_node
    from xds_server.cache.snapshot import Snapshot

    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    nodes = model_dir / "nodes.yaml"
    cloud_map = ("    awsCloudMap:\n      namespaceName: retail.local\n      serviceName: recommend\n"
                 "      attributes:\n        - {key: stage, value: prod}\n")
    original = nodes.read_text()
    assert cloud_map in original
    nodes.write_text(original.replace(cloud_map, "    dns: {hostname: recommend.retail.local}\n", 1))
    cache = SnapshotCache()
    control = ControlPlane([str(model_dir)], cache)
    keys = {name: control.resolve(_fake_node(name)) for name in NODES}

    def served_equals_cold():
        for name, key in keys.items():
            cold = Snapshot.from_resources(compile_node(control.model, _node(name), Placement()))
            assert cache.get(key).versions() == cold.versions(), name

    for text in (original, original.replace("10.0.1.21", "10.0.1.31", 1)):
        nodes.write_text(text)
        assert asyncio.run(control.reload()), control.last_error
        served_equals_cold()
