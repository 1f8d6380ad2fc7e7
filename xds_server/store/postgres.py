"""The shared store for replicas: PostgreSQL (psycopg 3), ``postgresql://user@host:5432/db``.

Tables (prefixed ``meshplane_`` so the database can hold other things): ``meshplane_meta``
(the store revision, one row), ``meshplane_resources`` (one row per resource, JSON as text,
exactly as the SQLite store keeps it), ``meshplane_changes`` (per key, the revision that last
wrote or deleted it: ``changes_since`` never loses history) and ``meshplane_idempotency``.

Writes: one transaction per ``commit``. It first locks the revision row (``SELECT ... FOR
UPDATE``), which serializes writers of every replica; the version and revision checks run
under that lock, so a lost update is impossible. The transaction ends with
``pg_notify('meshplane_store', revision)``, delivered by PostgreSQL at commit.

Every replica keeps one listening connection (``LISTEN meshplane_store``) in a background
thread. On a notification, and every ``poll_interval`` seconds anyway, it catches up by
revision (``changes_since`` of the revision it has) into an in-memory copy of the model, then
calls the subscribers. A missed notification (a commit without one, a dropped connection) is
therefore caught up by the next poll; after a reconnect, the listener LISTENs first and then
catches up, so nothing committed in between is lost.

When PostgreSQL cannot be reached: reads (``read_all``, ``get``, ``revision``,
``changes_since``) answer from that in-memory copy (the last state this replica saw), writes
raise ``StoreUnavailable`` saying so, and ``available`` / ``status()`` report it. The
background thread reconnects (backoff up to 1 s), catches up and sets ``available`` again.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Collection, Sequence

from xds_server.store.base import (
    Changes, Delete, DuplicateToken, IdempotencyRecord, Op, Put, ResourceKey, RevisionConflict, RevisionGone, Snapshot,
    Store, StoredResource, StoreError, StoreUnavailable, Subscribers, VersionConflict, sorted_tags,
)
from xds_server.store.redact import redact_url, scrub
from xds_server.store.text import storable_text
from xds_server.store.rows import dump, key_columns, record_from_row, resource_from_row

log = logging.getLogger("meshplane.store")

CHANNEL = "meshplane_store"
_SCHEMA_LOCK = 7_242_011  # pg_advisory_xact_lock key: replicas creating the schema at once

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meshplane_meta (k text PRIMARY KEY, v bigint NOT NULL)",
    "INSERT INTO meshplane_meta (k, v) VALUES ('revision', 0) ON CONFLICT (k) DO NOTHING",
    """CREATE TABLE IF NOT EXISTS meshplane_resources (
        kind text NOT NULL, mesh text NOT NULL, parent text NOT NULL, name text NOT NULL,
        spec text NOT NULL, version bigint NOT NULL, metadata text NOT NULL, tags text NOT NULL,
        revision bigint NOT NULL,
        PRIMARY KEY (kind, mesh, parent, name))""",
    """CREATE TABLE IF NOT EXISTS meshplane_changes (
        kind text NOT NULL, mesh text NOT NULL, parent text NOT NULL, name text NOT NULL,
        revision bigint NOT NULL,
        PRIMARY KEY (kind, mesh, parent, name))""",
    "CREATE INDEX IF NOT EXISTS meshplane_changes_revision ON meshplane_changes (revision)",
    """CREATE TABLE IF NOT EXISTS meshplane_idempotency (
        scope text NOT NULL, token text NOT NULL, digest text NOT NULL, response text NOT NULL,
        created_at double precision NOT NULL,
        PRIMARY KEY (scope, token))""",
]

_COLUMNS = "kind, mesh, parent, name, spec, version, metadata, tags, revision"
_KEY_WHERE = "kind = %s AND mesh = %s AND parent = %s AND name = %s"


def redact(url: str) -> str:
    """The URL without its secrets (for messages, logs and ``/status``): ``user:***@``,
    ``?password=***``, ``sslpassword``... (``xds_server.store.redact``)."""
    return redact_url(url)


class PostgresStore(Store):
    def __init__(self, url: str, *, poll_interval: float = 2.0, connect_timeout: float = 3.0):
        self.url = url
        self._where = redact(url)
        self._poll_interval = poll_interval
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()  # the request connection
        self._conn = None
        self._cache_lock = threading.Lock()
        self._cache: dict[ResourceKey, StoredResource] = {}
        self._tombstones: dict[ResourceKey, int] = {}
        self._cache_revision = 0
        self._cache_base = 0  # changes after this revision are complete in the cache
        self._available = False
        self._last_error = ""
        self._unavailable_since: float | None = None
        self._subscribers = Subscribers()
        self._closed = threading.Event()
        self._wake = threading.Event()
        try:
            with self._lock:
                conn = self._connection()
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    for statement in _SCHEMA:
                        conn.execute(statement)
            self._reload()
        except StoreUnavailable:
            self._close_conn()
            raise
        self._set_available(True)
        self._listener = threading.Thread(target=self._listen, name="postgres-store-listen", daemon=True)
        self._listener.start()

    # ------------------------------------------------------------------ connections
    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout)),
                application_name="meshplane", keepalives=1, keepalives_idle=5, keepalives_interval=2,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    def _connection(self):
        """The request connection (caller holds ``_lock``), connecting if there is none."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._close_conn()
            self._conn = self._connect()
        return self._conn

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken anyway
                pass

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        message = scrub(str(exc).strip().splitlines()[0], self.url) if str(exc).strip() else type(exc).__name__
        self._set_available(False, message)
        return StoreUnavailable(f"store unavailable: PostgreSQL at {self._where} cannot be reached ({message}); "
                                "serving the last model read, writes are refused until it is back")

    def _failed(self, exc: BaseException) -> StoreError:
        """Map a psycopg error: a lost connection makes the store unavailable; anything else
        is a plain ``StoreError``."""
        import psycopg

        conn = self._conn
        lost = (
            isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
            and (conn is None or conn.closed or conn.broken)
        ) or isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow)
        if lost:
            self._close_conn()
            return self._unavailable(exc)
        return StoreError(f"PostgreSQL at {self._where}: {type(exc).__name__}: {scrub(str(exc), self.url)}")

    def _set_available(self, available: bool, error: str = "") -> None:
        was = self._available
        self._available = available
        if available:
            self._last_error, self._unavailable_since = "", None
            if not was and self._cache_revision:
                log.warning("store: PostgreSQL at %s is reachable again", self._where)
        else:
            self._last_error = error or self._last_error
            if was or self._unavailable_since is None:
                self._unavailable_since = time.time()
                if was:
                    log.warning("store: PostgreSQL at %s unreachable: %s", self._where, error)
            self._wake.set()

    @property
    def available(self) -> bool:
        """Whether writes can be taken (PostgreSQL reachable)."""
        return self._available

    def status(self) -> dict[str, Any]:
        """For ``/status``, ``/healthz`` and ``/readyz``."""
        return {
            "store": "postgresql",
            "url": self._where,
            "available": self._available,
            "revision": self._cache_revision,
            "error": self._last_error or None,
            "unavailableSince": self._unavailable_since,
        }

    def _run(self, fn: Callable[[Any], Any], *, retry: bool = False) -> Any:
        """Run ``fn(conn)`` on the request connection; psycopg errors become store errors.
        ``retry`` (reads only): a connection found dead is replaced once before giving up
        (PostgreSQL restarted since the last use)."""
        import psycopg

        if not self._available and self._conn is None:
            raise StoreUnavailable(f"store unavailable: PostgreSQL at {self._where} cannot be reached "
                                   f"({self._last_error or 'not connected'}); writes are refused until it is back")
        with self._lock:
            try:
                return fn(self._connection())
            except psycopg.Error as exc:
                conn = self._conn
                if not (retry and conn is not None and (conn.closed or conn.broken)):
                    raise self._failed(exc) from exc
            self._close_conn()
            try:
                return fn(self._connection())
            except psycopg.Error as exc:
                raise self._failed(exc) from exc

    # ------------------------------------------------------------------ reads
    def revision(self) -> int:
        try:
            return self._run(_revision, retry=True)
        except StoreUnavailable:
            return self._cache_revision

    def read_all(self) -> Snapshot:
        try:
            revision, rows = self._run(_read_all, retry=True)
        except StoreUnavailable:
            with self._cache_lock:
                return Snapshot(self._cache_revision, tuple(self._cache[k] for k in sorted(self._cache)))
        return Snapshot(revision, tuple(resource_from_row(r) for r in rows))

    def get(self, key: ResourceKey) -> StoredResource | None:
        try:
            row = self._run(lambda conn: conn.execute(
                f"SELECT {_COLUMNS} FROM meshplane_resources WHERE {_KEY_WHERE}", key_columns(key)).fetchone(), retry=True)
        except StoreUnavailable:
            with self._cache_lock:
                return self._cache.get(key)
        return resource_from_row(row) if row else None

    def changes_since(self, revision: int) -> Changes:
        try:
            return self._run(lambda conn: _changes_since(conn, revision), retry=True)
        except StoreUnavailable:
            return self._cached_changes_since(revision)

    def _cached_changes_since(self, revision: int) -> Changes:
        with self._cache_lock:
            if revision < self._cache_base:
                raise RevisionGone(f"PostgreSQL is unreachable and this replica's copy starts at revision "
                                   f"{self._cache_base}, after {revision}: use read_all()")
            changed = [(k, r) for k, r in self._cache.items() if r.revision > revision]
            changed += [(k, None) for k, rev in self._tombstones.items() if rev > revision]
            return Changes(self._cache_revision, tuple(sorted(changed, key=lambda kr: kr[0])))

    def get_idempotency(self, scope: str, token: str) -> IdempotencyRecord | None:
        row = self._run(lambda conn: conn.execute(
            "SELECT scope, token, digest, response, created_at FROM meshplane_idempotency "
            "WHERE scope = %s AND token = %s", (storable_text(scope), storable_text(token))).fetchone(), retry=True)
        return record_from_row(row) if row else None

    # ------------------------------------------------------------------ writes
    def commit(
        self,
        ops: Sequence[Op],
        *,
        expected_revision: int | None = None,
        idempotency: IdempotencyRecord | None = None,
        expected_scope: Collection[str] | None = None,
    ) -> int:
        for op in ops:
            if not isinstance(op, (Put, Delete)):
                raise TypeError(f"not a store op: {op!r}")
        if not self._available:
            raise StoreUnavailable(
                f"store unavailable: PostgreSQL at {self._where} cannot be reached ({self._last_error}); "
                "the change was not written, retry when it is back"
            )
        new = self._run(lambda conn: _commit(conn, ops, expected_revision, idempotency, expected_scope))
        self._subscribers.notify(new)
        self._wake.set()  # bring the in-memory copy up to date now
        return new

    # ------------------------------------------------------------------ the replica's copy
    def _reload(self) -> None:
        """Replace the in-memory copy by a full read."""
        revision, rows = self._run(_read_all, retry=True)
        with self._cache_lock:
            self._cache = {r.key: r for r in map(resource_from_row, rows)}
            self._tombstones = {}
            self._cache_revision = self._cache_base = revision

    def _catch_up(self) -> int | None:
        """Apply what was committed since the copy's revision; the new revision if it moved."""
        with self._cache_lock:
            have = self._cache_revision
        current = self._run(_revision, retry=True)
        if current == have:
            return None
        if current < have:  # the database was replaced or reset: start over
            log.warning("store: revision went back from %d to %d (database replaced?); reloading", have, current)
            self._reload()
            return current
        changes = self._run(lambda conn: _changes_since(conn, have), retry=True)
        with self._cache_lock:
            if changes.revision <= self._cache_revision:
                return None
            for key, res in changes.changed:
                if res is None:
                    self._cache.pop(key, None)
                    self._tombstones[key] = changes.revision
                else:
                    self._cache[key] = res
                    self._tombstones.pop(key, None)
            self._cache_revision = changes.revision
        return changes.revision

    def _listen(self) -> None:
        backoff = 0.1
        listen_conn = None
        while not self._closed.is_set():
            try:
                if listen_conn is None or listen_conn.closed or listen_conn.broken:
                    if listen_conn is not None:
                        _quiet_close(listen_conn)
                    listen_conn = None
                    listen_conn = self._connect()
                    listen_conn.execute(f"LISTEN {CHANNEL}")
                    # LISTEN first, then catch up: nothing committed in between is missed.
                    self._after_catch_up(self._catch_up_reconnecting())
                    backoff = 0.1
                next_poll = time.monotonic() + self._poll_interval
                while not self._closed.is_set():
                    woken = self._wake.is_set()
                    self._wake.clear()
                    notified = woken or any(True for _ in listen_conn.notifies(timeout=0.25, stop_after=1))
                    if notified or time.monotonic() >= next_poll or not self._available:
                        self._after_catch_up(self._catch_up_reconnecting())
                        next_poll = time.monotonic() + self._poll_interval
            except StoreUnavailable:
                pass
            except Exception as exc:  # noqa: BLE001 - psycopg errors, a lost connection
                if self._closed.is_set():
                    break
                if listen_conn is not None and (listen_conn.closed or listen_conn.broken):
                    # Reconnect (and catch up); if PostgreSQL is gone, connecting marks the store unavailable.
                    log.info("store: listening connection lost (%s); reconnecting", exc)
                else:
                    log.exception("store: listener failed")
            if listen_conn is not None and (listen_conn.closed or listen_conn.broken):
                _quiet_close(listen_conn)
                listen_conn = None
            self._closed.wait(backoff)
            backoff = min(backoff * 2, 1.0)
        if listen_conn is not None:
            _quiet_close(listen_conn)

    def _catch_up_reconnecting(self) -> int | None:
        """Catch up on the request connection (reconnecting it if needed); marks available."""
        with self._lock:
            try:
                self._connection()
            except StoreUnavailable:
                raise
        moved = self._catch_up()
        self._set_available(True)
        return moved

    def _after_catch_up(self, moved: int | None) -> None:
        if moved is not None:
            self._subscribers.notify(moved)

    # ------------------------------------------------------------------ notification
    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        listener = getattr(self, "_listener", None)
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=5)
        with self._lock:
            self._close_conn()


