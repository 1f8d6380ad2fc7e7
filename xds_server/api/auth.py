"""Who is calling, and may they do this: the authenticator hook of the API.

``Authenticator.authenticate(request)`` returns the ``Caller`` (account id, and the meshes it may
read and write; ``None`` = all) or raises ``ApiError`` (e.g. a SigV4 verifier's 403);
``Authenticator.authorize(caller, operation, mesh, write)`` raises ``ForbiddenException`` when
the caller may not touch that mesh. The default, ``Anonymous``, is an anonymous caller of
account ``111122223333`` allowed everything (``serve`` without credentials).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

from xds_server.api.errors import forbidden

DEFAULT_ACCOUNT = "111122223333"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Caller:
    account: str = DEFAULT_ACCOUNT
    readable: frozenset[str] | None = None  # meshes it may read; None = every mesh
    writable: frozenset[str] | None = None  # meshes it may write; None = every mesh
    name: str = "anonymous"

    def may(self, mesh: str, write: bool) -> bool:
        allowed = self.writable if write else self.readable
        if not write and self.writable is not None and mesh in self.writable:
            return True
        return allowed is None or mesh in allowed


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Caller: ...

    def authorize(self, caller: Caller, operation: str, mesh: str, write: bool) -> None: ...


class Anonymous:
    """No credentials: everyone is ``account``, allowed everything."""

    def __init__(self, account: str = DEFAULT_ACCOUNT):
        self.account = account

    def authenticate(self, request: Request) -> Caller:
        return Caller(self.account)

    def authorize(self, caller: Caller, operation: str, mesh: str, write: bool) -> None:
        if not caller.may(mesh, write):
            raise forbidden(f"{caller.name} (account {caller.account}) may not {'write' if write else 'read'} mesh {mesh!r} ({operation})")
