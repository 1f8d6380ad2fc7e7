"""Traffic to hosts outside the mesh on the transparent egress listener (15001): the mesh's
egress filter, AWS endpoints, and the TLS/TCP passthrough App Mesh gave every sidecar.

Only on the transparent data path, where iptables preserved the original destination; on the
explicit path the destination *is* the egress listener, so there is nothing to pass through to.

What App Mesh's Envoy configuration did, and what is reproduced here
---------------------------------------------------------------------
App Mesh's egress listener ``lds_egress_0.0.0.0_15001`` (``config_dump`` of a sidecar) ran
``original_dst`` and ``tls_inspector`` and carried, besides its mesh chains, tcp_proxy chains
(``stat_prefix: egress``) to two ORIGINAL_DST clusters (``lb_policy: CLUSTER_PROVIDED``):

- ``cds_egress_<mesh>_amazonaws``: TLS whose SNI is ``*.amazonaws.com`` — AWS APIs (S3, STS
  for IRSA, Secrets Manager, ...) got out under *either* egress filter, so a ``DROP_ALL`` mesh
  could still call AWS. The bytes are not terminated: the connection goes, as the app opened
  it, to the address the app dialled (the SNI only picks the chain).
- ``cds_egress_<mesh>_mesh-allow-all`` (``ALLOW_ALL`` only): every other TCP or TLS
  connection, to its original destination; plain HTTP to unknown hosts passed through the
  HTTP route configuration's ``mesh-allow-all`` virtual host.

meshplane's chains, in Envoy's matching order (destination port, then server name, then
transport protocol, then application protocol; Envoy never falls back to a less specific
value once a more specific one matched):

1. a TCP backend's port -> its tcp_proxy (unchanged; the inspectors are disabled on these
   ports, so a server-first protocol such as MySQL behind a TCP backend is not held up);
2. TLS with SNI ``*.amazonaws.com`` or ``*.amazonaws.com.cn`` -> ``cds_egress_<mesh>_amazonaws``
   (any port; App Mesh matched 443 only, which left AWS endpoints on other ports — MSK 9094,
   ElastiCache 6379 — to the egress filter);
3. ``DROP_ALL``: plaintext -> the HTTP connection manager (mesh services by Host; other hosts
   404, as before); TLS to anything else matches no chain and is closed
   (``listener.<15001>.no_filter_chain_match``).
   ``ALLOW_ALL``: plaintext HTTP (``http_inspector``: HTTP/1.x or h2c prior knowledge) -> the
   HTTP connection manager (mesh services, else the ``mesh-allow-all`` virtual host); other TLS
   and other plaintext TCP -> tcp_proxy to ``cds_egress_<mesh>_mesh-allow-all``.

The app -> sidecar leg of mesh traffic is always plaintext (the sidecar originates mesh TLS on
the upstream cluster), so TLS detection never takes mesh HTTP traffic off the HTTP chain.
Connections whose client says nothing first (server-first protocols) are not held forever:
after the listener-filter timeout (Envoy's 15 s) they continue as plaintext
(``continue_on_listener_filters_timeout``) — App Mesh closed them instead. Under ``ALLOW_ALL``
they then pass through; list such ports in ``APPMESH_EGRESS_IGNORED_PORTS`` to skip the wait.
"""
from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.listener.http_inspector.v3 import http_inspector_pb2  # noqa: F401  (registers the typed Any)

from mesh_model.compiler import names
from mesh_model.compiler.common import EGRESS_CONNECT_TIMEOUT, default_thresholds, to_proto, typed
from mesh_model.compiler.tls import TLS_INSPECTOR
from mesh_model.spec.model import Mesh

ALLOW_ALL, DROP_ALL = "ALLOW_ALL", "DROP_ALL"

# The SNIs App Mesh let out under any egress filter (Envoy wildcards match any depth:
# s3.eu-west-1.amazonaws.com, sts.cn-north-1.amazonaws.com.cn).
AWS_SERVER_NAMES = ("*.amazonaws.com", "*.amazonaws.com.cn")

# What http_inspector reports for plaintext HTTP (HTTP/1.0, HTTP/1.1, HTTP/2 prior knowledge).
HTTP_APPLICATION_PROTOCOLS = ("http/1.0", "http/1.1", "h2c")

