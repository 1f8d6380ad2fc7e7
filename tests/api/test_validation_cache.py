"""The API's validation reuses, per mesh scope, the documents and digests of stored resources
it validated before (``validation.CachesByScope``): after any sequence of writes, valid or not,
its answer is the answer of an uncached validation."""
from __future__ import annotations

import random

from xds_server.api import validation
from xds_server.store.base import ResourceKey, StoredResource


def _node(i: int, port) -> StoredResource:
    spec = {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": f"n{i}.local"}}}
    return StoredResource(ResourceKey("VirtualNode", "m", "", f"n{i}"), spec, 1)


def _route(target: str, weight) -> StoredResource:
    spec = {"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": [{"virtualNode": target, "weight": weight}]}}}
    return StoredResource(ResourceKey("Route", "m", "r", "main"), spec, 1)


def test_cached_validation_answers_as_an_uncached_one(monkeypatch):
    index = {r.key: r for r in [
        StoredResource(ResourceKey("Mesh", "m", "", "m"), {}, 1),
        StoredResource(ResourceKey("VirtualRouter", "m", "", "r"), {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}, 1),
        _route("n0", 1), *(_node(i, 8080) for i in range(5))]}
    monkeypatch.setattr(validation, "CACHE", validation.CachesByScope())
    rng = random.Random(11)
    outcomes = set()
    for step in range(40):
        choice = rng.random()
        if choice < 0.4:
            changed = _node(rng.randrange(5), rng.choice([8080, 9090, 0, 70000]))  # 0 and 70000: invalid ports
        elif choice < 0.8:
            changed = _route(f"n{rng.randrange(7)}", rng.choice([1, 50, 101]))  # n5, n6 missing; 101 invalid
        else:
            changed = None
        if changed is not None:
            index[changed.key] = changed
        cached = validation.issues_of(index.values(), {"m"})
        saved, validation.CACHE = validation.CACHE, None
        try:
            uncached = validation.issues_of(index.values(), {"m"})
        finally:
            validation.CACHE = saved
        assert [validation.describe(i) for i in cached] == [validation.describe(i) for i in uncached], step
        outcomes.add(bool(cached))
    assert outcomes == {True, False}  # both valid and invalid states were seen
