"""Cross-account sharing in the API: the account rules of ``xds_server.api.access`` applied to
the store's meshes.

**meshplane extension, sharing a mesh:** the mesh owner lists the accounts it shares the mesh
with in a tag on the mesh, key ``meshplane:sharedWith``, value: 12-digit account ids separated
by spaces and/or commas (``CreateMesh(tags=...)``, ``TagResource``; ``UntagResource`` stops
sharing). Every App Mesh client can set it. A bad value is ``BadRequestException`` naming the
tag; the tag on anything but a mesh too. Only the mesh owner may change the mesh's tags.

Members (the owner and the listed accounts) see the mesh and everything in it and may create
resources in it (``meshOwner`` = the owner's account, ``resourceOwner`` = theirs); a resource is
updated only by its ``resourceOwner`` and deleted by it or the mesh owner. For any other
account the mesh does not exist (``NotFoundException``). The access key's own mesh lists still
apply (``ForbiddenException``).
"""
from __future__ import annotations

import re

from xds_server.api import access
from xds_server.api.errors import ApiError, bad_request
from xds_server.store.base import ResourceKey, StoredResource

SHARED_WITH_TAG = "meshplane:sharedWith"
_SEPARATORS = re.compile(r"[\s,]+")


def parse_shared_with(value: str) -> list[str]:
    return [a for a in _SEPARATORS.split(value or "") if a]


def check_tags(kind: str, owner: str, tags: dict[str, str]) -> None:
    """``BadRequestException`` if ``tags`` set ``meshplane:sharedWith`` wrongly."""
    if SHARED_WITH_TAG not in tags:
        return
    if kind != "Mesh":
        raise bad_request(f"tag {SHARED_WITH_TAG}: only a mesh can be shared (this is a {kind}); "
                          "set the tag on the mesh")
    errors = access.shared_accounts_errors(owner, parse_shared_with(tags[SHARED_WITH_TAG]), field=f"tag {SHARED_WITH_TAG}")
    if errors:
        raise bad_request([e + " (value: 12-digit account ids separated by spaces or commas)" for e in errors])


def mesh_access(mesh: StoredResource) -> access.MeshAccess:
    tags = dict(mesh.tags)
    return access.MeshAccess.of(mesh.key.name, mesh.metadata.get("meshOwner", ""),
                                parse_shared_with(tags.get(SHARED_WITH_TAG, "")))


def _mesh(index: dict, name: str) -> StoredResource | None:
    return index.get(ResourceKey("Mesh", name, "", name))


def _enforce(decision: access.Decision) -> None:
    if not decision:
        raise ApiError(decision.error_type or access.FORBIDDEN, decision.message)


def visible(caller, mesh: StoredResource) -> bool:
    """Whether ``ListMeshes`` shows ``mesh`` to ``caller``."""
    return access.may_see_mesh(caller, mesh_access(mesh))


def check_read(caller, mesh_name: str, index: dict, requested_owner: str | None = None) -> None:
    """Describe/List/ListTagsForResource in ``mesh_name`` (a missing mesh is the caller's NotFound)."""
    mesh = _mesh(index, mesh_name)
    if mesh is not None:
        _enforce(access.may_read_mesh(caller, mesh_access(mesh), requested_owner=requested_owner))


def check_write(caller, verb: str, key: ResourceKey, current: StoredResource | None, index: dict,
                requested_owner: str | None = None) -> None:
    """Create/Update/Delete/TagResource/UntagResource of ``key`` (``current``: its stored state)."""
    if key.kind == "Mesh":
        if verb == "Create":
            _enforce(access.may_create_mesh(caller, key.name))
        elif current is not None:
            action = {"Update": "update", "Delete": "delete"}.get(verb, "change the tags of")
            _enforce(access.may_change_mesh(caller, mesh_access(current), requested_owner=requested_owner, action=action))
        return
    mesh = _mesh(index, key.mesh)
    if mesh is None:
        return
    shared = mesh_access(mesh)
    if verb == "Create" or current is None:
        _enforce(access.may_create_in_mesh(caller, shared, requested_owner=requested_owner))
        return
    owner = current.metadata.get("resourceOwner", shared.owner)
    if verb == "Delete":
        _enforce(access.may_delete_resource(caller, shared, owner, requested_owner=requested_owner, what=str(key)))
    else:
        _enforce(access.may_change_resource(caller, shared, owner, requested_owner=requested_owner, what=str(key)))
