"""Small shared pieces of Envoy config: proto construction, durations, App Mesh defaults.

Resources are written as plain dicts in Envoy's own JSON field names (what a reader finds in
the Envoy docs and in ``config_dump``) and turned into typed protos by ``to_proto``, which
rejects any misspelled field, so a typo fails at compile time instead of as an Envoy NACK.
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

from google.protobuf.message import Message

# Import every Envoy extension the compiler emits inside a typed Any, so that their
# descriptors are registered before to_proto meets an "@type" (HTTP filters: each module of
# ``http_filters`` imports its own).
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

from mesh_model.compiler import proto_build

M = TypeVar("M", bound=Message)

MAX_INT32 = 2147483647

# App Mesh's defaults when a spec says nothing: HTTP/gRPC routes time out after 15 s per
# request and 300 s idle; egress clusters connect within 1 s.
DEFAULT_PER_REQUEST_MS = 15_000
DEFAULT_IDLE_MS = 300_000
EGRESS_CONNECT_TIMEOUT = "1s"


def to_proto(data: Mapping[str, Any], message_type: type[M]) -> M:
    """Build a proto from its JSON form; unknown fields are a programming error, not ignored.

    ``proto_build.build`` reads the same JSON as ``json_format.ParseDict`` several times
    faster and packs every nested ``Any`` deterministically as it builds it (canonical map
    order inside the bytes of an HCM or a JSON log format: versions are content hashes). A
    bad field raises ``proto_build.ProtoBuildError`` (a ``ValueError``) naming its path.
    """
    return proto_build.build(data, message_type)  # type: ignore[return-value]


def millis(ms: int) -> str:
    """Milliseconds as a proto3 JSON Duration string (``1.5s``, ``0s``)."""
    seconds, rest = divmod(int(ms), 1000)
    return f"{seconds}s" if rest == 0 else f"{seconds}.{rest:03d}s"


def duration(d, default_ms: int | None = None) -> str | None:
    """An App Mesh Duration (``{unit, value}``) as a proto Duration string; ``None`` if unset and no default."""
    if d is None:
        return None if default_ms is None else millis(default_ms)
    return millis(d.to_millis())


def typed(type_name: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A typed Any in JSON form."""
    return {"@type": f"type.googleapis.com/{type_name}", **(body or {})}


def ads_config_source() -> dict[str, Any]:
    return {"ads": {}, "resourceApiVersion": "V3"}


def default_thresholds() -> dict[str, Any]:
    """App Mesh's circuit breakers: every limit at max-int (not user-modifiable on the client side)."""
    return {
        "maxConnections": MAX_INT32,
        "maxPendingRequests": MAX_INT32,
        "maxRequests": MAX_INT32,
        "maxRetries": MAX_INT32,
    }


def socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socketAddress": {"address": address, "portValue": port}}
