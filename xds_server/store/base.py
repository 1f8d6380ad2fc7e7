"""The store interface: where ``meshplane serve --store URL`` keeps the model.

A store holds exactly the native model, one row per resource, plus a store **revision**
(an integer that grows by one per committed transaction) and idempotency records. It knows
nothing about App Mesh semantics (validation, ARNs, references): the API layer
(``xds_server.api``) decides what to write; the store makes the write atomic and tells
everyone about it.

Identity (``ResourceKey``)
    ``kind``: ``Mesh`` | ``VirtualService`` | ``VirtualRouter`` | ``Route`` | ``VirtualNode`` |
    ``VirtualGateway`` | ``GatewayRoute`` | ``CloudMapService``;
    ``mesh``: the owning mesh (a Mesh's own name; ``""`` for CloudMapService);
    ``parent``: the virtual router of a Route, the virtual gateway of a GatewayRoute, the
    namespace of a CloudMapService, else ``""``; ``name``.

Content (``StoredResource``)
    ``spec``: the App Mesh API spec as camelCase JSON (a dict, exactly as the native YAML
    ``spec:``); ``version``: the resource version (1 at creation, +1 per update; the API
    decides it, the store only compares it); ``metadata``: a JSON object the API owns
    (``uid``, ``createdAt``/``lastUpdatedAt`` as epoch seconds, ``meshOwner``, ``resourceOwner``);
    ``tags``: sorted ``(key, value)`` pairs; ``revision``: the store revision of the commit
    that last wrote it (set by the store; ignored on ``Put``).

Writes (``commit``)
    One call = one transaction: a sequence of ``Put``/``Delete`` applied all-or-nothing.
    Each op may carry ``expected_version``: ``None`` (no check), ``0`` (the resource must not
    exist: a create), ``n > 0`` (it must exist with version ``n``). ``Delete`` with
    ``expected_version=None`` of a missing resource is a no-op. ``expected_revision`` (optional)
    makes the whole commit conditional on the store revision being exactly that (the API
    validates the would-be model read at revision R, then commits only if nothing else was
    committed since: serializable writes with a retry loop). Any failed check raises
    (``VersionConflict``/``RevisionConflict``/``DuplicateToken``) and **nothing** is written.
    An ``IdempotencyRecord`` passed to ``commit`` is stored in the same transaction; if a
    record with the same ``(scope, token)`` exists already, ``DuplicateToken`` is raised
    (carrying the existing record) and nothing is written. A commit with no ops but a record
    is allowed (it still creates a revision). Implementations may forget records older than
    24 hours (SQLite does, in the next commit that stores one).

Reads
    ``read_all()`` -> ``Snapshot(revision, resources)``, consistent (one transaction).
    ``get(key)`` -> the resource or ``None``. ``changes_since(revision)`` -> ``Changes``: the
    current revision and, for every key written after ``revision``, its current state
    (``None`` = deleted); raises ``RevisionGone`` if the store no longer has the history that
    far back (the caller then does ``read_all()``).

Notification
    ``subscribe(callback)`` registers ``callback(revision)``, called (from any thread, possibly
    more than once per revision, possibly coalesced: always followed by a ``changes_since`` /
    ``read_all``) after a commit becomes visible, including commits made by other processes
    for a shared store (PostgreSQL: LISTEN/NOTIFY; SQLite: in-process). Returns an
    unsubscribe function. ``wait_for(revision, timeout)`` (implemented here on top of
    ``subscribe`` + ``revision()``) blocks until the store revision is > ``revision``.

Availability
    ``available`` (writes can be taken) and ``status()`` (``store``, ``url``, ``available``,
    ``revision``, ``error``) for ``/healthz``, ``/readyz`` and ``/status``; an embedded store
    (SQLite) is always available, PostgreSQL reports losing and regaining its server.

Errors: every store problem is a ``StoreError``; ``StoreUnavailable`` when the database cannot
be reached (the server keeps serving its last model and refuses writes).
"""
from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Sequence

from mesh_model.spec import kinds

# the account that owns what no caller created (a file model, an unauthenticated local API):
# App Mesh's documentation account
DEFAULT_ACCOUNT = "111122223333"
KINDS = kinds.NAMES  # what the store holds: every native kind (``mesh_model/spec/kinds.py``)


@dataclass(frozen=True, order=True)
class ResourceKey:
    kind: str
    mesh: str
    parent: str
    name: str

    def __str__(self) -> str:
        parts = [p for p in (self.mesh, self.parent, self.name) if p]
        return f"{self.kind} {'/'.join(parts)}" if self.kind != "Mesh" else f"Mesh {self.name}"


@dataclass(frozen=True)
class StoredResource:
    key: ResourceKey
    spec: dict
    version: int
    metadata: dict = field(default_factory=dict)
    tags: tuple[tuple[str, str], ...] = ()
    revision: int = 0  # set by the store on read

    def with_revision(self, revision: int) -> "StoredResource":
        return StoredResource(self.key, self.spec, self.version, self.metadata, self.tags, revision)


