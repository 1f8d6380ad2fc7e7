"""Tiny HTTP/1.1 status endpoint on ``asyncio.start_server`` (no web framework dependency).

``GET /healthz`` -> 200 ``ok``; ``GET /status`` -> JSON ``{"model": extra(), "nodes": ...}``.
One request per connection (``Connection: close``): probes and curl need nothing more, and it
keeps the server free of keep-alive bookkeeping. Slow or silent clients are timed out so they
cannot pile up.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable

from .status import StatusRegistry

LOG = logging.getLogger("meshplane.xds.http")

READ_TIMEOUT = 5.0
MAX_HEADER_BYTES = 16 * 1024

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


async def start_http(
    host: str,
    port: int,
    status: StatusRegistry,
    extra: Callable[[], dict] | None = None,
) -> asyncio.Server:
    """Start serving; the caller owns the returned server (``close()`` + ``wait_closed()``)."""

    def route(path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/status":
            body = {"model": extra() if extra is not None else {}, **status.snapshot()}
            return 200, "application/json", (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
        return 404, "text/plain; charset=utf-8", b"not found\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            code, ctype, body, head_only = await _serve_one(reader, route)
            reason = _REASONS.get(code, "")
            headers = (
                f"HTTP/1.1 {code} {reason}\r\n"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(headers if head_only else headers + body)
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    return await asyncio.start_server(handle, host, port, limit=MAX_HEADER_BYTES)


async def _serve_one(reader: asyncio.StreamReader, route) -> tuple[int, str, bytes, bool]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400, "text/plain; charset=utf-8", b"bad request\n", False
    method, target = parts[0], parts[1]
    if method not in ("GET", "HEAD"):
        return 405, "text/plain; charset=utf-8", b"method not allowed\n", False
    path = target.split("?", 1)[0]
    try:
        code, ctype, body = route(path)
    except Exception:  # a broken extra() must not kill the endpoint
        LOG.exception("status handler failed for %s", path)
        code, ctype, body = 500, "text/plain; charset=utf-8", b"internal error\n"
    return code, ctype, body, method == "HEAD"
