"""Tiny HTTP client helpers for driving traffic through Envoy.

Uses ``http.client`` directly: one connection per call, no proxy environment
variables honoured (``http_proxy`` must never hijack loopback test traffic),
and HTTP error statuses are *returned*, never raised.
"""

from __future__ import annotations

import collections
import http.client
import json as _json
import math
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = [
    "Headers",
    "Response",
    "http_request",
    "http_get",
    "count_split",
    "binomial_tolerance",
    "split_violations",
]


class Headers(dict):
    """Response headers with case-insensitive lookup (keys stored lower-case).

    Repeated headers are joined with ", " (as HTTP allows for most headers).
    """

    def __init__(self, items=()):
        super().__init__()
        for k, v in (items.items() if isinstance(items, Mapping) else items):
            k = k.lower()
            super().__setitem__(k, f"{self[k]}, {v}" if k in self else v)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class Response:
    status: int
    headers: Headers
    body: bytes
    reason: str = ""
    url: str = field(default="", repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return _json.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | str | dict | list | None = None,
    host_header: str | None = None,
    headers: dict | None = None,
    timeout: float = 5,
) -> Response:
    """Send one request on a fresh connection and return the response.

    ``body`` may be bytes/str or a JSON-able dict/list (sent as JSON).
    Raises only on connection-level failures (``OSError`` subclasses such as
    ``ConnectionRefusedError``, ``TimeoutError``, ``http.client.HTTPException``).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", ""):
        raise ValueError(f"only http:// URLs are supported: {url}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query

    hdrs: dict[str, str] = {}
    if headers:
        hdrs.update({str(k): str(v) for k, v in headers.items()})
    if host_header is not None:
        for k in [k for k in hdrs if k.lower() == "host"]:
            del hdrs[k]
        hdrs["Host"] = host_header
    if not any(k.lower() == "connection" for k in hdrs):
        hdrs["Connection"] = "close"
    data: bytes | None
    if isinstance(body, (dict, list)):
        data = _json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body

    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        # http.client omits its own Host header when one is supplied.
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return Response(
            status=resp.status,
            headers=Headers(resp.getheaders()),
            body=payload,
            reason=resp.reason,
            url=url,
        )
    finally:
        conn.close()


def http_get(
    url: str,
    *,
    host_header: str | None = None,
    headers: dict | None = None,
    timeout: float = 5,
) -> Response:
    """GET ``url`` (one connection per call). Never raises on HTTP error
    statuses; raises only on connection failure."""
    return http_request("GET", url, host_header=host_header, headers=headers, timeout=timeout)


def count_split(
    url: str,
    n: int,
    *,
    host_header: str | None = None,
    headers: dict | None = None,
    key: Callable[[Response], Any] = lambda r: r.headers.get("x-app"),
    timeout: float = 5,
    count_errors: bool = False,
) -> collections.Counter:
    """Send ``n`` sequential GETs and count responses by ``key``.

    Non-200 responses are counted under ``f"status:{code}"``.  Connection
    failures raise, unless ``count_errors=True`` in which case they are
    counted under ``f"error:{ExceptionType}"``.
    """
    counts: collections.Counter = collections.Counter()
    for _ in range(n):
        try:
            r = http_get(url, host_header=host_header, headers=headers, timeout=timeout)
        except (OSError, http.client.HTTPException) as exc:
            if not count_errors:
                raise
            counts[f"error:{type(exc).__name__}"] += 1
            continue
        if r.status != 200:
            counts[f"status:{r.status}"] += 1
        else:
            counts[key(r)] += 1
    return counts


def binomial_tolerance(n: int, p: float, z: float = 4.0) -> float:
    """Absolute tolerance on an observed fraction for a weighted split.

    If each of ``n`` independent requests goes to a target with probability
    ``p``, the observed fraction has standard deviation ``sqrt(p(1-p)/n)``;
    we allow ``z`` of those.  With the default ``z=4`` a correct
    implementation fails the check with probability ~6.3e-5 per assertion
    (two-sided normal tail ``2*(1-Phi(4))``); ``z=3`` would be ~2.7e-3.

    Example: n=400, p=0.5 -> 0.1 (so 40%..60% passes).
    For p in {0, 1} the tolerance is 0 (the split must be exact).
    """
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0.0 <= p <= 1.0:
        raise ValueError("p must be within [0, 1]")
    return z * math.sqrt(p * (1.0 - p) / n)


def split_violations(
    counts: Mapping[Any, int],
    weights: Mapping[Any, float],
    *,
    z: float = 4.0,
) -> list[str]:
    """Compare observed ``counts`` with expected relative ``weights``.

    Returns a list of human-readable problems (empty when every target's
    observed fraction is within ``binomial_tolerance`` of its weight share and
    no unexpected keys -- e.g. ``status:503`` -- were seen).
    """
    n = sum(counts.values())
    total_w = float(sum(weights.values()))
    problems = []
    if n == 0:
        return ["no responses counted"]
    for k, c in counts.items():
        if k not in weights and c:
            problems.append(f"unexpected key {k!r}: {c}/{n}")
    for k, w in weights.items():
        p = w / total_w if total_w else 0.0
        obs = counts.get(k, 0) / n
        tol = binomial_tolerance(n, p, z)
        if abs(obs - p) > tol:
            problems.append(
                f"{k!r}: observed {obs:.3f} ({counts.get(k, 0)}/{n}), "
                f"expected {p:.3f} +/- {tol:.3f}"
            )
    return problems


def raw_exchange(address: str, data: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (a whole HTTP/1.1 request, as written: heads and bodies no client library
    would send) to ``host:port`` and read the answer until the server closes the connection:
    ``(status, headers with lower-case names, body)``; ``(0, {}, b"")`` when the server closed
    it without an answer. A server that stops reading early (a refused body) is not an error."""
    import socket

    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    if not answer:
        return 0, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body