HTTP_INSPECTOR = {
    "name": "envoy.filters.listener.http_inspector",
    "typedConfig": typed("envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"),
}


def egress_filter(mesh: Mesh) -> str:
    """The mesh's ``egressFilter.type`` (App Mesh's default: ``DROP_ALL``)."""
    spec = mesh.spec
    egress = getattr(spec, "egressFilter", None) if spec is not None else None
    return egress.type if egress is not None else DROP_ALL


def _original_dst_cluster(name: str) -> cluster_pb2.Cluster:
    return to_proto(
        {
            "name": name,
            "type": "ORIGINAL_DST",
            "lbPolicy": "CLUSTER_PROVIDED",
            "connectTimeout": EGRESS_CONNECT_TIMEOUT,
            "circuitBreakers": {"thresholds": [default_thresholds()]},
        },
        cluster_pb2.Cluster,
    )


def allow_all_cluster(mesh: str) -> cluster_pb2.Cluster:
    return _original_dst_cluster(names.allow_all_cluster(mesh))


def amazonaws_cluster(mesh: str) -> cluster_pb2.Cluster:
    """``cds_egress_<mesh>_amazonaws``: AWS endpoints, to the address the app dialled."""
    return _original_dst_cluster(names.amazonaws_cluster(mesh))


def passthrough_clusters(mesh: Mesh) -> list[cluster_pb2.Cluster]:
    """The ORIGINAL_DST clusters of a transparent sidecar: AWS always, allow-all under ALLOW_ALL."""
    clusters = [amazonaws_cluster(mesh.name)]
    if egress_filter(mesh) == ALLOW_ALL:
        clusters.append(allow_all_cluster(mesh.name))
    return clusters


def allow_all_virtual_host(mesh: str) -> dict[str, Any]:
    return {
        "name": "mesh-allow-all",
        "domains": ["*"],
        "routes": [{"name": "allow-all", "match": {"prefix": "/"}, "route": {"cluster": names.allow_all_cluster(mesh), "timeout": "0s"}}],
    }


def _passthrough_proxy(cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typedConfig": typed(
            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            {"statPrefix": names.EGRESS_STAT_PREFIX, "cluster": cluster},  # App Mesh set no idle timeout: Envoy's 1 h
        ),
    }


def _not_on_ports(inspector: dict[str, Any], ports: list[int]) -> dict[str, Any]:
    """An inspector disabled on the given original destination ports (TCP backends)."""
    if not ports:
        return inspector
    rules = [{"destinationPortRange": {"start": p, "end": p + 1}} for p in ports]
    return {**inspector, "filterDisabled": rules[0] if len(rules) == 1 else {"orMatch": {"rules": rules}}}


def egress_inspectors(filter_type: str, tcp_ports: list[int]) -> list[dict[str, Any]]:
    """Listener filters after ``original_dst``: TLS detection (SNI), and HTTP detection under ALLOW_ALL."""
    inspectors = [TLS_INSPECTOR] + ([HTTP_INSPECTOR] if filter_type == ALLOW_ALL else [])
    return [_not_on_ports(inspector, sorted(tcp_ports)) for inspector in inspectors]


def egress_chains(mesh: str, filter_type: str, http_filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 15001 chains after the TCP-backend port chains; ``http_filters`` is the HTTP chain's filters."""
    aws = {
        "filterChainMatch": {"serverNames": list(AWS_SERVER_NAMES), "transportProtocol": "tls"},
        "filters": [_passthrough_proxy(names.amazonaws_cluster(mesh))],
    }
    if filter_type != ALLOW_ALL:
        return [aws, {"filterChainMatch": {"transportProtocol": "raw_buffer"}, "filters": http_filters}]
    allow_all = names.allow_all_cluster(mesh)
    return [
        aws,
        {"filterChainMatch": {"transportProtocol": "tls"}, "filters": [_passthrough_proxy(allow_all)]},
        {
            "filterChainMatch": {"transportProtocol": "raw_buffer", "applicationProtocols": list(HTTP_APPLICATION_PROTOCOLS)},
            "filters": http_filters,
        },
        {"filterChainMatch": {"transportProtocol": "raw_buffer"}, "filters": [_passthrough_proxy(allow_all)]},
    ]
