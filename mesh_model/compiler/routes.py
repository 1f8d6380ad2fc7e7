"""RouteConfigurations: App Mesh routes -> Envoy virtual hosts and routes.

Egress: one virtual host per backend virtual service port (``domains`` = the service name
and ``name:port``, as App Mesh); its routes in App Mesh priority order (0 first). Ingress:
one route config per virtual-node listener, sending everything to the local app with the
listener's timeouts.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from envoy.config.route.v3 import route_components_pb2, route_pb2

from mesh_model.spec.shapes import GrpcRoute, HttpRoute
from mesh_model.compiler import names
from mesh_model.compiler.common import DEFAULT_IDLE_MS, DEFAULT_PER_REQUEST_MS, duration, millis, to_proto, typed
from mesh_model.compiler.http_filters import PER_ROUTE, typed_per_filter_config
from mesh_model.compiler.plan import NodePlan, RoutePlan, ServicePort

T = TypeVar("T")

# App Mesh's retry event names -> Envoy retry_on conditions / status codes, as App Mesh mapped them.
HTTP_RETRY_STATUS = {
    "server-error": (500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511),
    "gateway-error": (502, 503, 504),
    "client-error": (409,),
}
GRPC_RETRY_ON = {
    "cancelled": "cancelled",
    "deadline-exceeded": "deadline-exceeded",
    "internal": "internal",
    "resource-exhausted": "resource-exhausted",
    "unavailable": "unavailable",
}
# Without a retry policy App Mesh still retried (meshes created after 2020-07-29).
DEFAULT_RETRY = {
    "retryOn": "unavailable,connect-failure,refused-stream,retriable-status-codes",
    "numRetries": 2,
    "retriableStatusCodes": [503],
}


def _retry_hosts() -> dict[str, Any]:
    """Retry on another host when there is one (App Mesh: previous_hosts, 5 attempts)."""
    return {
        "retryHostPredicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typedConfig": typed("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
            }
        ],
        "hostSelectionRetryMaxAttempts": "5",
    }


def retry_policy(policy) -> dict[str, Any]:
    """An App Mesh retryPolicy (or App Mesh's default when ``None``) as an Envoy RetryPolicy."""
    if policy is None:
        return {**DEFAULT_RETRY, **_retry_hosts()}
    retry_on: set[str] = {"reset"}  # App Mesh retried upstream resets too (roadmap #284)
    codes: set[int] = set()
    for event in policy.httpRetryEvents or ():
        if event == "stream-error":
            retry_on.add("refused-stream")
        else:
            codes.update(HTTP_RETRY_STATUS[event])
    if codes:
        retry_on.add("retriable-status-codes")
    for event in policy.tcpRetryEvents or ():
        if event == "connection-error":
            retry_on.add("connect-failure")
    for event in getattr(policy, "grpcRetryEvents", None) or ():
        retry_on.add(GRPC_RETRY_ON[event])
    body: dict[str, Any] = {"retryOn": ",".join(sorted(retry_on)), "numRetries": policy.maxRetries}
    per_try = policy.perRetryTimeout.to_millis()
    if per_try > 0:
        body["perTryTimeout"] = millis(per_try)
    if codes:
        body["retriableStatusCodes"] = sorted(codes)
    body.update(_retry_hosts())
    return body


def _string_match(match) -> dict[str, Any]:
    if match.exact is not None:
        return {"exact": match.exact}
    if match.prefix is not None:
        return {"prefix": match.prefix}
    if match.suffix is not None:
        return {"suffix": match.suffix}
    return {"safeRegex": {"regex": match.regex}}


def header_matcher(header) -> dict[str, Any]:
    """An App Mesh header (or gRPC metadata) match; no match method means "header present"."""
    body: dict[str, Any] = {"name": header.name}
    match = header.match
    if match is None:
        body["presentMatch"] = True
    elif match.range is not None:
        body["rangeMatch"] = {"start": str(match.range.start), "end": str(match.range.end)}
    else:
        body["stringMatch"] = _string_match(match)
    if header.invert:
        body["invertMatch"] = True
    return body


def http_route_match(match) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if match.prefix is not None:
        body["prefix"] = match.prefix
    elif match.path is not None and match.path.exact is not None:
        body["path"] = match.path.exact
    elif match.path is not None:
        body["safeRegex"] = {"regex": match.path.regex}
    else:
        body["prefix"] = "/"
    headers = [header_matcher(h) for h in match.headers or ()]
    if match.method is not None:
        headers.append({"name": ":method", "stringMatch": {"exact": match.method}})
    if getattr(match, "scheme", None) is not None:
        headers.append({"name": ":scheme", "stringMatch": {"exact": match.scheme}})
    if headers:
        body["headers"] = headers
    params = []
    for param in match.queryParameters or ():
        if param.match is not None and param.match.exact is not None:
            params.append({"name": param.name, "stringMatch": {"exact": param.match.exact}})
        else:
            params.append({"name": param.name, "presentMatch": True})
    if params:
        body["queryParameters"] = params
    return body


def grpc_route_match(match) -> dict[str, Any]:
    """gRPC requests are POST /<service>/<method>; App Mesh matches service, method and metadata."""
    body: dict[str, Any]
    if match.serviceName is None:
        body = {"prefix": "/"}
    elif match.methodName is None:
        body = {"prefix": f"/{match.serviceName}/"}
    else:
        body = {"path": f"/{match.serviceName}/{match.methodName}"}
    headers = [header_matcher(m) for m in match.metadata or ()]
    if headers:
        body["headers"] = headers
    body["grpc"] = {}
    return body


def _route_action(route: RoutePlan) -> dict[str, Any]:
    spec = route.spec
    timeout = getattr(spec, "timeout", None) if spec is not None else None
    action: dict[str, Any] = {
        "weightedClusters": {
            "clusters": [{"name": wt.target.cluster_name, "weight": wt.weight} for wt in route.targets]
        },
        "timeout": duration(timeout.perRequest if timeout else None, DEFAULT_PER_REQUEST_MS),
        "idleTimeout": duration(timeout.idle if timeout else None, DEFAULT_IDLE_MS),
        "retryPolicy": retry_policy(getattr(spec, "retryPolicy", None) if spec is not None else None),
    }
    return action


def egress_route(route: RoutePlan) -> dict[str, Any] | None:
    """One Envoy route, or ``None`` when the route has no usable target (nothing to send to)."""
    if not route.targets or sum(wt.weight for wt in route.targets) == 0:
        return None
    if route.kind == "provider":
        match = {"prefix": "/"}
    elif route.kind == "grpcRoute":
        assert isinstance(route.spec, GrpcRoute)
        match = grpc_route_match(route.spec.match)
    else:  # httpRoute, http2Route (TCP routes have no HTTP route)
        assert isinstance(route.spec, HttpRoute)
        match = http_route_match(route.spec.match)
    body = {"name": route.name, "match": match, "route": _route_action(route)}
    if PER_ROUTE:  # an HTTP filter with per-route settings (none today)
        per_filter = typed_per_filter_config(route)
        if per_filter:
            body["typedPerFilterConfig"] = per_filter
    return body


def virtual_host(name: str, domains: tuple[str, ...], service_port: ServicePort) -> route_components_pb2.VirtualHost:
    routes = [r for r in (egress_route(route) for route in service_port.routes) if r is not None]
    return to_proto({"name": name, "domains": list(domains), "routes": routes}, route_components_pb2.VirtualHost)


VirtualHostBuilder = Callable[[str, tuple[str, ...], ServicePort], T]


def egress_virtual_hosts(service_ports: Iterable[ServicePort], *, by_port: bool, build_virtual_host: VirtualHostBuilder) -> list[T]:
    """The virtual hosts of a node's egress route configuration, one per HTTP backend port.

    ``by_port``: a route config for one port (explicit data path), where each service appears
    once with domains ``[name, name:port]``. Otherwise (the 15001 listener, which sees every
    port) a service with several ports gets one virtual host per port and its bare name goes
    to the lowest port only, because Envoy rejects a domain that appears twice.
    ``build_virtual_host(name, domains, service_port)`` builds (or fetches from the cache
    shared by every node calling the same service) one virtual host (``virtual_host``).
    """
    hosts = []
    seen_bare: set[str] = set()
    for sp in service_ports:
        if sp.protocol not in ("http", "http2", "grpc"):
            continue
        domains = [f"{sp.service}:{sp.port}"]
        if sp.service not in seen_bare:
            domains.insert(0, sp.service)
            seen_bare.add(sp.service)
        vhost_name = sp.service if by_port else f"{sp.service}_{sp.port}"
        hosts.append(build_virtual_host(vhost_name, tuple(domains), sp))
    return hosts


def ingress_route_config(plan: NodePlan, listener) -> route_pb2.RouteConfiguration:
    """Everything arriving on a listener goes to the local app, with the listener's timeouts."""
    port, protocol = listener.portMapping.port, listener.portMapping.protocol
    timeout = getattr(listener.timeout, protocol, None) if listener.timeout is not None else None
    mesh, node = plan.mesh.name, plan.node.name
    route: dict[str, Any] = {
        "cluster": names.local_app_cluster(mesh, node, protocol, port),
        "timeout": duration(getattr(timeout, "perRequest", None), DEFAULT_PER_REQUEST_MS),
        "idleTimeout": duration(getattr(timeout, "idle", None), DEFAULT_IDLE_MS),
    }
    return to_proto(
        {
            "name": names.ingress_route_config(protocol, port),
            "virtualHosts": [{"name": f"{node}_{port}", "domains": ["*"], "routes": [{"name": "local_app", "match": {"prefix": "/"}, "route": route}]}],
        },
        route_pb2.RouteConfiguration,
    )
