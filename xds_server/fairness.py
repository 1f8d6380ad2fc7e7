"""Short requests first: while an HTTP request is being answered, long work (reloading a big
model, validating a write to a big mesh) waits at ``mesh_model.pacing``'s yield points.

The server's threads share one interpreter: without this, a write to a one-node mesh gets
the interpreter in turns with the reload of a 10,000-resource mesh, and takes many times
longer than on an empty server. Requests are short, and they are what a caller waits for.

* ``request()`` counts a request as in flight (the HTTP server: from its connection's accept
  to its answer).
* ``long_work()`` marks the block's work (a reload) as long.
* ``demote()``: the request being answered turns out to be long (a write to a mesh of more
  than ``LONG_MESH`` resources): it stops counting, and its work is long.
* ``waiting()``: the request waits for a lock in the block, which long work may hold: it
  does not count meanwhile (or the long work would wait for the request waiting for it).

Long work reaching a yield point while a request is in flight waits until none is, at most
``MAX_PAUSE`` at a time; a pause that ran out is followed by ``SLICE`` of work before the
next one, and a request counts for ``FRESH`` at most (a slow or idle client does not hold
long work back), so long work always advances. The marks travel in a ``ContextVar``, which
``asyncio.to_thread`` hands to the thread doing the work.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from mesh_model import pacing

MAX_PAUSE = 0.05  # s: the longest a yield point waits at once
SLICE = 0.002  # s: work done after a pause ran out, before the next pause
FRESH = 0.25  # s: a request older than this no longer holds long work back
LONG_MESH = 1000  # resources: a write to a bigger mesh is long work itself


class _Work:
    __slots__ = ("long", "since", "resumed")

    def __init__(self, long: bool):
        self.long = long
        self.since = time.monotonic()  # when it started counting
        self.resumed = 0.0  # when its last pause ran out


_work: ContextVar[_Work | None] = ContextVar("meshplane_work", default=None)
_counted: set[_Work] = set()  # the requests in flight
_changed = threading.Condition()


@contextmanager
def request() -> Iterator[None]:
    """Count the block (answering one request) as a request in flight."""
    work = _Work(long=False)
    _count(work)
    token = _work.set(work)
    try:
        yield
    finally:
        _work.reset(token)
        _uncount(work)


@contextmanager
def long_work() -> Iterator[None]:
    """The block's work waits for requests in flight at yield points."""
    token = _work.set(_Work(long=True))
    try:
        yield
    finally:
        _work.reset(token)


def demote() -> None:
    """The request being answered is long work after all (no-op outside ``request()``)."""
    work = _work.get()
    if work is not None and not work.long:
        work.long = True
        _uncount(work)


@contextmanager
def waiting() -> Iterator[None]:
    """The request waits (for a lock) in the block: it does not count as in flight meanwhile."""
    work = _work.get()
    if work is None or work not in _counted:
        yield
        return
    _uncount(work)
    try:
        yield
    finally:
        _count(work)


def in_flight() -> int:
    """Requests counted as in flight now."""
    return len(_counted)


def _count(work: _Work) -> None:
    with _changed:
        work.since = time.monotonic()
        _counted.add(work)


def _uncount(work: _Work) -> None:
    with _changed:
        _counted.discard(work)
        if not _counted:
            _changed.notify_all()


def _fresh() -> bool:
    now = time.monotonic()
    return any(now - work.since < FRESH for work in _counted)


def _pause() -> None:
    if not _counted:
        return
    work = _work.get()
    if work is None or not work.long or time.monotonic() - work.resumed < SLICE:
        return
    with _changed:
        if not _changed.wait_for(lambda: not _fresh(), timeout=MAX_PAUSE):
            work.resumed = time.monotonic()


def install() -> None:
    """Make ``mesh_model``'s yield points wait for requests in flight (``serve`` calls this)."""
    pacing.install(_pause)
