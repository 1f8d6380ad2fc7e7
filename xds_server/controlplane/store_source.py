"""The model from a store (``meshplane serve --store URL``) instead of files.

``load()`` reads the whole store consistently (one revision) and loads it with meshplane's
loader, exactly as files are (the API only ever commits models that load), one mesh at a
time so that a reload loads again only the meshes that changed. ``watch(on_change)``
calls ``on_change`` after commits: the store's notification (in-process for SQLite,
LISTEN/NOTIFY for PostgreSQL) wakes it, a slow poll of the revision backs it up.
"""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from mesh_model import MeshModel
from mesh_model.load import DocumentCache, combined_model, load_documents
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


class _Part:
    """One mesh's documents (``""``: the Cloud Map stand-ins), its loader cache and its last
    loaded model; ``dirty`` until the part's changes are loaded."""

    __slots__ = ("native", "documents", "model", "dirty")

    def __init__(self):
        self.native: dict[ResourceKey, tuple[str, dict, bytes | None]] = {}  # key -> (label, document, digest)
        self.documents = DocumentCache()  # a reload re-validates only the documents that changed
        self.model: MeshModel | None = None
        self.dirty = True


class StoreSource:
    """The store's model, loaded mesh by mesh: a reload after a commit loads the meshes that
    commit touched, and reuses every other mesh as it was (the same ``Mesh`` object), so a
    write to a one-node mesh costs what that mesh holds, not what the server holds."""

    def __init__(self, store: Store, *, poll_interval: float = 2.0):
        self.store = store
        self.poll_interval = poll_interval
        self.revision = -1  # the store revision of the last load()
        # the store's resources as native documents by mesh, kept current with ``changes_since``:
        # a reload after one commit reads (and decodes) what that commit changed, not the store
        self._parts: dict[str, _Part] = {}
        self._model: MeshModel | None = None

    @property
    def description(self) -> str:
        return redacted(self.store.url)

    def load(self) -> MeshModel:
        """The model at the store's current revision (raises ``ModelError`` if a changed mesh
        does not load; the next load tries it again)."""
        revision = self._catch_up()
        changed = False
        for name in sorted(self._parts):
            part = self._parts[name]
            if not part.dirty:
                continue
            changed = True
            if not part.native:
                del self._parts[name]
                continue
            # in key order (the same on every replica and whichever way the copy was brought up
            # to date); one stable label per resource (its identity), so the cache knows unchanged ones
            entries = [part.native[key] for key in sorted(part.native)]
            part.model = load_documents([(label, doc) for label, doc, _ in entries], cache=part.documents,
                                        digests=[digest for _, _, digest in entries])
            part.dirty = False
        if changed or self._model is None:
            self._model = combined_model(part.model for part in self._parts.values() if part.model is not None)
        self.revision = revision
        return self._model

    def _catch_up(self) -> int:
        """Bring the copy of the store's documents to one consistent revision; returns it."""
        if self.revision >= 0:
            try:
                changes = self.store.changes_since(self.revision)
            except RevisionGone:
                pass
            else:
                for key, res in changes.changed:
                    part = self._part(key.mesh)
                    if res is None:
                        part.native.pop(key, None)
                    else:
                        part.native[key] = _entry(res)
                return changes.revision
        snap = self.store.read_all()
        for part in self._parts.values():  # start over: every part is read again
            part.native, part.dirty = {}, True
        for res in snap.resources:
            self._part(res.key.mesh).native[res.key] = _entry(res)
        return snap.revision

    def _part(self, mesh: str) -> _Part:
        part = self._parts.get(mesh)
        if part is None:
            part = self._parts[mesh] = _Part()
        part.dirty = True
        return part

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
