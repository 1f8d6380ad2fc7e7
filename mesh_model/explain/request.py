"""The request ``explain`` follows: what an app sends to its sidecar (or a client to a gateway).

Parsed from the words of a command line (``GET http://catalog.shop.local:8080/beta?x=1 -H
'x-beta: yes'``), from a test case mapping, or built directly. gRPC calls are HTTP/2 POSTs of
``/<service>/<method>`` with ``content-type: application/grpc`` and the metadata as headers;
TCP connections carry only a destination host and port.
"""
from __future__ import annotations

import shlex
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")


class RequestError(ValueError):
    """The request description cannot be understood."""


@dataclass(frozen=True)
class Request:
    """One request. ``headers`` are (lower-case name, value) pairs in order; ``path`` holds the query."""

    protocol: str = "http"  # http | grpc | tcp
    method: str = "GET"
    scheme: str = "http"
    host: str = ""  # the Host / :authority value as sent (may carry a port)
    port: int = 80  # the destination port the app connects to
    path: str = "/"  # path and query string, as sent
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def authority(self) -> str:
        return self.host

    def header(self, name: str) -> str | None:
        """All values of a header joined with "," (as Envoy's header matchers see them), or None."""
        name = name.lower()
        if name == ":method":
            return self.method
        if name in (":authority", "host"):
            return self.host
        if name == ":path":
            return self.path
        if name == ":scheme":
            return self.scheme
        values = [v for k, v in self.headers if k == name]
        return ",".join(values) if values else None

    def with_changes(self, **changes: Any) -> "Request":
        data = {f: getattr(self, f) for f in ("protocol", "method", "scheme", "host", "port", "path", "headers")}
        data.update(changes)
        return Request(**data)

    def describe(self) -> str:
        if self.protocol == "tcp":
            return f"TCP {self.host}:{self.port}"
        if self.protocol == "grpc":
            service, _, method = self.path.lstrip("/").partition("/")
            return f"gRPC {service}/{method} to {self.host} (port {self.port})"
        return f"{self.method} {self.scheme}://{self.host}{self.path}" + ("" if self.host.endswith(f":{self.port}") else f" (port {self.port})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol, "method": self.method, "scheme": self.scheme, "host": self.host,
            "port": self.port, "path": self.path, "headers": [list(h) for h in self.headers],
        }


def _split_host_port(netloc: str, default_port: int) -> tuple[str, int]:
    if netloc.startswith("["):
        end = netloc.find("]")
        rest = netloc[end + 1:]
        return netloc[: end + 1], int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else default_port
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return netloc, default_port


def _header_pairs(headers: Iterable[str] | Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    pairs = []
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else (_parse_header(h) for h in headers)
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(name).strip().lower(), str(v)) for v in values)
    return tuple(pairs)


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise RequestError(f"a header is 'name: value', got {text!r}")
    return name.strip(), value.strip()


def http_request(url: str, *, method: str = "GET", headers: Iterable[str] | Mapping[str, Any] | None = None,
                 host: str | None = None, port: int | None = None) -> Request:
    """A request for ``url`` (``http://host[:port]/path?query``; the port defaults to 80/443)."""
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RequestError(f"only http:// and https:// URLs, got {url!r}")
    default_port = 443 if parts.scheme == "https" else 80
    netloc_host, netloc_port = _split_host_port(parts.netloc, default_port)
    if not netloc_host:
        raise RequestError(f"the URL names no host: {url!r}")
    pairs = _header_pairs(headers)
    host_header = host
    if host_header is None:
        host_header = next((v for k, v in pairs if k == "host"), None)
    pairs = tuple((k, v) for k, v in pairs if k != "host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Request(
        protocol="http", method=method.upper(), scheme=parts.scheme, host=host_header if host_header is not None else parts.netloc,
        port=port if port is not None else netloc_port, path=path, headers=pairs,
    )


def grpc_request(target: str, call: str, *, metadata: Iterable[str] | Mapping[str, Any] | None = None, port: int | None = None) -> Request:
    """A gRPC call ``service/method`` (``pkg.Service/Method``) to ``target`` (``host:port``)."""
    service, sep, method = call.strip("/").partition("/")
    if not sep or not service or not method:
        raise RequestError(f"a gRPC call is service/method, got {call!r}")
    if "://" in target:
        target = urllib.parse.urlsplit(target).netloc
    host, target_port = _split_host_port(target, 80)
    pairs = _header_pairs(metadata) + (("content-type", "application/grpc"), ("te", "trailers"))
    return Request(protocol="grpc", method="POST", scheme="http", host=target, port=port or target_port,
                   path=f"/{service}/{method}", headers=pairs)


def tcp_request(target: str) -> Request:
    host, port = _split_host_port(target, 0)
    if not port:
        raise RequestError(f"a TCP destination is HOST:PORT, got {target!r}")
    return Request(protocol="tcp", method="", scheme="", host=host, port=port, path="", headers=())


def parse_words(words: Sequence[str] | str) -> Request:
    """``[METHOD] URL [-H 'name: value']...``, ``--grpc SERVICE/METHOD HOST:PORT [-H ...]`` or ``--tcp HOST:PORT``."""
    if isinstance(words, str):
        words = shlex.split(words)
    words = list(words)
    headers: list[str] = []
    method = None
    grpc_call = None
    tcp = None
    rest: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-H", "--header", "-m", "--metadata"):
            if i + 1 >= len(words):
                raise RequestError(f"{word} needs a value")
            headers.append(words[i + 1])
            i += 2
            continue
        if word in ("-X", "--request", "--method"):
            method = words[i + 1]
            i += 2
            continue
        if word == "--grpc":
            grpc_call = words[i + 1]
            i += 2
            continue
        if word == "--tcp":
            tcp = words[i + 1]
            i += 2
            continue
        rest.append(word)
        i += 1
    if tcp is not None:
        return tcp_request(tcp)
    if rest and rest[0].upper() in METHODS and "://" not in rest[0]:
        if len(rest) == 1:
            raise RequestError(f"{rest[0]} of what? give a URL, e.g. {rest[0]} http://catalog.shop.local:8080/")
        method = method or rest.pop(0)
    if len(rest) != 1:
        raise RequestError(f"expected one URL (or HOST:PORT with --grpc), got {rest or 'none'}")
    if grpc_call is not None:
        return grpc_request(rest[0], grpc_call, metadata=headers)
    return http_request(rest[0], method=method or "GET", headers=headers)


def from_mapping(data: Mapping[str, Any]) -> Request:
    """A request as written in a test case file (see ``mesh_model.testing.cases``)."""
    data = dict(data)
    headers = data.get("headers") or {}
    if "tcp" in data:
        return tcp_request(str(data["tcp"]))
    if "grpc" in data:
        grpc = data["grpc"]
        if isinstance(grpc, str):
            target = data.get("host") or data.get("authority")
            if not target:
                raise RequestError("a gRPC request needs host: HOST:PORT")
            return grpc_request(str(target), grpc, metadata=data.get("metadata") or headers, port=data.get("port"))
        call = f"{grpc['service']}/{grpc['method']}"
        return grpc_request(str(grpc.get("host") or data.get("host")), call, metadata=grpc.get("metadata") or data.get("metadata") or headers,
                            port=data.get("port"))
    if "url" in data:
        return http_request(str(data["url"]), method=str(data.get("method", "GET")), headers=headers,
                            host=data.get("host"), port=data.get("port"))
    if "request" in data:
        return parse_words(str(data["request"]))
    raise RequestError("a request needs url:, request:, grpc: or tcp:")
