"""Virtual gateways: App Mesh's ingress gateway (VirtualGateway + GatewayRoute) -> Envoy.

App Mesh's own gateway layout, kept so dashboards and behaviour carry over:

* each gateway listener is ``lds_ingress_<address>_<port>`` with route config
  ``rds_ingress_<protocol>_<port>``; every gateway route there sends the request, rewritten,
  to the gateway's own egress listener through the cluster
  ``cds_ingress_<mesh>_<gateway>_self_redirect_<protocol>_15001``;
* the gateway's egress listener (``egress_port``, 15001) routes by Host exactly like a
  sidecar's egress: the target virtual service's router, weights, retries and timeouts
  apply, because the request *is* then an ordinary call to that service.

Rewrites follow App Mesh: by default the matched prefix becomes ``/`` and the Host becomes
the target virtual service; ``defaultPrefix: DISABLED`` keeps the path, ``value`` replaces the
prefix, ``path.exact`` replaces the whole path, ``defaultTargetHostname: DISABLED`` keeps the
client's Host and names the service in ``x-app-mesh-virtual-service`` instead (the egress side
then routes on that header). Routes are ordered by priority, then longest match first.
One deliberate difference: the gateway hop itself has no request timeout (App Mesh's 15 s
cut off long calls before the service route's own, configurable timeout could apply).
"""
from __future__ import annotations

from typing import Any, Optional

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

from mesh_model.spec.model import Mesh, Resource
from mesh_model.spec.envoy_rules import authority_regex
from mesh_model.spec.route_types import serves_gateway_listener
from mesh_model.compiler import names
from mesh_model.compiler.clusters import pool_thresholds, protocol_options
from mesh_model.compiler.common import socket_address, to_proto
from mesh_model.compiler.http_filters import INGRESS, PER_ROUTE, HcmContext, typed_per_filter_config
from mesh_model.compiler.listeners import access_logs, http_connection_manager
from mesh_model.compiler.placement import Placement
from mesh_model.compiler.plan import GatewayRoutePlan, NodePlan, gateway_routes, service_ports
from mesh_model.compiler.routes import egress_route, header_matcher, http_route_match
from mesh_model.compiler.tls import TLS_INSPECTOR, listener_filter_chains, needs_tls_inspector

VS_HEADER = "x-app-mesh-virtual-service"
SELF_REDIRECT_CONNECT_TIMEOUT = "0.250s"  # App Mesh's value: a loopback hop


def self_redirect_cluster_name(mesh: str, gateway: str, protocol: str, listener_port: int, listener_count: int) -> str:
    if listener_count > 1:
        return f"cds_ingress_{mesh}_{gateway}_self_redirect_{listener_port}_{protocol}_15001"
    return f"cds_ingress_{mesh}_{gateway}_self_redirect_{protocol}_15001"


def _match_length(plan: GatewayRoutePlan) -> int:
    match = plan.body.match
    if plan.kind == "grpcRoute":
        return len(match.serviceName or "")
    if match.prefix is not None:
        return len(match.prefix)
    if match.path is not None:
        return 10_000  # an exact or regex path is more specific than any prefix
    return 0


def _sort_key(plan: GatewayRoutePlan) -> tuple:
    return (plan.priority, -_match_length(plan), plan.name)


def _hostname_header(hostname) -> Optional[dict[str, Any]]:
    """Gateway hostname matches look at :authority (without port, as App Mesh matched)."""
    if hostname is None:
        return None
    if hostname.exact is not None:
        return {"name": ":authority", "stringMatch": {"safeRegex": {"regex": _host_regex(hostname.exact, exact=True)}}}
    return {"name": ":authority", "stringMatch": {"safeRegex": {"regex": _host_regex(hostname.suffix, exact=False)}}}


def _host_regex(value: str, *, exact: bool) -> str:
    return authority_regex(value, exact=exact)  # the model checked it against Envoy's RE2 limit


def _target_host(mesh: Mesh, plan: GatewayRoutePlan) -> str:
    ports = [sp.port for sp in service_ports(mesh, plan.service)]
    port = plan.service_port if plan.service_port is not None else (ports[0] if ports else None)
    return plan.service if port is None or len(ports) <= 1 else f"{plan.service}:{port}"


