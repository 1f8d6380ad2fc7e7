"""The API on meshplane's HTTP server: given a request head already read by
``xds_server.observability.http``, read the body (``Content-Length``), run
``ApiService.handle`` off the event loop and return the whole HTTP/1.1 response."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from xds_server.api.errors import ApiError, error_response
from xds_server.api.parsing import MAX_BODY_BYTES

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.api.service import ApiService

READ_TIMEOUT = 30.0
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


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


async def respond(service: "ApiService", head: bytes, reader: asyncio.StreamReader) -> bytes:
    method, path, query, headers = parse_head(head)
    length_text = next((v for k, v in headers.items() if k.lower() == "content-length"), "0")
    try:
        length = int(length_text or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY_BYTES:
        status, out_headers, body = error_response(ApiError("BadRequestException", "bad or too large Content-Length"))
    else:
        data = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT) if length else b""
        status, out_headers, body = await asyncio.to_thread(service.handle, method, path, query, headers, data)
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}"]
    lines += [f"{k}: {v}" for k, v in out_headers.items()]
    lines += [f"Content-Length: {len(body)}", "Cache-Control: no-store", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (body if method != "HEAD" else b"")