# ---------------------------------------------------------------------- SQL
def _revision(conn) -> int:
    return int(conn.execute("SELECT v FROM meshplane_meta WHERE k = 'revision'").fetchone()[0])


def _read_all(conn) -> tuple[int, list]:
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        revision = _revision(conn)
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM meshplane_resources ORDER BY kind, mesh, parent, name").fetchall()
    return revision, rows


def _changes_since(conn, revision: int) -> Changes:
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        current = _revision(conn)
        rows = conn.execute(
            "SELECT c.kind, c.mesh, c.parent, c.name, r.spec, r.version, r.metadata, r.tags, r.revision "
            "FROM meshplane_changes c LEFT JOIN meshplane_resources r ON r.kind = c.kind AND r.mesh = c.mesh "
            "AND r.parent = c.parent AND r.name = c.name WHERE c.revision > %s "
            "ORDER BY c.kind, c.mesh, c.parent, c.name", (revision,)).fetchall()
    return Changes(current, tuple((ResourceKey(*r[:4]), resource_from_row(r) if r[4] is not None else None) for r in rows))


def _changed_in(conn, revision: int, meshes: Collection[str]) -> bool:
    """Whether a resource of one of ``meshes`` changed after ``revision``."""
    return conn.execute("SELECT 1 FROM meshplane_changes WHERE revision > %s AND mesh = ANY(%s) LIMIT 1",
                        (revision, sorted(set(meshes)))).fetchone() is not None


