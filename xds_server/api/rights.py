"""The one authorization rule for every path into the model.

The App Mesh operations (``service``), meshplane's whole-model endpoints (``batch``: export and
apply) and anything added later ask the same two questions here, so a change is allowed
through ``apply`` exactly when the equivalent ``Create*``/``Update*``/``Delete*`` by that caller
would be, and ``export`` shows exactly what ``Describe*`` would:

* ``check_read(caller, operation, key, index)``: may the caller read ``key``?
* ``check_write(caller, operation, verb, key, current, index)``: may it ``Create``, ``Update``,
  ``Delete``, ``TagResource`` or ``UntagResource`` ``key`` (``current``: its stored state)?

Both raise the App Mesh error App Mesh would answer with (``ForbiddenException``,
``NotFoundException``); ``may_read``/``may_write`` are the same decisions as booleans, for
filtering (export, prune).

Two layers, both must pass (see ``xds_server.api.access`` for the rules in words):

1. the **key** layer: the access key's ``meshes.read``/``meshes.write`` lists
   (``Authenticator.authorize``);
2. the **account** layer, when the authenticator enforces accounts (SigV4, loopback): mesh
   ownership and cross-account sharing (``sharing_auth``).

``CloudMapService`` documents (meshplane's stand-in for AWS Cloud Map instances) belong to no
mesh, so they have rules of their own: the key must be given the namespace
(``cloudMap.read``/``cloudMap.write`` patterns in ``--api-credentials``; nobody is given any by
default), and a stored service is changed or deleted only by the account that created it
(its ``resourceOwner``).
"""
from __future__ import annotations

from typing import Any

from xds_server.api import sharing_auth
from xds_server.api.errors import ApiError, forbidden
from xds_server.store.base import ResourceKey, StoredResource

CLOUD_MAP = "CloudMapService"
WRITE_VERBS = ("Create", "Update", "Delete", "TagResource", "UntagResource")


class Rights:
    """The decisions of one API: its authenticator (the key layer) and whether it enforces the
    account rules (``authenticator.accounts``)."""

    def __init__(self, authenticator: Any):
        self.auth = authenticator

    @property
    def accounts(self) -> bool:
        return bool(getattr(self.auth, "accounts", False))

    # ------------------------------------------------------------------ reads
    def check_read(self, caller: Any, operation: str, key: ResourceKey, index: dict[ResourceKey, StoredResource],
                   requested_owner: str | None = None) -> None:
        if key.kind == CLOUD_MAP:
            if not _namespace_may(caller, key.parent, write=False):
                raise forbidden(f"{_who(caller)} may not read Cloud Map namespace {key.parent} ({operation}): "
                                "it is not in its cloudMap.read list")
            return
        self.auth.authorize(caller, operation, key.mesh, False)
        if self.accounts:
            sharing_auth.check_read(caller, key.mesh, index, requested_owner)

    def may_read(self, caller: Any, key: ResourceKey, index: dict[ResourceKey, StoredResource]) -> bool:
        try:
            self.check_read(caller, "read", key, index)
        except ApiError:
            return False
        return True

    # ------------------------------------------------------------------ writes
    def check_write(self, caller: Any, operation: str, verb: str, key: ResourceKey, current: StoredResource | None,
                    index: dict[ResourceKey, StoredResource], requested_owner: str | None = None) -> None:
        if verb not in WRITE_VERBS:  # pragma: no cover - a programming error, not a caller's
            raise ValueError(f"unknown write verb {verb!r}")
        if key.kind == CLOUD_MAP:
            self._check_cloud_map_write(caller, operation, key, current)
            return
        self.auth.authorize(caller, operation, key.mesh, True)
        if self.accounts:
            sharing_auth.check_write(caller, verb, key, current, index, requested_owner)

    def may_write(self, caller: Any, verb: str, key: ResourceKey, current: StoredResource | None,
                  index: dict[ResourceKey, StoredResource]) -> bool:
        try:
            self.check_write(caller, "check", verb, key, current, index)
        except ApiError:
            return False
        return True

    def _check_cloud_map_write(self, caller: Any, operation: str, key: ResourceKey,
                               current: StoredResource | None) -> None:
        if not _namespace_may(caller, key.parent, write=True):
            raise forbidden(f"{_who(caller)} may not write Cloud Map namespace {key.parent} ({operation}): "
                            "it is not in its cloudMap.write list")
        if self.accounts and current is not None:
            owner = current.metadata.get("resourceOwner", "")
            if owner and owner != _account(caller):
                raise forbidden(f"{_who(caller)} may not change {key}: it is owned by account {owner}")


def _account(caller: Any) -> str:
    account = getattr(caller, "account_id", None)
    return account if account is not None else caller.account


def _who(caller: Any) -> str:
    key = getattr(caller, "access_key_id", "") or ""
    return f"access key {key} (account {_account(caller)})" if key else f"account {_account(caller)}"


def _namespace_may(caller: Any, namespace: str, *, write: bool) -> bool:
    method = getattr(caller, "may_namespace", None)
    return bool(method(namespace, write)) if method is not None else False
