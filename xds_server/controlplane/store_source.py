"""The model from a store (``meshplane serve --store URL``) instead of files.

``load()`` reads the whole store consistently (one revision) and loads it with meshplane's
loader, exactly as files are (the API only ever commits models that load). ``watch(on_change)``
calls ``on_change`` after commits: the store's notification (in-process for SQLite,
LISTEN/NOTIFY for PostgreSQL) wakes it, a slow poll of the revision backs it up.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Awaitable, Callable

from mesh_model import MeshModel, load_texts

try:  # parsed documents straight in (no JSON round trip), where the loader offers it
    from mesh_model.load import load_documents
except ImportError:  # pragma: no cover - older loader
    load_documents = None

from xds_server.api.resources import native
from xds_server.store.base import Store


def redacted(url: str) -> str:
    """The store URL without a password (for logs and /status)."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


class StoreSource:
    def __init__(self, store: Store, *, poll_interval: float = 2.0):
        self.store = store
        self.poll_interval = poll_interval
        self.revision = -1  # the store revision of the last load()

    @property
    def description(self) -> str:
        return redacted(self.store.url)

    def load(self) -> MeshModel:
        snap = self.store.read_all()
        docs = [native(r) for r in snap.resources]
        label = f"store revision {snap.revision}"
        if load_documents is not None:
            model = load_documents([(label, d) for d in docs])
        else:
            model = load_texts([(label + ".json", json.dumps(docs))])
        self.revision = snap.revision
        return model

    async def watch(self, on_change: Callable[[], Awaitable[object]]) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        unsubscribe = self.store.subscribe(lambda _rev: loop.call_soon_threadsafe(wake.set))
        try:
            while True:
                try:
                    await asyncio.wait_for(wake.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass
                wake.clear()
                try:
                    current = await asyncio.to_thread(self.store.revision)
                except Exception:  # store unreachable: keep serving the last model, retry
                    continue
                if current != self.revision:
                    await on_change()
        finally:
            unsubscribe()

    def status(self) -> dict:
        status = {"store": self.description, "revision": self.revision}
        extra = getattr(self.store, "status", None)
        if callable(extra):
            try:
                status["storeStatus"] = extra()
            except Exception as exc:  # noqa: BLE001 - status must answer
                status["storeStatus"] = {"error": str(exc)}
        return status
