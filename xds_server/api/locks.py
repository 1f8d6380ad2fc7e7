"""One lock per mesh: writers of one mesh take turns, writers of different meshes never wait
for each other (a striped table made two tenants whose names shared a stripe wait on each
other, and a long write to a big mesh then held up a small one)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Hashable, Iterator

from xds_server import fairness


class KeyedLocks:
    """A lock per key, which exists while a thread holds or waits for it (so the table holds
    the keys in use, whatever names callers send)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Hashable, list] = {}  # key -> [lock, holders and waiters]

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._locks.get(key)
            if entry is None:
                entry = self._locks[key] = [threading.Lock(), 0]
            entry[1] += 1
        try:
            with holding(entry[0]):
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


@contextmanager
def holding(lock: threading.Lock) -> Iterator[None]:
    """``with lock:`` for a request: not counted as in flight while it waits (``fairness.waiting``),
    so that long work holding the lock goes on."""
    with fairness.waiting():
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
