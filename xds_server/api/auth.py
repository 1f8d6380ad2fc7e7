"""Who is calling, and may they do this: the authenticator hook of the API.

``Authenticator.authenticate(request)`` returns the ``Caller`` (account id, and the meshes it may
read and write: names or fnmatch patterns such as ``team-*``; ``None`` = all) or raises
``ApiError`` (e.g. a SigV4 verifier's 403);
``Authenticator.authorize(caller, operation, mesh, write)`` raises ``ForbiddenException`` when
the caller may not touch that mesh. The default, ``Anonymous``, is an anonymous caller of
account ``111122223333`` allowed everything (in-process use and tests).

An authenticator whose ``accounts`` attribute is true also has the API enforce the account
rules of ``xds_server.api.access`` (mesh ownership, cross-account sharing; see
``sharing_auth``). ``serve`` uses ``sigv4_auth.SigV4Authenticator`` (``--api-credentials``) or
``local_auth.LoopbackOnly`` (without it); both do.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Mapping, Protocol

from xds_server.api.errors import forbidden
from xds_server.store import base as store_base

DEFAULT_ACCOUNT = store_base.DEFAULT_ACCOUNT


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    peer: str | None = None  # the client's IP address (None: unknown, e.g. in-process)


@dataclass(frozen=True)
class Caller:
    account: str = DEFAULT_ACCOUNT
    readable: frozenset[str] | None = None  # meshes it may read; None = every mesh
    writable: frozenset[str] | None = None  # meshes it may write; None = every mesh
    name: str = "anonymous"
    access_key_id: str = ""
    # Cloud Map namespaces (of CloudMapService documents) it may read / write; None = every namespace
    namespaces_readable: frozenset[str] | None = None
    namespaces_writable: frozenset[str] | None = None

    def may(self, mesh: str, write: bool) -> bool:
        allowed = self.writable if write else self.readable
        if not write and _matches(self.writable, mesh):
            return True
        return _matches(allowed, mesh)

    def may_namespace(self, namespace: str, write: bool) -> bool:
        """CloudMapService documents of ``namespace`` (``xds_server.api.rights``); write implies read."""
        if not write and _matches(self.namespaces_writable, namespace):
            return True
        return _matches(self.namespaces_writable if write else self.namespaces_readable, namespace)

    # the caller interface of ``xds_server.api.access``
    @property
    def account_id(self) -> str:
        return self.account

    def can_read(self, mesh: str) -> bool:
        return self.may(mesh, False)

    def can_write(self, mesh: str) -> bool:
        return self.may(mesh, True)


def _matches(patterns: frozenset[str] | None, mesh: str) -> bool:
    return patterns is None or mesh in patterns or any(fnmatch.fnmatchcase(mesh, p) for p in patterns)


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Caller: ...

    def authorize(self, caller: Caller, operation: str, mesh: str, write: bool) -> None: ...


class Anonymous:
    """No credentials: everyone is ``account``, allowed everything."""

    accounts = False  # the hook alone decides (no ownership/sharing rules)

    def __init__(self, account: str = DEFAULT_ACCOUNT):
        self.account = account

    def authenticate(self, request: Request) -> Caller:
        return Caller(self.account)

    def authorize(self, caller: Caller, operation: str, mesh: str, write: bool) -> None:
        if not caller.may(mesh, write):
            raise forbidden(f"{caller.name} (account {caller.account}) may not {'write' if write else 'read'} mesh {mesh!r} ({operation})")
