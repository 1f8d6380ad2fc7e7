"""The model from a store (``meshplane serve --store URL``) instead of files.

``load()`` reads the whole store consistently (one revision) and loads it with meshplane's
loader, exactly as files are (the API only ever commits models that load). ``watch(on_change)``
calls ``on_change`` after commits: the store's notification (in-process for SQLite,
LISTEN/NOTIFY for PostgreSQL) wakes it, a slow poll of the revision backs it up.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from mesh_model import MeshModel
from mesh_model.load import DocumentCache, load_documents
from mesh_model.load.parse_cache import document_digest

from xds_server.api.resources import native
from xds_server.store.base import ResourceKey, RevisionGone, Store
from xds_server.store.redact import redact_url


def _label(key) -> str:
    """Where a resource comes from, in error messages: ``store:Route/shop/router/main``."""
    return "store:" + "/".join(part for part in (key.kind, key.mesh, key.parent, key.name) if part)


def _entry(res) -> tuple[str, dict, bytes | None]:
    doc = native(res)
    return _label(res.key), doc, document_digest(doc)


def redacted(url: str) -> str:
    """The store URL without its secrets (for logs and /status)."""
    return redact_url(url)


class StoreSource:
    def __init__(self, store: Store, *, poll_interval: float = 2.0):
        self.store = store
        self.poll_interval = poll_interval
        self.revision = -1  # the store revision of the last load()
        # a reload after one commit re-validates only the documents that commit changed
        self._documents = DocumentCache()
        # the store's resources as native documents, kept current with ``changes_since``: a
        # reload after one commit reads (and decodes) what that commit changed, not the store
        self._native: dict[ResourceKey, tuple[str, dict, bytes | None]] = {}  # (label, document, digest)

    @property
    def description(self) -> str:
        return redacted(self.store.url)

    def load(self) -> MeshModel:
        revision = self._catch_up()
        # in key order (the same on every replica and whichever way the copy was brought up to
        # date); one stable label per resource (its identity), so the cache recognises unchanged ones
        entries = [self._native[key] for key in sorted(self._native)]
        model = load_documents([(label, doc) for label, doc, _ in entries], cache=self._documents,
                               digests=[digest for _, _, digest in entries])
        self.revision = revision
        return model

    def _catch_up(self) -> int:
        """Bring the copy of the store's documents to one consistent revision; returns it."""
        if self.revision >= 0:
            try:
                changes = self.store.changes_since(self.revision)
            except RevisionGone:
                pass
            else:
                for key, res in changes.changed:
                    if res is None:
                        self._native.pop(key, None)
                    else:
                        self._native[key] = _entry(res)
                return changes.revision
        snap = self.store.read_all()
        self._native = {r.key: _entry(r) for r in snap.resources}
        return snap.revision

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