def _envoy_routes(mesh: Mesh, plan: GatewayRoutePlan, cluster: str) -> list[dict[str, Any]]:
    """One gateway route -> one Envoy route (two for a ``/prefix/``: ``/prefix/`` and ``/prefix``)."""
    match = plan.body.match
    rewrite = getattr(plan.body.action, "rewrite", None)
    action: dict[str, Any] = {"cluster": cluster, "timeout": "0s"}
    headers_to_add = []
    host_rewrite = rewrite.hostname.defaultTargetHostname if rewrite is not None and rewrite.hostname is not None else None
    if host_rewrite == "DISABLED":
        headers_to_add.append({"header": {"key": VS_HEADER, "value": plan.service}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"})
    else:
        action["hostRewriteLiteral"] = _target_host(mesh, plan)

    if plan.kind == "grpcRoute":
        envoy_match: dict[str, Any] = {"prefix": f"/{match.serviceName}/" if match.serviceName else "/", "grpc": {}}
        headers = [header_matcher(m) for m in match.metadata or ()]
        host = _hostname_header(match.hostname)
        if host:
            headers.append(host)
        if headers:
            envoy_match["headers"] = headers
        matches: list[tuple[dict[str, Any], str | None]] = [(envoy_match, None)]
    else:
        envoy_match = http_route_match(match) if (match.prefix is not None or match.path is not None) else {"prefix": "/"}
        extra = [h for h in [_hostname_header(match.hostname)] if h]
        if extra:
            envoy_match["headers"] = envoy_match.get("headers", []) + extra
        prefix_rewrite = _prefix_rewrite(match, rewrite)
        matches = [(envoy_match, prefix_rewrite)]
        if match.prefix is not None and match.prefix != "/" and match.prefix.endswith("/") and prefix_rewrite is not None:
            bare = {k: v for k, v in envoy_match.items() if k != "prefix"}
            bare["path"] = match.prefix.rstrip("/")
            matches.append((bare, prefix_rewrite))  # App Mesh also answers /prefix (no slash)
    per_filter = typed_per_filter_config(plan) if PER_ROUTE else {}  # HTTP filters' per-route settings (none today)
    routes = []
    for i, (m, prefix_rewrite) in enumerate(matches):
        route_action = dict(action)
        if prefix_rewrite is not None:
            route_action["prefixRewrite"] = prefix_rewrite
        route: dict[str, Any] = {"name": plan.name if i == 0 else f"{plan.name}-exact", "match": m, "route": route_action}
        if headers_to_add:
            route["requestHeadersToAdd"] = headers_to_add
        if per_filter:
            route["typedPerFilterConfig"] = per_filter
        routes.append(route)
    return routes


def _prefix_rewrite(match, rewrite) -> Optional[str]:
    if rewrite is not None and rewrite.path is not None and rewrite.path.exact is not None:
        return rewrite.path.exact  # with a path match, prefix_rewrite replaces the whole path
    if match.prefix is None:
        return None
    prefix_rule = rewrite.prefix if rewrite is not None else None
    if prefix_rule is not None and prefix_rule.value is not None:
        return prefix_rule.value
    if prefix_rule is not None and prefix_rule.defaultPrefix == "DISABLED":
        return None
    return "/"


def gateway_listeners_routes_clusters(
    mesh: Mesh, gateway: Resource, placement: Placement
) -> tuple[list[listener_pb2.Listener], list[route_pb2.RouteConfiguration], list[cluster_pb2.Cluster]]:
    """The gateway's ingress side: listeners, their route configs and the self-redirect clusters."""
    listeners_spec = sorted(gateway.spec.listeners, key=lambda l: l.portMapping.port)
    routes_by_listener = gateway_routes(mesh, gateway.name)
    redirect_host = "127.0.0.1" if placement.egress_address in ("0.0.0.0", "::") else placement.egress_address
    listeners, route_configs, clusters = [], [], []
    logs = access_logs(gateway)
    for listener in listeners_spec:
        port, protocol = listener.portMapping.port, listener.portMapping.protocol
        cluster_name = self_redirect_cluster_name(mesh.name, gateway.name, protocol, port, len(listeners_spec))
        cluster = {
            "name": cluster_name,
            "type": "STATIC",
            "connectTimeout": SELF_REDIRECT_CONNECT_TIMEOUT,
            "loadAssignment": {
                "clusterName": cluster_name,
                "endpoints": [{"lbEndpoints": [{"endpoint": {"address": socket_address(redirect_host, placement.egress_port)}}]}],
            },
            "circuitBreakers": {"thresholds": [pool_thresholds(listener.connectionPool)]},
            **protocol_options(protocol),
        }
        clusters.append(to_proto(cluster, cluster_pb2.Cluster))
        applicable = [
            p for p in routes_by_listener
            if (p.body.match.port is None or p.body.match.port == port) and serves_gateway_listener(p.kind, protocol)
        ]
        envoy_routes = [r for p in sorted(applicable, key=_sort_key) for r in _envoy_routes(mesh, p, cluster_name)]
        route_config_name = names.ingress_route_config(protocol, port)
        route_configs.append(
            to_proto(
                {"name": route_config_name, "virtualHosts": [{"name": f"{gateway.name}_{port}", "domains": ["*"], "routes": envoy_routes}]},
                route_pb2.RouteConfiguration,
            )
        )
        filters = [http_connection_manager(names.INGRESS_STAT_PREFIX, route_config_name, logs, HcmContext(gateway, INGRESS, listener),
                                           websocket=protocol == "http", tracer=placement.tracing)]
        body: dict[str, Any] = {
            "name": names.ingress_listener(placement.ingress_address, port),
            "address": socket_address(placement.ingress_address, port),
            "trafficDirection": "INBOUND",
            "filterChains": listener_filter_chains(listener, filters),
        }
        if needs_tls_inspector([listener]):
            body["listenerFilters"] = [TLS_INSPECTOR]
        listeners.append(to_proto(body, listener_pb2.Listener))
    return listeners, route_configs, clusters


def header_routed_virtual_host(plan: NodePlan) -> Optional[route_components_pb2.VirtualHost]:
    """For routes with ``defaultTargetHostname: DISABLED``: pick the service by App Mesh's header."""
    header_services = {
        p.service
        for p in gateway_routes(plan.mesh, plan.node.name)
        if getattr(p.body.action, "rewrite", None) is not None
        and p.body.action.rewrite.hostname is not None
        and p.body.action.rewrite.hostname.defaultTargetHostname == "DISABLED"
    }
    if not header_services:
        return None
    routes = []
    for sp in plan.backends:
        if sp.service not in header_services or sp.protocol == "tcp":
            continue
        for route in sp.routes:
            envoy_route = egress_route(route)
            if envoy_route is None:
                continue
            envoy_route["match"].setdefault("headers", []).append({"name": VS_HEADER, "stringMatch": {"exact": sp.service}})
            envoy_route["name"] = f"{sp.service}_{sp.port}_{route.name}"
            routes.append(envoy_route)
    return to_proto(
        {"name": "default_backend", "domains": ["*"], "routes": routes, "responseHeadersToRemove": [VS_HEADER]},
        route_components_pb2.VirtualHost,
    )