def _commit(conn, ops: Sequence[Op], expected_revision: int | None, idempotency: IdempotencyRecord | None,
            expected_scope: Collection[str] | None = None) -> int:
    with conn.transaction():
        # Serializes every writer of every replica; the checks below run under this lock.
        revision = int(conn.execute("SELECT v FROM meshplane_meta WHERE k = 'revision' FOR UPDATE").fetchone()[0])
        if expected_revision is not None and revision != expected_revision and (
                expected_scope is None or _changed_in(conn, expected_revision, expected_scope)):
            raise RevisionConflict(expected_revision, revision)
        if idempotency is not None:
            row = conn.execute(
                "SELECT scope, token, digest, response, created_at FROM meshplane_idempotency "
                "WHERE scope = %s AND token = %s",
                (storable_text(idempotency.scope), storable_text(idempotency.token))).fetchone()
            if row:
                raise DuplicateToken(record_from_row(row))
        new = revision + 1
        for op in ops:
            key = op.key
            current = conn.execute(f"SELECT version FROM meshplane_resources WHERE {_KEY_WHERE}", key_columns(key)).fetchone()
            actual = int(current[0]) if current else None
            expected = op.expected_version
            if expected is not None and (actual if actual is not None else 0) != expected:
                raise VersionConflict(key, expected, actual)
            if isinstance(op, Put):
                res = op.resource
                conn.execute(
                    f"INSERT INTO meshplane_resources ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (kind, mesh, parent, name) DO UPDATE SET spec = EXCLUDED.spec, "
                    "version = EXCLUDED.version, metadata = EXCLUDED.metadata, tags = EXCLUDED.tags, "
                    "revision = EXCLUDED.revision",
                    (*key_columns(key), dump(res.spec), int(res.version), dump(res.metadata),
                     dump([list(t) for t in sorted_tags(res.tags)]), new),
                )
            else:
                if actual is None:
                    continue
                conn.execute(f"DELETE FROM meshplane_resources WHERE {_KEY_WHERE}", key_columns(key))
            conn.execute(
                "INSERT INTO meshplane_changes (kind, mesh, parent, name, revision) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (kind, mesh, parent, name) DO UPDATE SET revision = EXCLUDED.revision",
                (*key_columns(key), new),
            )
        if idempotency is not None:
            conn.execute(
                "INSERT INTO meshplane_idempotency (scope, token, digest, response, created_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (storable_text(idempotency.scope), storable_text(idempotency.token), idempotency.digest,
                 dump(idempotency.response),
                 idempotency.created_at or time.time()),
            )
        conn.execute("UPDATE meshplane_meta SET v = %s WHERE k = 'revision'", (new,))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(new)))
    return new


def _quiet_close(conn) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass



__all__ = ["CHANNEL", "PostgresStore", "redact"]
