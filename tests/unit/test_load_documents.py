"""``load_documents``: a model from already-parsed native documents, checked like files."""
from __future__ import annotations

import json

import pytest
import yaml

from mesh_model import ModelError, load_paths, load_texts
from mesh_model.load import load_documents
from mesh_model.load.input_limits import Limits
from tests.paths import golden_model


def _documents(folder):
    return [(path.name, doc) for path in sorted(folder.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_documents_build_the_model_their_files_build():
    folder = golden_model("retail")
    assert load_documents(_documents(folder)) == load_paths([folder])


BROKEN = [
    {"kind": "Mesh", "name": "shop", "spec": {}},
    {"kind": "VirtualService", "mesh": "shop", "name": "a.shop.local",
     "spec": {"provider": {"virtualNode": {"virtualNodeName": "nowhere"}}}},
    {"kind": "VirtualNode", "mesh": "shop", "name": "n", "spec": {"listeners": [{"portMapping": {"port": "80", "protocol": "http"}}]}},
    ["not", "a", "mapping"],
]


def _issues(load, *args):
    with pytest.raises(ModelError) as err:
        load(*args)
    return err.value.issues


def test_problems_read_as_those_of_a_file_holding_the_documents():
    from_documents = _issues(load_documents, [("change.json", doc) for doc in BROKEN])
    from_text = _issues(load_texts, [("change.json", json.dumps(BROKEN))])
    assert from_documents == from_text
    assert any(i.path == "spec.listeners[0].portMapping.port" for i in from_documents)
    assert any(i.resource == "document 4" and "expected a mapping" in i.message for i in from_documents)


def test_references_are_checked_once_every_document_is_valid():
    docs = [("api", doc) for doc in BROKEN[:2]]
    [issue] = _issues(load_documents, docs)
    assert (issue.file, issue.resource, issue.path) == ("api", "VirtualService shop/a.shop.local",
                                                        "spec.provider.virtualNode.virtualNodeName")


def test_limits_apply():
    deep: dict = {}
    inner = deep
    for _ in range(10):
        inner["x"] = {}
        inner = inner["x"]
    issues = _issues(lambda docs: load_documents(docs, limits=Limits(max_depth=5)), [("api", {"kind": "Mesh", "name": "m", "spec": deep})])
    assert any("nested deeper than the limit of 5 levels" in i.message for i in issues)


def _outcome(documents, **kwargs):
    """The model, or the issues, of one load."""
    try:
        return "model", load_documents(documents, **kwargs)
    except ModelError as err:
        return "issues", err.issues


def test_cached_load_equals_uncached_after_every_edit():
    import copy

    from mesh_model.load import DocumentCache

    cache = DocumentCache()
    docs = [("request", doc) for _, doc in _documents(golden_model("retail"))]
    assert len(docs) > 5

    def same(step: str) -> None:
        cached, uncached = _outcome(docs, cache=cache), _outcome(docs)
        assert cached == uncached, step
        return cached

    kind, first = same("cold")
    assert kind == "model" and cache.misses == len(docs) and len(cache) == len(docs)

    hits = cache.hits
    kind, again = same("warm")
    assert kind == "model" and cache.hits == hits + len(docs)
    assert all(a is b for a, b in zip(_resources(first), _resources(again)))  # reused as they are

    node = next(i for i, (_, d) in enumerate(docs) if d["kind"] == "VirtualNode")
    edited = copy.deepcopy(docs[node][1])
    edited["spec"].setdefault("logging", {})["accessLog"] = {"file": {"path": "/dev/stdout"}}
    docs[node] = ("request", edited)
    misses = cache.misses
    assert same("one spec edited")[0] == "model" and cache.misses == misses + 1

    broken = copy.deepcopy(edited)
    broken["spec"]["listeners"][0]["portMapping"]["port"] = "eighty"  # invalid spec: never cached
    docs[node] = ("request", broken)
    kind, issues = same("invalid spec")
    assert kind == "issues" and any("port" in i.path for i in issues)
    docs.insert(0, ("request", {"kind": "Mesh", "name": "other", "spec": {}}))  # shifts every position
    kind, issues_shifted = same("positions shifted")
    assert kind == "issues" and issues_shifted == issues  # messages name resources, not positions

    docs[node + 1] = ("request", edited)
    service = next(i for i, (_, d) in enumerate(docs) if d["kind"] == "VirtualService")
    dangling = copy.deepcopy(docs[service][1])
    dangling["spec"] = {"provider": {"virtualNode": {"virtualNodeName": "nowhere"}}}
    docs[service] = ("request", dangling)  # valid alone, wrong with the others: cached, still reported
    kind, issues = same("dangling reference")
    assert kind == "issues" and any("nowhere" in i.message for i in issues)

    docs.append(("request", ["not", "a", "mapping"]))
    docs.append(("request", {"kind": "Mesh", "name": "bad\x00name", "spec": {}}))
    assert same("broken documents")[0] == "issues"
    del docs[-2:]
    docs[service] = ("request", docs[service][1] | {"spec": {}})
    assert same("fixed")[0] == "model"

    docs.append(("other-label", docs[1][1]))  # same content under another label: not the cached one
    assert same("same content, other label")[0] == "issues"  # duplicate resource


def test_cache_keeps_within_limits_and_memory():
    from mesh_model.load import DocumentCache

    cache = DocumentCache()
    docs = [("request", doc) for _, doc in _documents(golden_model("retail"))]
    load_documents(docs, cache=cache)
    limited = Limits(max_documents=3)
    assert _outcome(docs, cache=cache, limits=limited) == _outcome(docs, limits=limited)
    for i in range(5):  # many different small models: the cache does not grow without bound
        load_documents([("request", {"kind": "Mesh", "name": f"m{i}-{j}", "spec": {}}) for j in range(100)], cache=cache)
    assert len(cache) <= 2 * 100 + 64 + 100


def _resources(model):
    out = []
    for mesh in model.meshes.values():
        out.append(mesh.resource)
        for group in (mesh.virtual_services, mesh.virtual_routers, mesh.virtual_nodes, mesh.virtual_gateways):
            out.extend(group.values())
        for routes in (*mesh.routes.values(), *mesh.gateway_routes.values()):
            out.extend(routes.values())
    out.extend(model.cloud_map.values())
    return out
