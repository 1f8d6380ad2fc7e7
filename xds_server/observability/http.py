"""Tiny HTTP/1.1 status endpoint on ``asyncio.start_server`` (no web framework dependency).

``GET /healthz`` -> 200 ``ok`` while the process serves (with an API over a store, a second line
with the store state, also when the store is unreachable); ``GET /readyz`` -> 200 only when the
API can take writes (store reachable), else 503 saying why (store down; file mode: the model is
managed by files); ``GET /status`` -> JSON ``{"model": extra(), "store": {...}, "nodes": ...}``;
``GET /metrics`` -> Prometheus text format 0.0.4 (``metrics.render``);
``GET /config_dump?node=NODE_ID[&type=cds,eds]`` -> JSON of what the server would send that
node (``config_dump_provider``; by default the cached snapshots of a connected node, 404 for
a node that is not connected), secrets redacted.
One request per connection (``Connection: close``): probes and curl need nothing more, and it
keeps the server free of keep-alive bookkeeping. Slow or silent clients are timed out so they
cannot pile up.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Callable
from urllib.parse import parse_qs

from xds_server.observability import metrics as metrics_mod
from xds_server.observability.status import StatusRegistry
from xds_server.server.csds import cache_config_dump

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.api.service import ApiService
    from xds_server.cache.snapshot_cache import SnapshotCache
    from xds_server.observability.metrics import Metrics

LOG = logging.getLogger("meshplane.xds.http")

READ_TIMEOUT = 5.0
MAX_HEADER_BYTES = 16 * 1024

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
            503: "Service Unavailable"}


async def start_http(
    host: str,
    port: int,
    status: StatusRegistry,
    extra: Callable[[], dict] | None = None,
    *,
    metrics: "Metrics | None" = None,
    cache: "SnapshotCache | None" = None,
    config_dump_provider: Callable[[str], dict | None] | None = None,
    api: "ApiService | None" = None,
    sections: "dict[str, Callable[[], dict]] | None" = None,
) -> asyncio.Server:
    """Start serving; the caller owns the returned server (``close()`` + ``wait_closed()``).

    ``metrics``: event metrics for ``/metrics`` (live gauges come from ``status``/``cache``).
    ``config_dump_provider(node_id)``: the ``/config_dump`` document of a node, or None for
    an unknown node (404); defaults to ``csds.cache_config_dump(status, cache)`` when a cache
    is given. ``api``: the App Mesh API (``xds_server.api``), served at its own paths
    (``/v20190125/...``, ``/meshplane/v1/...``) with any method. ``sections``: more top-level
    keys of ``/status`` (``cloudmap``: live Cloud Map per service).
    """
    if config_dump_provider is None and cache is not None:
        config_dump_provider = cache_config_dump(status, cache)
    if api is not None:
        from xds_server.api.http_hook import respond as api_respond
        from xds_server.api.service import is_api_path

    def store_state() -> dict | None:
        """The API store's ``status()`` (``{"store": "files", ...}`` in file mode; None: no API)."""
        if api is None:
            return None
        if getattr(api, "read_only", None):
            return {"store": "files", "available": False, "error": api.read_only}
        state = getattr(api.store, "status", None)
        if state is None:
            return {"store": type(api.store).__name__, "available": True}
        try:
            return state()
        except Exception as exc:  # noqa: BLE001 - health must answer whatever the store does
            return {"store": type(api.store).__name__, "available": False, "error": f"{type(exc).__name__}: {exc}"}

    def route(path: str, query: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            state = store_state()
            if state is None or state.get("store") == "files":
                return 200, "text/plain; charset=utf-8", b"ok\n"
            return 200, "text/plain; charset=utf-8", _text("ok\n" + _store_line(state))
        if path == "/readyz":
            state = store_state()
            if state is None:
                return 503, "text/plain; charset=utf-8", b"not ready: this server has no App Mesh API\n"
            if state.get("store") == "files":
                return 503, "text/plain; charset=utf-8", _text(f"not ready for writes: {state['error']}")
            if not state.get("available"):
                return 503, "text/plain; charset=utf-8", _text("not ready for writes: " + _store_line(state))
            return 200, "text/plain; charset=utf-8", _text("ready\n" + _store_line(state))
        if path == "/status":
            body = {"model": extra() if extra is not None else {}, **status.snapshot()}
            state = store_state()
            if state is not None:
                body["store"] = state
            for name, section in (sections or {}).items():
                body[name] = section()
            return 200, "application/json", _json(body)
        if path == "/metrics":
            return 200, metrics_mod.CONTENT_TYPE, metrics_mod.render(metrics, status, cache).encode()
        if path == "/config_dump":
            return _config_dump(query)
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def _config_dump(query: str) -> tuple[int, str, bytes]:
        if config_dump_provider is None:
            return 404, "text/plain; charset=utf-8", b"config_dump is not available on this server\n"
        params = parse_qs(query, keep_blank_values=True)
        node_id = (params.get("node") or [""])[0]
        if not node_id:
            return 400, "text/plain; charset=utf-8", _text(
                "missing ?node=NODE_ID (e.g. /config_dump?node=mesh/MESH/virtualNode/NAME); connected nodes: "
                + _some(status.node_ids()))
        doc = config_dump_provider(node_id)
        if doc is None:
            return 404, "text/plain; charset=utf-8", _text(
                f"node {node_id!r} is not connected, so there is no config to dump; connected nodes: "
                + _some(status.node_ids()))
        types = [t for v in params.get("type", []) for t in v.split(",") if t]
        if types:
            for snap in doc.get("snapshots", []):
                snap["types"] = {t: v for t, v in snap.get("types", {}).items() if t in types}
        return 200, "application/json", _json(doc)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")  # now: a transport that closes early forgets it
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            if api is not None and is_api_path(_path_of(head)):
                writer.write(await api_respond(_FromPeer(api, peer[0] if peer else None), head, reader))
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
                return
            code, ctype, body, head_only = _serve_one(head, route)
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


class _FromPeer:
    """The API service as ``http_hook.respond`` calls it, with the client's address added."""

    def __init__(self, api: "ApiService", peer: str | None):
        self.api, self.peer = api, peer

    def handle(self, method, path, query, headers, body):
        return self.api.handle(method, path, query, headers, body, peer=self.peer)


def _store_line(state: dict) -> str:
    name = state.get("store", "store")
    if state.get("available"):
        return f"store {name}: available, revision {state.get('revision')}"
    since = state.get("unavailableSince")
    when = f" since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}" if since else ""
    return f"store {name}: UNAVAILABLE{when} ({state.get('error') or 'unreachable'}); writes are refused"


def _json(doc) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _text(message: str) -> bytes:
    return (message + "\n").encode()


def _some(names: list[str], limit: int = 20) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _path_of(head: bytes) -> str:
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    return parts[1].partition("?")[0] if len(parts) == 3 else ""


def _serve_one(head: bytes, route) -> tuple[int, str, bytes, bool]:
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400, "text/plain; charset=utf-8", b"bad request\n", False
    method, target = parts[0], parts[1]
    if method not in ("GET", "HEAD"):
        return 405, "text/plain; charset=utf-8", b"method not allowed\n", False
    path, _, query = target.partition("?")
    try:
        code, ctype, body = route(path, query)
    except Exception:  # a broken extra() must not kill the endpoint
        LOG.exception("status handler failed for %s", path)
        code, ctype, body = 500, "text/plain; charset=utf-8", b"internal error\n"
    return code, ctype, body, method == "HEAD"
