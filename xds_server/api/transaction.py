"""One write transaction for every API write: the App Mesh operations (``service``) and
meshplane's ``apply`` (``batch``) both go through ``optimistic_write``.

A write is optimistic: read the store's resources at a revision, plan the change against
them (authorize, build the would-be model, validate it), then commit only if nothing the plan
read has changed since (the store's ``expected_revision`` + ``expected_scope``). If something
did, another writer (this process or another replica) got there first: read again and plan
again, up to ``WRITE_ATTEMPTS`` times. A plan raises the App Mesh error the write answers
with; it never writes anything itself.

The helpers every plan shares: ``would_be`` (the index after the ops) and ``new_metadata``
(what a created resource is stamped with).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Collection, Protocol

from xds_server.api.errors import ApiError, conflict
from xds_server.store.base import (
    DuplicateToken, IdempotencyRecord, Op, Put, ResourceKey, RevisionConflict, Store, StoredResource, VersionConflict,
)

WRITE_ATTEMPTS = 8
TOO_FAST = "the store is changing too fast; retry the request"


@dataclass(frozen=True)
class Planned:
    """What one attempt decided: the store ops, the answer, and what the plan read
    (``scope``: mesh names, ``""`` for the Cloud Map stand-ins; ``None``: the whole store)."""

    ops: list[Op]
    answer: Any
    scope: Collection[str] | None = None
    commit: bool = True  # False: answer without writing (a dry run, nothing to change)
    idempotency: IdempotencyRecord | None = None


class Reads(Protocol):
    """Where an attempt reads the store's resources from (``ApiService.index``/``mesh_index``)."""

    def __call__(self) -> tuple[int, dict[ResourceKey, StoredResource]]: ...


def optimistic_write(store: Store, read: Reads, plan: Callable[[int, dict[ResourceKey, StoredResource]], Planned], *,
                     on_moved: Callable[[], None] | None = None,
                     on_duplicate: Callable[[IdempotencyRecord], Any] | None = None) -> tuple[Any, int]:
    """Run ``plan`` on a fresh read until its commit goes through; return its answer and the
    store revision it left (the read one when nothing was written).

    ``on_moved``: called when the store moved under a plan, before retrying (it may raise, e.g.
    an apply with ``expectedRevision`` answers ``ConflictException`` instead of retrying).
    ``on_duplicate``: the answer when the plan's idempotency record was committed by a
    concurrent twin first (a ``clientToken`` retry)."""
    for _ in range(WRITE_ATTEMPTS):
        revision, index = read()
        planned = plan(revision, index)
        if not planned.commit or not planned.ops:
            return planned.answer, revision
        try:
            committed = store.commit(planned.ops, expected_revision=revision, idempotency=planned.idempotency,
                                     expected_scope=planned.scope)
        except RevisionConflict:
            if on_moved is not None:
                on_moved()
            continue
        except VersionConflict as exc:
            raise conflict(f"{exc.key} was changed concurrently ({exc}); read it again and retry") from None
        except DuplicateToken as exc:
            if on_duplicate is None:
                raise
            return on_duplicate(exc.record), revision
        return planned.answer, committed
    raise ApiError("TooManyRequestsException", TOO_FAST)


def would_be(index: dict[ResourceKey, StoredResource], ops: list[Op]) -> dict[ResourceKey, StoredResource]:
    """``index`` as it would be after ``ops`` (a copy)."""
    after = dict(index)
    for op in ops:
        if isinstance(op, Put):
            after[op.key] = op.resource
        else:
            after.pop(op.key, None)
    return after


def new_metadata(now: float, mesh_owner: str, resource_owner: str) -> dict:
    """What App Mesh stamps a created resource with (``version`` 1 is the resource's own field)."""
    return {"uid": str(uuid.uuid4()), "createdAt": now, "lastUpdatedAt": now,
            "meshOwner": mesh_owner, "resourceOwner": resource_owner}
