"""The PostgreSQL store (xds_server/store/postgres.py) against a real PostgreSQL (fixture
``postgres``, harness/postgres.py): the store interface, replicas learning of each
other's commits (LISTEN/NOTIFY, catch-up by revision), and PostgreSQL going away and coming back."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from harness.processes import wait_until
from xds_server.store import (
    Delete, DuplicateToken, IdempotencyRecord, Put, ResourceKey, RevisionConflict, StoredResource, StoreUnavailable,
    VersionConflict, open_store,
)
from xds_server.store.postgres import PostgresStore, redact


def key(name: str) -> ResourceKey:
    return ResourceKey("VirtualNode", "m", "", name)


def res(name: str, version: int = 1, **spec) -> StoredResource:
    return StoredResource(key(name), spec, version, {"uid": name}, (("b", "2"), ("a", "1")))


@pytest.fixture
def url(postgres):
    return postgres.new_database()


@pytest.fixture
def stores(url):
    """Open PostgresStores on the test's database (replicas); all closed at the end."""
    opened = []

    def open_one(**kwargs) -> PostgresStore:
        s = PostgresStore(url, **kwargs)
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


def test_open_store_by_url_and_redaction(url):
    with open_store(url) as s:
        assert isinstance(s, PostgresStore) and s.revision() == 0 and s.available
    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"


def test_commit_read_changes(stores):
    store = stores()
    assert store.revision() == 0 and store.read_all().resources == ()
    seen = []
    unsubscribe = store.subscribe(seen.append)
    r1 = store.commit([Put(res("a"), expected_version=0), Put(res("b"), expected_version=0)])
    assert r1 == 1 and seen[0] == 1
    snap = store.read_all()
    assert snap.revision == 1 and [r.key.name for r in snap.resources] == ["a", "b"]
    assert snap.resources[0].tags == (("a", "1"), ("b", "2")) and snap.resources[0].revision == 1
    assert snap.resources[0].metadata == {"uid": "a"}
    r2 = store.commit([Put(res("a", 2, x=1), expected_version=1), Delete(key("b"), 1)])
    changes = store.changes_since(r1)
    assert changes.revision == r2
    assert [(k.name, r and r.spec) for k, r in changes.changed] == [("a", {"x": 1}), ("b", None)]
    assert store.changes_since(r2).changed == ()
    assert store.get(key("a")).version == 2 and store.get(key("b")) is None
    unsubscribe()
    n = len(seen)
    store.commit([Put(res("c"))])
    time.sleep(0.3)
    assert len(seen) == n


def test_conflicts_write_nothing(stores):
    store = stores()
    store.commit([Put(res("a"), expected_version=0)])
    with pytest.raises(VersionConflict):
        store.commit([Put(res("z"), expected_version=0), Put(res("a", 2), expected_version=0)])
    with pytest.raises(VersionConflict):
        store.commit([Put(res("a", 3), expected_version=2)])
    with pytest.raises(VersionConflict):
        store.commit([Delete(key("nope"), 1)])
    with pytest.raises(RevisionConflict):
        store.commit([Put(res("z"))], expected_revision=0)
    assert store.revision() == 1 and [r.key.name for r in store.read_all().resources] == ["a"]
    assert store.get(key("a")).version == 1
    assert store.commit([Delete(key("nope"))]) == 2  # no check: a missing resource is a no-op


def test_idempotency_in_the_same_transaction(stores):
    store = stores()
    rec = IdempotencyRecord("acct|CreateMesh", "tok", "d1", {"mesh": {"x": 1}}, 5.0)
    store.commit([Put(res("a"))], idempotency=rec)
    assert store.get_idempotency("acct|CreateMesh", "tok") == rec
    assert store.get_idempotency("acct|CreateMesh", "other") is None
    with pytest.raises(DuplicateToken) as info:
        store.commit([Put(res("b"))], idempotency=rec)
    assert info.value.record == rec and store.get(key("b")) is None and store.revision() == 1


