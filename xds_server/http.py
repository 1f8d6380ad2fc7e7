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

Who may read what (``AdminAccess``): ``/healthz`` and ``/readyz`` are open (probes). With
``--api-credentials`` (``admin_auth``: the API's SigV4 authenticator), ``/status`` and
``/config_dump`` take SigV4-signed requests only (unsigned or badly signed: 403 in App Mesh's
error shape) and show only what the key may read: the nodes (and their config) of meshes the
key's ``meshes.read``/``write`` lists match and whose members include the key's account (the
API's rules, ``xds_server.api.access``); the parts of ``/status`` that are not per mesh (the
model's errors, the mesh CA, Cloud Map) only to a key that may read every mesh. ``/metrics``
(aggregates, no mesh names) takes the bearer token of ``--metrics-token-file``
(``Authorization: Bearer TOKEN``) when one is configured, or a SigV4-signed request when
credentials are; with neither it is open, as the whole port is without credentials (then
``serve`` binds it to loopback unless ``--insecure-http``).

Bounds (``HttpLimits``): connections per client address and in total (an excess connection is
closed at once, before anything is read); the request head (16 KiB, 5 s); API bodies are
bounded by their ``Content-Length`` before a byte of them is read (``xds_server.api.http_hook``).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qs

from xds_server import fairness
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

_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of the HTTP port (0: unlimited for the connection counts). Defaults:
    ``xds_server.config``."""

    max_connections: int = 512             # open connections in total
    max_connections_per_client: int = 64   # open connections per client IP address
    api_max_body: int = 1024 * 1024        # App Mesh paths (App Mesh's own requests are small)
    apply_max_body: int = 16 * 1024 * 1024  # POST /meshplane/v1/apply (a whole model)
    max_buffered_bytes: int = 64 * 1024 * 1024  # request bodies held at once, over all connections


class ConnectionLimiter:
    """Counts open connections per client address and in total; ``enter`` False: refuse it."""

    def __init__(self, total: int, per_client: int):
        self.total, self.per_client = total, per_client
        self.open = 0
        self.by_client: dict[str | None, int] = {}
        self.refused = 0
        self._logged = 0.0

    def enter(self, client: str | None) -> bool:
        if (self.total and self.open >= self.total) or (
                self.per_client and self.by_client.get(client, 0) >= self.per_client):
            self.refused += 1
            now = time.monotonic()
            if now - self._logged > 10:
                self._logged = now
                LOG.warning("HTTP: refusing connections (from %s: %d open of %s per client; %d open of %s in total; "
                            "%d refused so far)", client, self.by_client.get(client, 0), self.per_client or "unlimited",
                            self.open, self.total or "unlimited", self.refused)
            return False
        self.open += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return True

    def leave(self, client: str | None) -> None:
        self.open -= 1
        left = self.by_client.get(client, 1) - 1
        if left > 0:
            self.by_client[client] = left
        else:
            self.by_client.pop(client, None)


def load_metrics_token(path: str) -> str:
    """``--metrics-token-file FILE``: the bearer token, the file's first line (``ValueError`` if empty)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the metrics token file: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise ValueError(f"{path}: the metrics token (the file's first line) must be at least 16 characters")
    return token


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
    admin_auth: Any = None,
    metrics_token: str | None = None,
    limits: HttpLimits | None = None,
) -> asyncio.Server:
    """Start serving; the caller owns the returned server (``close()`` + ``wait_closed()``).

    ``metrics``: event metrics for ``/metrics`` (live gauges come from ``status``/``cache``).
    ``config_dump_provider(node_id)``: the ``/config_dump`` document of a node, or None for
    an unknown node (404); defaults to ``csds.cache_config_dump(status, cache)`` when a cache
    is given. ``api``: the App Mesh API (``xds_server.api``), served at its own paths
    (``/v20190125/...``, ``/meshplane/v1/...``) with any method. ``sections``: more top-level
    keys of ``/status`` (``cloudmap``: live Cloud Map per service). ``admin_auth``: an API
    authenticator (``authenticate(Request) -> Caller``; the SigV4 one of ``--api-credentials``)
    that ``/status``, ``/config_dump`` (and ``/metrics`` without ``metrics_token``) require;
    None: they are open. ``metrics_token``: the bearer token ``/metrics`` requires.
    ``limits``: ``HttpLimits``.
    """
    limits = limits or HttpLimits()
    connections = ConnectionLimiter(limits.max_connections, limits.max_connections_per_client)
    from xds_server.api.http_hook import BodyBudget

    budget = BodyBudget(limits.max_buffered_bytes)
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
            found = dict(state())
        except Exception as exc:  # noqa: BLE001 - health must answer whatever the store does
            return {"store": type(api.store).__name__, "available": False, "error": f"{type(exc).__name__}: {exc}"}
        if isinstance(found.get("url"), str):  # whatever the store says, never its password
            from xds_server.store.redact import redact_url

            found["url"] = redact_url(found["url"])
        return found

    def authenticate(method: str, path: str, query: str, headers: Mapping[str, str], peer: str | None):
        """The caller of an admin request (None: no credentials configured, all is open);
        ``ApiError`` (403) if it is not correctly signed."""
        if admin_auth is None:
            return None
        from xds_server.api.auth import Request

        return admin_auth.authenticate(Request(method, path, query, headers, b"", peer))

    def metrics_allowed(method: str, path: str, query: str, headers: Mapping[str, str], peer: str | None) -> None:
        from xds_server.api.errors import ApiError

        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "").strip()
        if metrics_token is not None:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                                                                  metrics_token.encode("utf-8")):
                return
            if admin_auth is None or not authorization.startswith("AWS4-"):
                raise ApiError("ForbiddenException", "/metrics requires the bearer token of --metrics-token-file "
                                                     "(Authorization: Bearer TOKEN)", 403)
        authenticate(method, path, query, headers, peer)

    def readable(caller) -> tuple[set[str], set[str]] | None:
        """(the meshes ``caller`` may read, every mesh of the store); None for no caller (all)."""
        if caller is None:
            return None
        if api is None:
            return set(), set()
        _, index = api.index()
        meshes = [k for k in index if k.kind == "Mesh"]
        # the API's one rule (``xds_server.api.rights``): what DescribeMesh would show this caller
        visible = {k.name for k in meshes if api.rights.may_read(caller, k, index)}
        return visible, {k.name for k in meshes}

    def check_access(method: str, path: str, query: str, headers: Mapping[str, str], peer: str | None):
        """Off the event loop (signatures, the store's index): None for an open endpoint, an
        error answer, or ``("meshes", readable(caller))``."""
        from xds_server.api.errors import ApiError, error_response

        try:
            if path in ("/status", "/config_dump"):
                return "meshes", readable(authenticate(method, path, query, headers, peer))
            if path == "/metrics":
                metrics_allowed(method, path, query, headers, peer)
        except ApiError as err:
            status_code, err_headers, body = error_response(err)
            return "refused", (status_code, err_headers, body)
        return None

    def route(method: str, path: str, query: str, access) -> tuple:
        """On the event loop (the registry and the metrics are the loop's): the answer."""
        if access is not None and access[0] == "refused":
            return access[1]
        if path in ("/status", "/config_dump"):
            found = access[1] if access is not None else None
            if found is None:
                visible, see_all = None, True
            else:
                visible, every = found
                in_model = set((extra() if extra is not None else {}).get("meshes") or [])
                see_all = visible >= every | in_model
            return _status(visible, see_all) if path == "/status" else _config_dump(query, visible)
        return open_route(path, query)

    def _status(visible: set[str] | None, see_all: bool) -> tuple[int, str, bytes]:
        body = {"model": extra() if extra is not None else {}, **status.snapshot()}
        state = store_state()
        if state is not None:
            body["store"] = state
        if see_all:
            for name, section in (sections or {}).items():
                body[name] = section()
            return 200, "application/json", _json(body)
        assert visible is not None
        model = dict(body["model"])
        model["meshes"] = [m for m in model.get("meshes") or [] if m in visible]
        if model.get("lastError"):
            model["lastError"] = [f"{len(model['lastError'])} problem(s) in the model: shown to keys that may read "
                                  "every mesh"]
        model.pop("meshCA", None)
        model.pop("paths", None)
        body["model"] = model
        body["nodes"] = {n: v for n, v in body.get("nodes", {}).items() if _mesh_of(n) in visible}
        body["filtered"] = "only the meshes this access key may read"
        return 200, "application/json", _json(body)

    def open_route(path: str, query: str) -> tuple[int, str, bytes]:
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
        if path == "/metrics":
            return 200, metrics_mod.CONTENT_TYPE, metrics_mod.render(metrics, status, cache).encode()
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def _config_dump(query: str, visible: set[str] | None) -> tuple[int, str, bytes]:
        if config_dump_provider is None:
            return 404, "text/plain; charset=utf-8", b"config_dump is not available on this server\n"
        params = parse_qs(query, keep_blank_values=True, errors="replace")
        node_id = (params.get("node") or [""])[0]
        connected = [n for n in status.node_ids() if visible is None or _mesh_of(n) in visible]
        if not node_id:
            return 400, "text/plain; charset=utf-8", _text(
                "missing ?node=NODE_ID (e.g. /config_dump?node=mesh/MESH/virtualNode/NAME); connected nodes: "
                + _some(connected))
        # a node of a mesh the caller may not read is answered as one that does not exist
        doc = config_dump_provider(node_id) if visible is None or _mesh_of(node_id) in visible else None
        if doc is None:
            return 404, "text/plain; charset=utf-8", _text(
                f"node {node_id!r} is not connected, so there is no config to dump; connected nodes: "
                + _some(connected))
        types = [t for v in params.get("type", []) for t in v.split(",") if t]
        if types:
            for snap in doc.get("snapshots", []):
                snap["types"] = {t: v for t, v in snap.get("types", {}).items() if t in types}
        return 200, "application/json", _json(doc)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str | None) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        if api is not None and is_api_path(_path_of(head)):
            writer.write(await api_respond(_FromPeer(api, client), head, reader, auth=api.auth, peer=client,
                                           api_max_body=limits.api_max_body,
                                           apply_max_body=limits.apply_max_body, budget=budget))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
            return
        code, ctype, body, head_only = await _serve_one(head, route, check_access, client)
        reason = _REASONS.get(code, "")
        if isinstance(ctype, dict):  # an App Mesh error answer (its own headers)
            extra_headers = "".join(f"{k}: {v}\r\n" for k, v in ctype.items())
        else:
            extra_headers = f"Content-Type: {ctype}\r\n"
        headers = (
            f"HTTP/1.1 {code} {reason}\r\n"
            + extra_headers +
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(headers if head_only else headers + body)
        await asyncio.wait_for(writer.drain(), READ_TIMEOUT)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")  # now: a transport that closes early forgets it
        client = peer[0] if peer else None
        if not connections.enter(client):
            writer.transport.abort()  # over the limits: closed at once, nothing read
            return
        try:
            # counted from the accept: requests are short, and long work (a big model's reload)
            # steps aside for them at its yield points (``fairness``)
            with fairness.request():
                await answer(reader, writer, client)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            connections.leave(client)
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


def _mesh_of(node_id: str) -> str | None:
    from mesh_model.node_id import parse_node_id

    try:
        return parse_node_id(node_id).mesh
    except ValueError:
        return None


async def _serve_one(head: bytes, route, check, client: str | None) -> tuple[int, Any, bytes, bool]:
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400, "text/plain; charset=utf-8", b"bad request\n", False
    method, target = parts[0], parts[1]
    if method not in ("GET", "HEAD"):
        return 405, "text/plain; charset=utf-8", b"method not allowed\n", False
    path, _, query = target.partition("?")
    from xds_server.api.http_hook import parse_head

    headers = parse_head(head)[3]
    try:
        access = None
        if path in ("/status", "/config_dump", "/metrics"):  # signatures and the store's index: off the loop
            access = await asyncio.to_thread(check, method, path, query, headers, client)
        answer = route(method, path, query, access)
    except Exception:  # a broken extra() must not kill the endpoint
        LOG.exception("status handler failed for %s", path)
        answer = 500, "text/plain; charset=utf-8", b"internal error\n"
    code, ctype, body = answer[:3]
    return code, ctype, body, method == "HEAD"
