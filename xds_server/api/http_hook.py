"""The API on meshplane's HTTP server: given a request head already read by
``xds_server.http``, bound and authenticate the request from its head, read the
body (``Content-Length``), run ``ApiService.handle`` off the event loop and return the whole
HTTP/1.1 response.

Nothing is read before it is allowed to cost memory:

* ``Content-Length`` is required for a body (no chunked bodies), given once, and within the
  path's limit (``api_max_body`` on App Mesh's paths, ``apply_max_body`` on
  ``POST /meshplane/v1/apply``); beyond it: HTTP 413 ``PayloadTooLargeException``, body unread;
* the authenticator's ``precheck`` (SigV4: everything but the body hash; loopback-only: the
  peer) runs on the head: an unsigned or badly signed request is refused unread;
* a body over ``api_max_body`` (an apply) must declare its SHA-256 in a signed
  ``x-amz-content-sha256`` header when SigV4 is required, so that the signature is verified
  before the body is read; the body is then checked against that hash (``meshplane apply``
  sends the header);
* the bodies held at once, over all connections, stay within ``BodyBudget`` (HTTP 429
  ``TooManyRequestsException`` beyond, so clients back off and retry).

Every refusal is an App Mesh error answer (``x-amzn-ErrorType``, ``{"message": ...}``).
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
import logging
from typing import TYPE_CHECKING, Any

from xds_server.api.auth import Request
from xds_server.api.errors import ApiError, bad_request, error_response
from xds_server.api.parsing import MAX_BODY_BYTES

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.api.service import ApiService

log = logging.getLogger("meshplane.api.http")

READ_TIMEOUT = 30.0
API_MAX_BODY = 1024 * 1024
APPLY_PATH = "/meshplane/v1/apply"
_CHUNK = 64 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


class BodyBudget:
    """Bytes of request bodies the server holds at once (0: unlimited). ``take`` False: over it."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.limit and n and self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """``(method, path, query, headers)`` of a request head (headers: last value wins, names as sent)."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = (lines[0].split() + ["", "", ""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip()] = value.strip()
    path, _, query = target.partition("?")
    return method, path, query, headers


def _header_values(head: bytes, name: bytes) -> list[str]:
    """Every value of header ``name`` (lower-case) in the head, repeats included."""
    out = []
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            out.append(value.strip().decode("latin-1"))
    return out


def content_length(head: bytes) -> int:
    """The body's length from the head; ``ApiError`` for chunked, repeated or malformed lengths."""
    if _header_values(head, b"transfer-encoding"):
        raise ApiError("BadRequestException", "Transfer-Encoding is not supported by this API: send the body "
                                              "with a Content-Length", 411)
    values = _header_values(head, b"content-length")
    if not values:
        return 0
    if len(set(values)) > 1:
        raise bad_request("more than one Content-Length")
    text = values[0]
    if not text.isdigit() or len(text) > 18:
        raise bad_request(f"Content-Length must be a non-negative integer, got {text[:40]!r}")
    return int(text)


def precheck(auth: Any, request: Request):
    """The authenticator's check of the head alone (``ApiError`` to refuse): SigV4's
    ``precheck`` (a ``Caller`` once the signature is verified over a declared body hash, else
    None); the loopback-only authenticator's peer check; nothing for others."""
    check = getattr(auth, "precheck", None)
    if check is not None:
        return check(request)
    from xds_server.api.local_auth import LoopbackOnly

    if isinstance(auth, LoopbackOnly):
        auth.authenticate(request)
    return None


async def respond(service: "ApiService", head: bytes, reader: asyncio.StreamReader, *, auth: Any = None,
                  peer: str | None = None, api_max_body: int = API_MAX_BODY, apply_max_body: int = MAX_BODY_BYTES,
                  budget: BodyBudget | None = None) -> bytes:
    method, path, query, headers = parse_head(head)
    taken = 0
    try:
        try:
            length = content_length(head)
            limit = min(apply_max_body if path == APPLY_PATH else api_max_body, MAX_BODY_BYTES)
            if length > limit:
                raise ApiError("PayloadTooLargeException", f"the request body ({length} bytes) is larger than the "
                                                           f"{limit} bytes this server takes at {path}", 413)
            verified = precheck(auth, Request(method, path, query, headers, b"", peer))
            declared = None
            if getattr(auth, "precheck", None) is not None and length > api_max_body:
                if verified is None:
                    raise bad_request(f"a request body over {api_max_body} bytes must declare its SHA-256 in a "
                                      "signed x-amz-content-sha256 header (meshplane apply does), so that its "
                                      "signature is verified before it is read")
                from xds_server.api.sigv4 import declared_payload_hash

                declared = declared_payload_hash(headers)
            if budget is not None and not budget.take(length):
                raise ApiError("TooManyRequestsException", "the server is reading too many request bodies at once; "
                                                           "retry", 429)
            taken = length
            data = await _read_body(reader, length, declared) if length else b""
            # off the event loop: the API authenticates (the signature over the body), then parses
            status, out_headers, body = await asyncio.to_thread(service.handle, method, path, query, headers, data)
            del data
        except ApiError as err:
            status, out_headers, body = error_response(err)
    finally:
        if budget is not None:
            budget.give(taken)
            if taken > api_max_body and budget.used == 0:
                _release_memory()
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}"]
    lines += [f"{k}: {v}" for k, v in out_headers.items()]
    lines += [f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (body if method != "HEAD" else b"")


async def _read_body(reader: asyncio.StreamReader, length: int, declared: str | None) -> bytes:
    """Exactly ``length`` bytes within ``READ_TIMEOUT`` (``asyncio.TimeoutError``/``IncompleteReadError``
    otherwise: the connection is dropped); with ``declared``, ``ApiError`` unless they hash to it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_TIMEOUT
    chunks, got = [], 0
    digest = hashlib.sha256() if declared else None
    while got < length:
        chunk = await asyncio.wait_for(reader.read(min(_CHUNK, length - got)), max(0.0, deadline - loop.time()))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", length)
        chunks.append(chunk)
        got += len(chunk)
        if digest is not None:
            digest.update(chunk)
    if digest is not None and digest.hexdigest() != declared:
        raise ApiError("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match "
                                                    "what was computed.", 403)
    return b"".join(chunks)


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
            _LIBC.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):  # not glibc
            _LIBC = False
    return _LIBC


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def keep_large_allocations_returnable(threshold: int = 4 * 1024 * 1024) -> bool:
    """Make glibc serve allocations of ``threshold`` bytes and more (request bodies, their
    JSON text) by ``mmap``, so that freeing them returns the memory at once. By default glibc
    raises that threshold to the size of the largest block freed so far (up to 32 MiB): after
    one large request, later ones come from the heap and the process stays at its peak (issue
    17: ~2 GB after 100 connections). ``serve`` calls it once at start; False if not glibc."""
    libc = _libc()
    return bool(libc) and bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


def _release_memory() -> None:
    """After a large body: give the freed heap back to the system (what ``mmap`` did not take)."""
    libc = _libc()
    if libc:
        libc.malloc_trim(0)