def test_concurrent_writers_on_two_replicas_no_lost_update(stores):
    a, b = stores(), stores()
    a.commit([Put(res("r", 1, n=0), expected_version=0)])
    for round_ in range(25):
        barrier = threading.Barrier(4)
        results = []

        def writer(store, who):
            current = store.get(key("r"))
            barrier.wait()
            try:
                store.commit([Put(res("r", current.version + 1, n=current.spec["n"] + 1, who=who),
                                  expected_version=current.version)])
                results.append("ok")
            except VersionConflict:
                results.append("conflict")

        threads = [threading.Thread(target=writer, args=(s, f"{i}")) for i, s in enumerate((a, b, a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("ok") == 1, (round_, results)
    final = b.get(key("r"))
    assert final.version == 26 and final.spec["n"] == 25  # every win counted once: no lost update


def test_replicas_learn_of_commits_by_notify(stores):
    # poll_interval far above the wait: only LISTEN/NOTIFY can deliver this in time
    a, b = stores(poll_interval=120), stores(poll_interval=120)
    seen = []
    b.subscribe(seen.append)
    t0 = time.monotonic()
    rev = a.commit([Put(res("x"), expected_version=0)])
    wait_until(lambda: rev in seen, 3, interval=0.01, message="replica b notified")
    assert time.monotonic() - t0 < 2
    assert b.changes_since(0).changed[0][1].key == key("x")
    assert b.wait_for(0, timeout=1) == rev
    # and back
    seen_a = []
    a.subscribe(seen_a.append)
    rev2 = b.commit([Delete(key("x"), 1)])
    wait_until(lambda: rev2 in seen_a, 3, interval=0.01, message="replica a notified")
    assert a.get(key("x")) is None


def test_missed_notification_is_caught_up(stores, url):
    b = stores(poll_interval=0.5)
    seen = []
    b.subscribe(seen.append)
    # another writer commits without NOTIFY (as if the notification were lost)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("INSERT INTO meshplane_resources VALUES ('VirtualNode','m','','silent','{}',1,'{}','[]',1)")
            conn.execute("INSERT INTO meshplane_changes VALUES ('VirtualNode','m','','silent',1)")
            conn.execute("UPDATE meshplane_meta SET v = 1 WHERE k = 'revision'")
    wait_until(lambda: 1 in seen, 5, message="caught up by the poll")
    assert b.status()["revision"] == 1 and b.available


def test_listener_connection_lost_then_catch_up(stores, url):
    a, b = stores(poll_interval=120), stores(poll_interval=120)
    seen = []
    b.subscribe(seen.append)
    with psycopg.connect(url, autocommit=True) as admin:
        # cut every meshplane connection to this database (both replicas' listeners and request connections)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    # a commit made while b's listener is down: b must still learn of it (LISTEN, then catch up)
    rev = None

    def commit_a():
        nonlocal rev
        rev = a.commit([Put(res("during"), expected_version=0)])
        return True

    wait_until(commit_a, 10, interval=0.1, message="a can write again", fatal=(VersionConflict,))
    wait_until(lambda: rev in seen, 10, message="b caught up after reconnecting")
    assert b.get(key("during")) is not None


def test_postgres_stopped_and_restarted(stores, postgres):
    a, b = stores(poll_interval=1.0), stores(poll_interval=1.0)
    a.commit([Put(res(f"n{i}"), expected_version=0) for i in range(5)])
    wait_until(lambda: b.status()["revision"] == 1, 5, message="b has revision 1")
    seen_b = []
    b.subscribe(seen_b.append)
    postgres.stop()
    try:
        # reads keep serving the last state; writes are refused with a clear error; status says so
        for store in (a, b):
            snap = store.read_all()
            assert snap.revision == 1 and len(snap.resources) == 5
            assert store.get(key("n3")).key == key("n3")
            assert store.revision() == 1
            assert [k.name for k, _ in store.changes_since(0).changed] == [f"n{i}" for i in range(5)]
            with pytest.raises(StoreUnavailable, match="store unavailable: PostgreSQL at .* cannot be reached"):
                store.commit([Put(res("lost"))])
            wait_until(lambda: not store.available, 5, message="status flag says unavailable")
            status = store.status()
            assert status["available"] is False and status["error"] and status["unavailableSince"]
    finally:
        postgres.start()
    # it reconnects by itself; writes resume; nothing was lost
    wait_until(lambda: a.available and b.available, 20, message="stores reconnected")
    rev = wait_until(lambda: a.commit([Put(res("after"), expected_version=0)]), 10, message="write resumes")
    wait_until(lambda: rev in seen_b, 10, message="b notified after the restart")
    names = [r.key.name for r in b.read_all().resources]
    assert names == ["after", "n0", "n1", "n2", "n3", "n4"]
    assert b.revision() == rev == 2
    assert "lost" not in names


def test_unreachable_at_start_is_an_error(postgres):
    url = postgres.new_database()
    with postgres.outage():
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            PostgresStore(url, connect_timeout=2)


def test_quick_restart_unnoticed_reads_reconnect(stores, postgres):
    """PostgreSQL restarted between two requests: reads replace the dead connection (or the
    listener already has) without anyone waiting for a poll."""
    a = stores(poll_interval=120)
    a.commit([Put(res("x"), expected_version=0)])
    postgres.stop()
    postgres.start()
    # no cached fallback for this read: it needs the database (a few tries: the listener may be mid-reconnect)
    wait_until(lambda: a.get_idempotency("scope", "token") is None, 10, interval=0.1, message="read after restart")
    assert a.get(key("x")).version == 1
    wait_until(lambda: a.available, 10, message="available after the restart")
    assert a.commit([Put(res("x", 2), expected_version=1)]) == 2
