"""What Envoy does with a cluster: discovery type, endpoints, TLS origination, outlier detection,
health checks, circuit breakers, upstream protocol (from the compiled Cluster protos)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.config.cluster.v3 import cluster_pb2


def fmt_duration(d) -> str:
    """A google.protobuf.Duration the way Envoy's YAML writes it (``15s``, ``0.250s``)."""
    total_nanos = d.seconds * 1_000_000_000 + d.nanos
    if total_nanos % 1_000_000_000 == 0:
        return f"{total_nanos // 1_000_000_000}s"
    return f"{total_nanos / 1e9:.3f}".rstrip("0") + "s"


def _socket(address) -> str:
    sa = address.socket_address
    host = f"[{sa.address}]" if ":" in sa.address else sa.address
    return f"{host}:{sa.port_value}"


def endpoints_of(cluster, assignments: Mapping[str, Any]) -> list[str]:
    cla = assignments.get(cluster.name) if cluster.type == cluster_pb2.Cluster.EDS else cluster.load_assignment
    if cla is None:
        return []
    return [_socket(lb.endpoint.address) for group in cla.endpoints for lb in group.lb_endpoints]


def _tls(cluster) -> Optional[dict[str, Any]]:
    socket = cluster.transport_socket
    if not socket.name or "tls" not in socket.name or not socket.HasField("typed_config"):
        return None
    context = tls_pb2.UpstreamTlsContext()
    if not socket.typed_config.Unpack(context):
        return {"transport_socket": socket.name}
    common = context.common_tls_context
    out: dict[str, Any] = {"sni": context.sni or None}
    validation = None
    trust = None
    if common.HasField("combined_validation_context"):
        validation = common.combined_validation_context.default_validation_context
        trust = "SDS " + common.combined_validation_context.validation_context_sds_secret_config.name
    elif common.HasField("validation_context"):
        validation = common.validation_context
        vc = common.validation_context.trusted_ca
        trust = vc.filename or ("inline" if vc.inline_string or vc.inline_bytes else None)
    elif common.HasField("validation_context_sds_secret_config"):
        trust = "SDS " + common.validation_context_sds_secret_config.name
    if validation is not None:
        if validation.HasField("trusted_ca"):
            vc = validation.trusted_ca
            trust = vc.filename or ("inline" if vc.inline_string or vc.inline_bytes else trust)
        sans = []
        for m in validation.match_typed_subject_alt_names:
            which = m.matcher.WhichOneof("match_pattern")
            value = m.matcher.safe_regex.regex if which == "safe_regex" else getattr(m.matcher, which or "exact")
            kind = cluster_san_kind(m.san_type)
            sans.append(f"{kind}:{value}" if which == "exact" else f"{kind}:{which} {value}")
        out["subject_alt_names"] = sans
    out["trust"] = trust
    if common.tls_certificates:
        out["client_certificate"] = common.tls_certificates[0].certificate_chain.filename or "inline"
    elif common.tls_certificate_sds_secret_configs:
        out["client_certificate"] = "SDS " + common.tls_certificate_sds_secret_configs[0].name
    if common.alpn_protocols:
        out["alpn"] = list(common.alpn_protocols)
    return out


def cluster_san_kind(value: int) -> str:
    from envoy.extensions.transport_sockets.tls.v3 import common_pb2

    return common_pb2.SubjectAltNameMatcher.SanType.Name(value)


def _outlier(cluster) -> Optional[dict[str, Any]]:
    if not cluster.HasField("outlier_detection"):
        return None
    od = cluster.outlier_detection
    out: dict[str, Any] = {}
    if od.HasField("consecutive_5xx"):
        out["consecutive_5xx"] = od.consecutive_5xx.value
    if od.HasField("interval"):
        out["interval"] = fmt_duration(od.interval)
    if od.HasField("base_ejection_time"):
        out["base_ejection_time"] = fmt_duration(od.base_ejection_time)
    if od.HasField("max_ejection_percent"):
        out["max_ejection_percent"] = od.max_ejection_percent.value
    return out


def _health_checks(cluster) -> list[dict[str, Any]]:
    out = []
    for hc in cluster.health_checks:
        which = hc.WhichOneof("health_checker")
        entry: dict[str, Any] = {"type": (which or "?").replace("_health_check", "")}
        if which == "http_health_check":
            entry["path"] = hc.http_health_check.path
        entry["interval"] = fmt_duration(hc.interval)
        entry["timeout"] = fmt_duration(hc.timeout)
        entry["healthy_threshold"] = hc.healthy_threshold.value
        entry["unhealthy_threshold"] = hc.unhealthy_threshold.value
        out.append(entry)
    return out


def _protocol(cluster) -> Optional[str]:
    options = cluster.typed_extension_protocol_options.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
    if options is None:
        return None
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

    message = http_protocol_options_pb2.HttpProtocolOptions()
    options.Unpack(message)
    if message.HasField("explicit_http_config"):
        cfg = message.explicit_http_config
        if cfg.HasField("http2_protocol_options"):
            return "HTTP/2"
        return "HTTP/1.1"
    if message.HasField("use_downstream_protocol_config"):
        return "same as downstream"
    return None


def describe_cluster(cluster, assignments: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {
        "type": cluster_pb2.Cluster.DiscoveryType.Name(cluster.type) if cluster.WhichOneof("cluster_discovery_type") == "type" else "custom",
        "endpoints": endpoints_of(cluster, assignments),
        "connect_timeout": fmt_duration(cluster.connect_timeout) if cluster.HasField("connect_timeout") else None,
        "tls": _tls(cluster),
        "outlier_detection": _outlier(cluster),
        "health_checks": _health_checks(cluster),
        "protocol": _protocol(cluster),
    }
    if cluster.circuit_breakers.thresholds:
        t = cluster.circuit_breakers.thresholds[0]
        details["circuit_breakers"] = {
            k: getattr(t, k).value for k in ("max_connections", "max_pending_requests", "max_requests", "max_retries") if t.HasField(k)
        }
    return details
