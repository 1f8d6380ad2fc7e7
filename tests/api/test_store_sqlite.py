"""The SQLite store against the store interface (xds_server/store/base.py)."""
from __future__ import annotations

import threading

import pytest

from xds_server.store import (
    Delete, DuplicateToken, IdempotencyRecord, Put, ResourceKey, RevisionConflict, StoredResource, VersionConflict,
    open_store,
)


def res(name: str, version: int = 1, **spec) -> StoredResource:
    return StoredResource(ResourceKey("VirtualNode", "m", "", name), spec, version, {"uid": name}, (("b", "2"), ("a", "1")))


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/db/meshplane.db")
    yield s
    s.close()


def test_commit_read_changes(store):
    assert store.revision() == 0 and store.read_all().resources == ()
    seen = []
    unsubscribe = store.subscribe(seen.append)
    r1 = store.commit([Put(res("a"), expected_version=0), Put(res("b"), expected_version=0)])
    assert r1 == 1 and seen == [1]
    snap = store.read_all()
    assert snap.revision == 1 and [r.key.name for r in snap.resources] == ["a", "b"]
    assert snap.resources[0].tags == (("a", "1"), ("b", "2")) and snap.resources[0].revision == 1
    r2 = store.commit([Put(res("a", 2, x=1), expected_version=1), Delete(ResourceKey("VirtualNode", "m", "", "b"), 1)])
    changes = store.changes_since(r1)
    assert changes.revision == r2
    assert [(k.name, r and r.spec) for k, r in changes.changed] == [("a", {"x": 1}), ("b", None)]
    assert store.changes_since(r2).changed == ()
    unsubscribe()
    store.commit([Put(res("c"))])
    assert seen == [1, 2]


def test_conflicts_write_nothing(store):
    store.commit([Put(res("a"), expected_version=0)])
    with pytest.raises(VersionConflict):
        store.commit([Put(res("z"), expected_version=0), Put(res("a", 2), expected_version=0)])
    with pytest.raises(VersionConflict):
        store.commit([Put(res("a", 3), expected_version=2)])
    with pytest.raises(VersionConflict):
        store.commit([Delete(ResourceKey("VirtualNode", "m", "", "nope"), 1)])
    with pytest.raises(RevisionConflict):
        store.commit([Put(res("z"))], expected_revision=0)
    assert store.revision() == 1 and [r.key.name for r in store.read_all().resources] == ["a"]
    assert store.get(ResourceKey("VirtualNode", "m", "", "a")).version == 1


def test_idempotency_in_the_same_transaction(store):
    rec = IdempotencyRecord("acct|CreateMesh", "tok", "d1", {"mesh": {"x": 1}}, 5.0)
    store.commit([Put(res("a"))], idempotency=rec)
    assert store.get_idempotency("acct|CreateMesh", "tok") == rec
    with pytest.raises(DuplicateToken) as info:
        store.commit([Put(res("b"))], idempotency=rec)
    assert info.value.record == rec and store.get(ResourceKey("VirtualNode", "m", "", "b")) is None


def test_concurrent_writers_one_wins(store):
    store.commit([Put(res("a"), expected_version=0)])
    results = []

    def writer():
        try:
            store.commit([Put(res("a", 2), expected_version=1)])
            results.append("ok")
        except VersionConflict:
            results.append("conflict")

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]


def test_wait_for_and_second_process_view(tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    a, b = open_store(url), open_store(url)
    try:
        seen = []
        b.subscribe(seen.append)
        threading.Timer(0.1, lambda: a.commit([Put(res("a"))])).start()
        assert b.wait_for(0, timeout=5) == 1
        assert b.get(ResourceKey("VirtualNode", "m", "", "a")) is not None
    finally:
        a.close()
        b.close()


def test_bad_urls():
    with pytest.raises(ValueError):
        open_store("mysql://x")
    with pytest.raises(ValueError):
        open_store("sqlite://")
