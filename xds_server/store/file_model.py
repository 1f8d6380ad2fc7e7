"""A read-only ``Store`` over the model a file-mode server loaded (``serve PATH...``), so the
API answers reads there too. Writes are refused by the service (``read_only``) before they
reach this store; ``commit`` refuses as well, as a second line.

Resources get version 1, ``createdAt``/``lastUpdatedAt`` of the load that produced the model,
and a uid derived from their identity (stable across reloads)."""
from __future__ import annotations

import hashlib
import time
import uuid
from typing import Callable

from mesh_model import MeshModel

from xds_server.store.base import DEFAULT_ACCOUNT, Changes, RevisionGone, ResourceKey, Snapshot, Store, StoredResource, StoreError

FILE_MODE_MESSAGE = ("the model is managed by files (meshplane serve PATH...): change the files instead; "
                     "to change it through the API, run meshplane serve --store URL")


def resources_of(model: MeshModel, account: str = DEFAULT_ACCOUNT, loaded_at: float = 0.0) -> list[StoredResource]:
    out = []

    def add(r) -> None:
        parent = r.virtualRouter or r.virtualGateway or r.namespaceName
        key = ResourceKey(r.kind, r.mesh if r.kind != "CloudMapService" else "", parent, r.name)
        uid = str(uuid.UUID(hashlib.sha256(str(key).encode()).hexdigest()[:32]))
        spec = r.spec.model_dump(mode="json", exclude_unset=True)
        out.append(StoredResource(key, spec, 1, {"uid": uid, "createdAt": loaded_at, "lastUpdatedAt": loaded_at,
                                                 "meshOwner": account, "resourceOwner": account}))

    for mesh in model.meshes.values():
        add(mesh.resource)
        for group in (mesh.virtual_services, mesh.virtual_routers, mesh.virtual_nodes, mesh.virtual_gateways):
            for r in group.values():
                add(r)
        for routes in list(mesh.routes.values()) + list(mesh.gateway_routes.values()):
            for r in routes.values():
                add(r)
    for r in model.cloud_map.values():
        add(r)
    return sorted(out, key=lambda r: r.key)


class ModelSource(Store):
    """``model()`` returns the current model; ``revision()`` a number that changes with it
    (e.g. the control plane's reload count)."""

    def __init__(self, model: Callable[[], MeshModel], revision: Callable[[], int], *, account: str = DEFAULT_ACCOUNT):
        self._model = model
        self._revision = revision
        self.account = account
        self._cache: tuple[int, Snapshot] | None = None

    def revision(self) -> int:
        return self._revision()

    def read_all(self) -> Snapshot:
        revision = self._revision()
        if self._cache is None or self._cache[0] != revision:
            self._cache = (revision, Snapshot(revision, tuple(resources_of(self._model(), self.account, time.time()))))
        return self._cache[1]

    def get(self, key: ResourceKey) -> StoredResource | None:
        return next((r for r in self.read_all().resources if r.key == key), None)

    def changes_since(self, revision: int) -> Changes:
        raise RevisionGone()

    def commit(self, ops, *, expected_revision=None, idempotency=None, expected_scope=None) -> int:
        raise StoreError(FILE_MODE_MESSAGE)

    def get_idempotency(self, scope: str, token: str):
        return None

    def subscribe(self, callback):
        return lambda: None
