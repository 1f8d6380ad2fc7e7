"""``meshplane serve --api-credentials FILE``: every API request must carry a valid AWS
Signature Version 4 (``xds_server.api.sigv4``), as with App Mesh itself.

* unsigned or badly signed -> HTTP 403 with the error type AWS sends
  (``MissingAuthenticationTokenException``, ``IncompleteSignatureException``,
  ``InvalidSignatureException``, ``UnrecognizedClientException``); what exactly failed is
  logged by the server (never sent);
* a correct signature -> the key's ``Caller``: its account and the meshes it may read/write
  (``meshes.read``/``meshes.write`` patterns of the file); ``authorize`` answers
  ``ForbiddenException`` for a mesh outside them;
* the account rules (ownership, cross-account sharing: ``sharing_auth``) apply too.
"""
from __future__ import annotations

import logging
from pathlib import Path

from xds_server.api.auth import Caller, Request
from xds_server.api.errors import ApiError, forbidden
from xds_server.api.sigv4 import SignatureError, Verifier

log = logging.getLogger("meshplane.api.auth")


class SigV4Authenticator:
    accounts = True  # enforce ownership and sharing (xds_server.api.access)

    def __init__(self, verifier: Verifier):
        self.verifier = verifier

    @classmethod
    def from_file(cls, path: str | Path, **verifier_kwargs) -> "SigV4Authenticator":
        """Load ``--api-credentials FILE`` (``sigv4.CredentialsError``, a ``ValueError``, if unusable)."""
        return cls(Verifier.from_file(path, **verifier_kwargs))

    def authenticate(self, request: Request) -> Caller:
        try:
            verified = self.verifier.verify(request.method, request.path, request.query, request.headers, request.body)
        except SignatureError as exc:
            raise self._refused(request, exc) from None
        return _caller(verified)

    def precheck(self, request: Request) -> Caller | None:
        """Before the body is read (``request.body`` is ignored): ``ApiError`` (403) for a request
        whose headers already fail (unsigned, unknown key, outside the date window, ...); the
        ``Caller`` when the signature is verified over a declared ``x-amz-content-sha256``
        (the body must then hash to ``sigv4.declared_payload_hash``); None: the signature needs
        the body (``authenticate``)."""
        try:
            verified = self.verifier.precheck(request.method, request.path, request.query, request.headers)
        except SignatureError as exc:
            raise self._refused(request, exc) from None
        return _caller(verified) if verified is not None else None

    @staticmethod
    def _refused(request: Request, exc: SignatureError) -> ApiError:
        log.info("API request %s %s from %s refused: %s: %s", request.method, request.path, request.peer or "?",
                 exc.error_type, exc.detail.splitlines()[0] if exc.detail else exc.message)
        return ApiError(exc.error_type, exc.message, exc.status)

    def authorize(self, caller: Caller, operation: str, mesh: str, write: bool) -> None:
        if not caller.may(mesh, write):
            right = "write" if write else "read"
            raise forbidden(f"access key {caller.access_key_id} (account {caller.account}) may not {right} mesh "
                            f"{mesh} ({operation}): the mesh is not in its meshes.{right} list")


def _caller(verified) -> Caller:
    return Caller(verified.account_id, readable=frozenset(verified.read), writable=frozenset(verified.write),
                  name=verified.access_key_id, access_key_id=verified.access_key_id,
                  namespaces_readable=frozenset(verified.cloud_map_read),
                  namespaces_writable=frozenset(verified.cloud_map_write))