@dataclass(frozen=True)
class Put:
    resource: StoredResource
    expected_version: int | None = None  # None: no check; 0: must not exist; n: must be at version n

    @property
    def key(self) -> ResourceKey:
        return self.resource.key


@dataclass(frozen=True)
class Delete:
    key: ResourceKey
    expected_version: int | None = None  # None: no check (missing = no-op); n: must exist at version n


Op = Put | Delete


@dataclass(frozen=True)
class IdempotencyRecord:
    """What a ``clientToken`` request answered. ``scope`` separates callers/operations (the API
    uses ``account|operation``); ``digest`` identifies the request; ``response`` is what to
    answer again (JSON-serializable)."""

    scope: str
    token: str
    digest: str
    response: Any
    created_at: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    revision: int
    resources: tuple[StoredResource, ...]  # sorted by key


@dataclass(frozen=True)
class Changes:
    revision: int  # the store revision these changes bring the caller to
    changed: tuple[tuple[ResourceKey, StoredResource | None], ...]  # None: deleted


class StoreError(Exception):
    """Any store failure."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (or is read-only right now)."""


class VersionConflict(StoreError):
    def __init__(self, key: ResourceKey, expected: int | None, actual: int | None):
        self.key, self.expected, self.actual = key, expected, actual
        what = "does not exist" if actual is None else f"is at version {actual}"
        want = "not to exist" if expected == 0 else f"version {expected}"
        super().__init__(f"{key}: expected {want}, but it {what}")


class RevisionConflict(StoreError):
    def __init__(self, expected: int, actual: int):
        self.expected, self.actual = expected, actual
        super().__init__(f"store revision is {actual}, not {expected} (another write was committed)")


class DuplicateToken(StoreError):
    def __init__(self, record: IdempotencyRecord):
        self.record = record
        super().__init__(f"client token {record.token!r} was used already")


class RevisionGone(StoreError):
    """``changes_since`` cannot answer that far back: do a ``read_all()``."""


class Store(abc.ABC):
    """See the module docstring. Implementations are thread-safe."""

    url: str = ""

    @abc.abstractmethod
    def revision(self) -> int:
        """The current store revision (0 for an empty, never-written store)."""

    @abc.abstractmethod
    def read_all(self) -> Snapshot: ...

    @abc.abstractmethod
    def get(self, key: ResourceKey) -> StoredResource | None: ...

    @abc.abstractmethod
    def changes_since(self, revision: int) -> Changes: ...

    @abc.abstractmethod
    def commit(
        self,
        ops: Sequence[Op],
        *,
        expected_revision: int | None = None,
        idempotency: IdempotencyRecord | None = None,
        expected_scope: Collection[str] | None = None,
    ) -> int:
        """Apply ``ops`` atomically; return the new store revision.

        ``expected_revision``: ``RevisionConflict`` if the store moved past it. With
        ``expected_scope`` (mesh names; ``""`` stands for the CloudMapService documents) only a
        change to a resource of those meshes since ``expected_revision`` is a conflict: a write
        validated against its own mesh is not retried because another mesh changed, so meshes
        don't slow each other down."""

    @abc.abstractmethod
    def get_idempotency(self, scope: str, token: str) -> IdempotencyRecord | None: ...

    @abc.abstractmethod
    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(revision)`` after every visible commit; returns an unsubscribe function."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections and listener threads."""

    # -- availability (``/healthz``, ``/readyz``, ``/status``); a shared store overrides these
    @property
    def available(self) -> bool:
        """Whether writes can be taken right now (an embedded store always can)."""
        return True

    def status(self) -> dict[str, Any]:
        """``{"store", "url", "available", "revision", "error"}`` for the status endpoints."""
        try:
            revision, error = self.revision(), None
        except StoreError as exc:
            revision, error = None, str(exc)
        return {"store": self.url.split(":", 1)[0] if self.url else type(self).__name__,
                "url": self.url, "available": self.available and error is None, "revision": revision, "error": error}

    # -- helpers built on the abstract methods
    def wait_for(self, revision: int, timeout: float | None = None) -> int:
        """Block until the store revision is greater than ``revision`` (or ``timeout``); return it."""
        cond = threading.Condition()

        def wake(_rev: int) -> None:
            with cond:
                cond.notify_all()

        unsubscribe = self.subscribe(wake)
        try:
            with cond:
                cond.wait_for(lambda: self.revision() > revision, timeout)
            return self.revision()
        finally:
            unsubscribe()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Subscribers:
    """A small thread-safe callback list implementations can use for ``subscribe``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[int], None]] = []

    def add(self, callback: Callable[[int], None]) -> Callable[[], None]:
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def notify(self, revision: int) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(revision)
            except Exception:  # a broken subscriber must not break a commit
                import logging

                logging.getLogger("meshplane.store").exception("store subscriber failed")


def sorted_tags(tags: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in tags))
