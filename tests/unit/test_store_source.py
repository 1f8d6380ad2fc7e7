"""The store's model source reads what each commit changed (``changes_since``) and hands the
loader the digests it keeps: after any sequence of commits its model is the model a cold load
of the whole store gives, byte for byte once compiled."""
from __future__ import annotations

import random

from mesh_model.load import load_documents
from xds_server.api.resources import native
from xds_server.controlplane.store_source import StoreSource
from xds_server.store import open_store
from xds_server.store.base import Delete, Put, ResourceKey, StoredResource

from tests.creation_order import compiled


def _put(store, kind, mesh, parent, name, spec):
    key = ResourceKey(kind, mesh, parent, name)
    current = store.get(key)
    version = current.version + 1 if current else 1
    store.commit([Put(StoredResource(key, spec, version, {"meshOwner": "111122223333"}),
                      expected_version=current.version if current else 0)])


def _node(i: int, backends: list[str]) -> dict:
    return {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": f"n{i}.m.local"}},
            "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends]}


def _cold(store):
    return load_documents([(f"cold:{r.key}", native(r)) for r in sorted(store.read_all().resources, key=lambda r: r.key)])


def test_reloads_after_random_commits_equal_a_cold_load(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        _put(store, "Mesh", "m", "", "m", {})
        for i in range(4):
            _put(store, "VirtualNode", "m", "", f"n{i}", _node(i, [f"s{(i + 1) % 4}.m.local"]))
            _put(store, "VirtualService", "m", "", f"s{i}.m.local", {"provider": {"virtualNode": {"virtualNodeName": f"n{i}"}}})
        source = StoreSource(store)
        assert compiled(source.load()) == compiled(_cold(store))
        rng = random.Random(4)
        for step in range(25):
            i = rng.randrange(4)
            choice = rng.random()
            if choice < 0.4:  # a node's backends change
                _put(store, "VirtualNode", "m", "", f"n{i}", _node(i, [f"s{rng.randrange(4)}.m.local"]))
            elif choice < 0.6:  # a service goes (its callers keep a dangling backend)
                store.commit([Delete(ResourceKey("VirtualService", "m", "", f"s{i}.m.local"))])
            else:  # ... or comes back, or its provider moves
                _put(store, "VirtualService", "m", "", f"s{i}.m.local",
                     {"provider": {"virtualNode": {"virtualNodeName": f"n{rng.randrange(4)}"}}})
            if rng.random() < 0.7:  # sometimes several commits land between two reloads
                model = source.load()
                assert source.revision == store.revision()
                assert compiled(model) == compiled(_cold(store)), step
    finally:
        store.close()
