"""Who may read, create, change and delete what: accounts, mesh ownership and cross-account sharing.

Pure functions (no I/O, no store): the API hands in the ``Caller`` (from SigV4, see
``xds_server.api.sigv4``), the mesh as ``MeshAccess`` (its name, owner account and the accounts
it is shared with) and, for a resource, its ``resourceOwner``; it gets a ``Decision`` back
(truthy when allowed; otherwise the App Mesh error type and message to answer with).

The rules (App Mesh's, with sharing as a meshplane extension on the mesh: the owner lists the
account ids it shares the mesh with, instead of AWS RAM):

* Two checks, both must pass. The **account** check: a mesh exists only for its owner and the
  accounts it is shared with (its *members*); for everyone else it is ``NotFoundException``,
  exactly as another account's unshared mesh is on AWS. The **key** check: the access key
  must have the mesh in its ``read``/``write`` list (``--api-credentials``), else
  ``ForbiddenException``.
* Members read everything in the mesh (the mesh, every resource, whoever owns it).
* Creating a mesh: any caller whose key may write that name; the caller's account owns it.
* The mesh itself (update, delete, tags, its sharing list): the owner only. A participant
  gets ``ForbiddenException``.
* Creating a resource in a mesh: the owner and every account it is shared with. The new
  resource's ``meshOwner`` is the mesh owner's account, its ``resourceOwner`` the caller's
  (``owners_for_create``).
* Updating a resource or its tags: its ``resourceOwner`` only (the mesh owner cannot rewrite a
  participant's route, nor a participant the owner's).
* Deleting a resource: its ``resourceOwner``, or the mesh owner (so an owner who stops sharing
  with an account can still clean up, and is never left with a mesh it cannot delete).
* ``meshOwner`` in a request (App Mesh's optional parameter) must name the mesh's owner when
  given; a different account is ``NotFoundException`` (no such mesh for that owner).

The ``caller`` is duck-typed: ``account_id`` (or ``account``) and ``can_read(mesh)`` /
``can_write(mesh)`` (or ``may(mesh, write)``), so any caller object the API uses fits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = [
    "ALLOW",
    "Decision",
    "FORBIDDEN",
    "MeshAccess",
    "NOT_FOUND",
    "is_member",
    "may_change_mesh",
    "may_change_resource",
    "may_create_in_mesh",
    "may_create_mesh",
    "may_delete_resource",
    "may_read_mesh",
    "may_see_mesh",
    "owners_for_create",
    "shared_accounts_errors",
]

FORBIDDEN = "ForbiddenException"
NOT_FOUND = "NotFoundException"
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")


@dataclass(frozen=True)
class MeshAccess:
    name: str
    owner: str  # account id of the mesh owner
    shared_with: frozenset[str] = frozenset()  # account ids the owner shares the mesh with

    @classmethod
    def of(cls, name: str, owner: str, shared_with: Iterable[str] = ()) -> "MeshAccess":
        return cls(name, owner, frozenset(shared_with))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    error_type: str | None = None  # FORBIDDEN | NOT_FOUND when refused
    message: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)


def _forbidden(message: str) -> Decision:
    return Decision(False, FORBIDDEN, message)


def _not_found(message: str) -> Decision:
    return Decision(False, NOT_FOUND, message)


def _account(caller: Any) -> str:
    account = getattr(caller, "account_id", None)
    return account if account is not None else caller.account


def _key_may(caller: Any, mesh: str, write: bool) -> bool:
    method = getattr(caller, "can_write" if write else "can_read", None)
    if method is not None:
        return bool(method(mesh))
    return bool(caller.may(mesh, write))


def _who(caller: Any) -> str:
    key = getattr(caller, "access_key_id", None) or getattr(caller, "name", None)
    return f"access key {key} (account {_account(caller)})" if key else f"account {_account(caller)}"


def is_member(account: str, mesh: MeshAccess) -> bool:
    """The owner or an account the mesh is shared with."""
    return account == mesh.owner or account in mesh.shared_with


def _reach(caller: Any, mesh: MeshAccess, requested_owner: str | None, write: bool, action: str) -> Decision:
    """The account check (member, ``meshOwner`` parameter), then the key check."""
    if requested_owner and requested_owner != mesh.owner:
        return _not_found(f"Mesh {mesh.name} owned by account {requested_owner} not found.")
    if not is_member(_account(caller), mesh):
        return _not_found(f"Mesh {mesh.name} not found.")
    if not _key_may(caller, mesh.name, write):
        right = "write" if write else "read"
        return _forbidden(f"{_who(caller)} may not {right} mesh {mesh.name} ({action}): "
                          f"the mesh is not in its meshes.{right} list")
    return ALLOW


def may_see_mesh(caller: Any, mesh: MeshAccess) -> bool:
    """Whether ``ListMeshes`` shows the mesh to the caller (member and readable by the key)."""
    return bool(_reach(caller, mesh, None, False, "list"))


def may_read_mesh(caller: Any, mesh: MeshAccess, *, requested_owner: str | None = None) -> Decision:
    """Describe/List anything in the mesh (the mesh itself, any resource, its tags)."""
    return _reach(caller, mesh, requested_owner, False, "read")


def may_create_mesh(caller: Any, name: str) -> Decision:
    """CreateMesh (whether the name is taken is the API's ``ConflictException``)."""
    if not _key_may(caller, name, True):
        return _forbidden(f"{_who(caller)} may not create mesh {name}: the name is not in its meshes.write list")
    return ALLOW


def may_change_mesh(caller: Any, mesh: MeshAccess, *, requested_owner: str | None = None,
                    action: str = "change") -> Decision:
    """UpdateMesh, DeleteMesh, Tag/UntagResource of the mesh, its sharing list: the owner only."""
    decision = _reach(caller, mesh, requested_owner, True, action)
    if not decision:
        return decision
    if _account(caller) != mesh.owner:
        return _forbidden(f"{_who(caller)} may not {action} mesh {mesh.name}: it is owned by account {mesh.owner} "
                          "and only shared with this account")
    return ALLOW


def may_create_in_mesh(caller: Any, mesh: MeshAccess, *, requested_owner: str | None = None) -> Decision:
    """Create a resource (virtual node/service/router/gateway, route, gateway route) in the mesh."""
    return _reach(caller, mesh, requested_owner, True, "create resources in")


def owners_for_create(caller: Any, mesh: MeshAccess) -> tuple[str, str]:
    """``(meshOwner, resourceOwner)`` of a resource the caller creates in ``mesh``."""
    return mesh.owner, _account(caller)


def may_change_resource(caller: Any, mesh: MeshAccess, resource_owner: str, *, requested_owner: str | None = None,
                        what: str = "the resource") -> Decision:
    """Update a resource or change its tags: its owner only."""
    decision = _reach(caller, mesh, requested_owner, True, "update resources in")
    if not decision:
        return decision
    if _account(caller) != resource_owner:
        return _forbidden(f"{_who(caller)} may not update {what} in mesh {mesh.name}: it is owned by account "
                          f"{resource_owner}")
    return ALLOW


def may_delete_resource(caller: Any, mesh: MeshAccess, resource_owner: str, *, requested_owner: str | None = None,
                        what: str = "the resource") -> Decision:
    """Delete a resource: its owner, or the mesh owner."""
    decision = _reach(caller, mesh, requested_owner, True, "delete resources in")
    if not decision:
        return decision
    account = _account(caller)
    if account != resource_owner and account != mesh.owner:
        return _forbidden(f"{_who(caller)} may not delete {what} in mesh {mesh.name}: it is owned by account "
                          f"{resource_owner} (only its owner or the mesh owner {mesh.owner} may)")
    return ALLOW


def shared_accounts_errors(owner: str, accounts: Any, field: str = "spec.sharedWith") -> list[str]:
    """Validation messages for a mesh's list of accounts to share with (empty list: fine)."""
    if accounts is None:
        return []
    if not isinstance(accounts, (list, tuple)):
        return [f"{field}: expected a list of 12-digit account ids, got {type(accounts).__name__}"]
    errors, seen = [], set()
    for i, account in enumerate(accounts):
        if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
            errors.append(f"{field}[{i}]: {account!r} is not a 12-digit account id")
        elif account == owner:
            errors.append(f"{field}[{i}]: {account} is the mesh owner itself")
        elif account in seen:
            errors.append(f"{field}[{i}]: {account} is listed twice")
        seen.add(account)
    return errors
