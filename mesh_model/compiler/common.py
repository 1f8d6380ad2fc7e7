"""Small shared pieces of Envoy config: proto construction, durations, App Mesh defaults.

Resources are written as plain dicts in Envoy's own JSON field names (what a reader finds in
the Envoy docs and in ``config_dump``) and turned into typed protos by ``to_proto``, which
rejects any misspelled field, so a typo fails at compile time instead of as an Envoy NACK.
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

# Import every Envoy extension the compiler emits inside a typed Any, so that their
# descriptors are registered before ParseDict meets an "@type".
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

M = TypeVar("M", bound=Message)

MAX_INT32 = 2147483647

# App Mesh's defaults when a spec says nothing: HTTP/gRPC routes time out after 15 s per
# request and 300 s idle; egress clusters connect within 1 s.
DEFAULT_PER_REQUEST_MS = 15_000
DEFAULT_IDLE_MS = 300_000
EGRESS_CONNECT_TIMEOUT = "1s"


def to_proto(data: Mapping[str, Any], message_type: type[M]) -> M:
    """Build a proto from its JSON form; unknown fields are a programming error, not ignored."""
    message = json_format.ParseDict(data, message_type(), ignore_unknown_fields=False)
    _repack_any_deterministically(message)
    return message


def _repack_any_deterministically(message: Message) -> None:
    """Re-serialize every nested ``Any`` with deterministic map ordering.

    ``SerializeToString(deterministic=True)`` on the outer resource does not reach into the
    bytes already inside an ``Any`` (an HCM inside a listener, a JSON log format map inside
    the HCM), and map order there is otherwise unspecified. Versions are content hashes, so
    those bytes must be canonical too.
    """
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _repack_any_deterministically(item)
            continue
        for item in value if field.is_repeated else (value,):
            if item.DESCRIPTOR.full_name == "google.protobuf.Any":
                _repack_one(item)
            else:
                _repack_any_deterministically(item)


def _repack_one(packed: Message) -> None:
    from google.protobuf import symbol_database

    inner = symbol_database.Default().GetSymbol(packed.TypeName())()
    packed.Unpack(inner)
    _repack_any_deterministically(inner)
    packed.Pack(inner, deterministic=True)


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
