"""How the SQL stores (SQLite, PostgreSQL) write the model into rows and read it back: one
row per resource (key columns, spec/metadata/tags as canonical JSON text) and one per
idempotency record. Shared so both stores hold byte-identical data for the same model."""
from __future__ import annotations

import json

from xds_server.store.base import IdempotencyRecord, ResourceKey, StoredResource


def key_columns(key: ResourceKey) -> tuple[str, str, str, str]:
    return (key.kind, key.mesh, key.parent, key.name)


def dump(value) -> str:
    """Canonical JSON (sorted keys, no spaces): equal values are equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def resource_from_row(row) -> StoredResource:
    kind, mesh, parent, name, spec, version, metadata, tags, revision = row
    return StoredResource(
        ResourceKey(kind, mesh, parent, name), json.loads(spec), int(version), json.loads(metadata),
        tuple((k, v) for k, v in json.loads(tags)), int(revision),
    )


def record_from_row(row) -> IdempotencyRecord:
    scope, token, digest, response, created_at = row
    return IdempotencyRecord(scope, token, digest, json.loads(response), float(created_at))
