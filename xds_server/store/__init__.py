"""Stores for the model (``meshplane serve --store URL``); the interface is in ``base``.

``open_store(url)`` picks the implementation by URL scheme:
``sqlite:///path/meshplane.db`` -> ``SqliteStore`` (embedded, one process);
``postgresql://...`` / ``postgres://...`` -> ``xds_server.store.postgres.PostgresStore``
(imported only when asked for, so psycopg is not loaded otherwise).
"""
from __future__ import annotations

from xds_server.store.base import (
    Changes, Delete, DuplicateToken, IdempotencyRecord, Put, ResourceKey, RevisionConflict, RevisionGone, Snapshot,
    Store, StoredResource, StoreError, StoreUnavailable, VersionConflict,
)

__all__ = [
    "Changes", "Delete", "DuplicateToken", "IdempotencyRecord", "Put", "ResourceKey", "RevisionConflict", "RevisionGone",
    "Snapshot", "Store", "StoredResource", "StoreError", "StoreUnavailable", "VersionConflict", "open_store",
]


def open_store(url: str) -> Store:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from xds_server.store.sqlite import SqliteStore

        return SqliteStore(url)
    if scheme in ("postgresql", "postgres"):
        from xds_server.store.postgres import PostgresStore

        return PostgresStore(url)
    from xds_server.store.redact import redact_url

    raise ValueError(f"unsupported store URL {redact_url(url)!r}: use sqlite:///path/meshplane.db or postgresql://...")
