"""Clusters: the local app behind each listener, and one egress cluster per target listener.

App Mesh puts a node's health checks and outlier detection on every *client's* egress
cluster for that node (each client probes and ejects for itself), and its connection pool
on the node's own local-app cluster (where it limits what reaches the app).
"""
from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from mesh_model.spec.model import Mesh, Resource
from mesh_model.compiler import names
from mesh_model.compiler.common import EGRESS_CONNECT_TIMEOUT, MAX_INT32, ads_config_source, default_thresholds, millis, socket_address, to_proto, typed
from mesh_model.compiler.plan import Target
from mesh_model.compiler.tls import upstream_transport_socket

DNS_LOOKUP_FAMILY = {
    None: "AUTO",  # App Mesh default: prefer IPv6, fall back to IPv4
    "IPv6_PREFERRED": "AUTO",
    "IPv4_PREFERRED": "V4_PREFERRED",
    "IPv4_ONLY": "V4_ONLY",
    "IPv6_ONLY": "V6_ONLY",
}


def protocol_options(protocol: str) -> dict[str, Any]:
    """http2 and grpc upstreams speak HTTP/2 to the peer; http stays HTTP/1.1."""
    if protocol not in ("http2", "grpc"):
        return {}
    return {
        "typedExtensionProtocolOptions": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                {"explicitHttpConfig": {"http2ProtocolOptions": {}}},
            )
        }
    }


def _health_check(hc) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timeout": millis(hc.timeoutMillis),
        "interval": millis(hc.intervalMillis),
        "healthyThreshold": hc.healthyThreshold,
        "unhealthyThreshold": hc.unhealthyThreshold,
    }
    if hc.protocol == "tcp":
        body["tcpHealthCheck"] = {}
    elif hc.protocol == "grpc":
        body["grpcHealthCheck"] = {}
    else:
        http: dict[str, Any] = {"path": hc.path or "/"}
        if hc.protocol == "http2":
            http["codecClientType"] = "HTTP2"
        body["httpHealthCheck"] = http
    return body


def _outlier_detection(od) -> dict[str, Any]:
    """Only consecutive 5xx ejection, as App Mesh; Envoy's other detectors are switched off."""
    return {
        "consecutive5xx": od.maxServerErrors,
        "interval": millis(od.interval.to_millis()),
        "baseEjectionTime": millis(od.baseEjectionDuration.to_millis()),
        "maxEjectionPercent": od.maxEjectionPercent,
        "enforcingConsecutive5xx": 100,
        "enforcingConsecutiveGatewayFailure": 0,
        "enforcingSuccessRate": 0,
        "enforcingConsecutiveLocalOriginFailure": 0,
        "enforcingLocalOriginSuccessRate": 0,
        "enforcingFailurePercentage": 0,
        "enforcingFailurePercentageLocalOrigin": 0,
    }


def _listener_of(node: Resource, port: int):
    for listener in node.spec.listeners or ():
        if listener.portMapping.port == port:
            return listener
    raise KeyError(port)


def egress_cluster(mesh: Mesh, target: Target, *, client_tls=None) -> cluster_pb2.Cluster:
    """How a client reaches one listener of a target node (its service discovery, checks, ejection, TLS).

    ``client_tls`` is the *calling* node's applicable client policy TLS for this target
    (``tls.client_policies``); the cluster then validates the server and may present a
    client certificate. Without it the cluster still originates (unvalidated) TLS when the
    target listener's TLS mode is STRICT or PERMISSIVE, as App Mesh does.
    """
    node = mesh.virtual_nodes[target.node]
    listener = _listener_of(node, target.port)
    sd = node.spec.serviceDiscovery
    body: dict[str, Any] = {
        "name": target.cluster_name,
        "connectTimeout": EGRESS_CONNECT_TIMEOUT,
        "lbPolicy": "ROUND_ROBIN",
        "circuitBreakers": {"thresholds": [default_thresholds()]},
    }
    if sd.dns is not None:
        body["type"] = "STRICT_DNS" if sd.dns.responseType == "ENDPOINTS" else "LOGICAL_DNS"
        body["dnsLookupFamily"] = DNS_LOOKUP_FAMILY[sd.dns.ipPreference or mesh_ip_preference(mesh)]
        body["loadAssignment"] = {
            "clusterName": target.cluster_name,
            "endpoints": [{"lbEndpoints": [{"endpoint": {"address": socket_address(sd.dns.hostname, target.port)}}]}],
        }
    else:  # awsCloudMap: endpoints come from meshplane over EDS on the same ADS stream
        body["type"] = "EDS"
        body["edsClusterConfig"] = {"edsConfig": ads_config_source()}
    if listener.healthCheck is not None:
        body["healthChecks"] = [_health_check(listener.healthCheck)]
    if listener.outlierDetection is not None:
        body["outlierDetection"] = _outlier_detection(listener.outlierDetection)
    body.update(protocol_options(target.protocol))
    transport_socket = upstream_transport_socket(node, listener, target.protocol, client_tls)
    if transport_socket is not None:
        body["transportSocket"] = transport_socket
    return to_proto(body, cluster_pb2.Cluster)


def mesh_ip_preference(mesh: Mesh):
    sd = getattr(mesh.spec, "serviceDiscovery", None) if mesh.spec is not None else None
    return getattr(sd, "ipPreference", None)


def pool_thresholds(pool) -> dict[str, Any]:
    """A listener's connectionPool becomes the local-app cluster's circuit breaker, as in App Mesh."""
    thresholds = default_thresholds()
    if pool is None:
        return thresholds
    if getattr(pool, "tcp", None) is not None:  # a gateway's pool has no tcp member
        thresholds["maxConnections"] = pool.tcp.maxConnections
    elif pool.http is not None:
        thresholds["maxConnections"] = pool.http.maxConnections
        thresholds["maxPendingRequests"] = pool.http.maxPendingRequests or MAX_INT32
    elif pool.http2 is not None:
        thresholds["maxRequests"] = pool.http2.maxRequests
    elif pool.grpc is not None:
        thresholds["maxRequests"] = pool.grpc.maxRequests
    return thresholds


def local_app_cluster(mesh: Mesh, node: Resource, listener, app_address: str) -> cluster_pb2.Cluster:
    port, protocol = listener.portMapping.port, listener.portMapping.protocol
    name = names.local_app_cluster(mesh.name, node.name, protocol, port)
    body: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connectTimeout": EGRESS_CONNECT_TIMEOUT,
        "lbPolicy": "ROUND_ROBIN",
        "loadAssignment": {
            "clusterName": name,
            "endpoints": [{"lbEndpoints": [{"endpoint": {"address": socket_address(app_address, port)}}]}],
        },
        "circuitBreakers": {"thresholds": [pool_thresholds(listener.connectionPool)]},
    }
    body.update(protocol_options(protocol))
    return to_proto(body, cluster_pb2.Cluster)
