"""SnapshotCache: snapshot key -> current Snapshot, with change notification.

The cache only stores and notifies; it never decides what a client gets (the stream compares
its own per-type state with the snapshot). A ``set`` that changes nothing wakes nobody, so
recompiling an unchanged model costs no traffic. Each key has a generation number that only
moves when the content changes.

Listeners are ``asyncio.Event``s bound to their loop: ``set`` wakes them directly when called
on that loop, or through ``call_soon_threadsafe`` from any other thread.
"""
from __future__ import annotations

import asyncio
import threading
import time

from xds_server.cache.snapshot import Snapshot


class SnapshotCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the dicts only; never held across an await
        self._snapshots: dict[str, Snapshot] = {}
        self._generations: dict[str, int] = {}
        self._listeners: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        # key -> type_url -> (version, time.monotonic() when the cache first held that version)
        self._changed: dict[str, dict[str, tuple[str, float]]] = {}
        self._sizes: dict[str, dict[str, int]] = {}  # key -> type_url -> serialized bytes

    def set(self, key: str, snapshot: Snapshot) -> None:
        """Replace the key's snapshot; wake its listeners only if some version changed."""
        with self._lock:
            old = self._snapshots.get(key)
            if old is snapshot or (old is not None and old.versions() == snapshot.versions()):
                return
            self._snapshots[key] = snapshot
            self._generations[key] = self._generations.get(key, 0) + 1
            now = time.monotonic()
            changed = self._changed.setdefault(key, {})
            for type_url, ts in snapshot.types.items():
                if changed.get(type_url, (None,))[0] != ts.version:
                    changed[type_url] = (ts.version, now)
            self._sizes[key] = {t: sum(len(a.value) for a in ts.resources.values()) for t, ts in snapshot.types.items()}
            listeners = list(self._listeners.get(key, ()))
        self._wake(listeners)

    def delete(self, key: str) -> None:
        """Forget a key (e.g. a removed virtual node); streams on it are woken and will close."""
        with self._lock:
            if self._snapshots.pop(key, None) is None:
                return
            self._changed.pop(key, None)
            self._sizes.pop(key, None)
            self._generations[key] = self._generations.get(key, 0) + 1
            listeners = list(self._listeners.get(key, ()))
        self._wake(listeners)

    def get(self, key: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(key)

    def generation(self, key: str) -> int:
        """0 for a key never set; bumps on every effective change."""
        with self._lock:
            return self._generations.get(key, 0)

    def changed_at(self, key: str, type_url: str) -> tuple[str, float] | None:
        """(version, ``time.monotonic()`` when this key first held it) for one type, or None."""
        with self._lock:
            return self._changed.get(key, {}).get(type_url)

    def sizes(self) -> dict[str, int]:
        """type_url -> serialized bytes of all resources of that type, summed over keys."""
        with self._lock:
            out: dict[str, int] = {}
            for per_type in self._sizes.values():
                for type_url, size in per_type.items():
                    out[type_url] = out.get(type_url, 0) + size
            return out

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)

    def add_listener(self, key: str, event: asyncio.Event) -> None:
        """``event.set()`` on every change of ``key`` until removed (a stream's wake-up)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._listeners.setdefault(key, set()).add((loop, event))

    def remove_listener(self, key: str, event: asyncio.Event) -> None:
        with self._lock:
            entries = self._listeners.get(key)
            if not entries:
                return
            for entry in [e for e in entries if e[1] is event]:
                entries.discard(entry)
            if not entries:
                del self._listeners[key]

    def listener_count(self, key: str | None = None) -> int:
        with self._lock:
            if key is not None:
                return len(self._listeners.get(key, ()))
            return sum(len(v) for v in self._listeners.values())

    async def wait_for_change(self, key: str, seen: int) -> int:
        """Return the key's generation as soon as it differs from ``seen``."""
        event = asyncio.Event()
        self.add_listener(key, event)
        try:
            while (gen := self.generation(key)) == seen:
                await event.wait()
                event.clear()
            return gen
        finally:
            self.remove_listener(key, event)

    @staticmethod
    def _wake(listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, event in listeners:
            if loop is running:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
