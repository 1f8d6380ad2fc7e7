"""The walk: a request through one node's compiled Envoy resources, as Envoy takes it.

listener (by destination port) -> filter chain -> HTTP connection manager -> route
configuration -> virtual host (by Host) -> first matching route -> weighted clusters ->
cluster. A gateway's route sends the rewritten request through its self-redirect cluster to
its own egress listener, which the walk follows as a second hop.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.config.listener.v3 import listener_components_pb2  # noqa: F401 - its messages, for unpacking Any

from mesh_model.compiler import type_urls
from mesh_model.explain.appmesh import AppMeshNames
from mesh_model.explain.matchers import normalize_path, route_mismatches, select_virtual_host, split_path
from mesh_model.explain.request import Request
from mesh_model.explain.result import Explanation, Hop, RouteCheck, Upstream
from mesh_model.explain.upstream import describe_cluster, fmt_duration

ENVOY_DEFAULT_ROUTE_TIMEOUT = "15s"
GRPC_UNIMPLEMENTED = 12
_DIRECTION = {"virtualNode": 2, "virtualGateway": 1}  # OUTBOUND, INBOUND (core.v3.TrafficDirection)


class _Walk:
    def __init__(self, resources: Mapping[str, Mapping[str, Any]], node, model):
        self.resources = resources
        self.node = node
        self.names = AppMeshNames(model, node.mesh if node is not None else None)
        self.listeners = list(resources.get(type_urls.LISTENER, {}).values())
        self.routes = resources.get(type_urls.ROUTE, {})
        self.clusters = resources.get(type_urls.CLUSTER, {})
        self.assignments = resources.get(type_urls.ENDPOINT, {})

    # -- listeners and filter chains --------------------------------------------------------------
    def listener_for(self, port: int, direction: Optional[int], address: Optional[str] = None):
        candidates = [l for l in self.listeners if direction is None or l.traffic_direction in (0, direction)]

        def ports(listener):
            addrs = [listener.address] + [a.address for a in listener.additional_addresses]
            return [(a.socket_address.address, a.socket_address.port_value) for a in addrs]

        exact = [l for l in candidates if any(p == port and (address is None or a in (address, "0.0.0.0", "::")) for a, p in ports(l))]
        original_dst = [l for l in candidates if any("original_dst" in f.name for f in l.listener_filters)]
        if exact:
            return exact[0], exact[0] in original_dst
        if original_dst:
            return original_dst[0], True
        return None, False

    @staticmethod
    def filter_chain(listener, port: int, protocol: str = "http"):
        """The chain Envoy picks for a plaintext connection to ``port``: the most specific
        match, criteria in Envoy's order (destination port, then server names, transport
        protocol, application protocols). The app's leg is plaintext, so a chain that needs
        an SNI or TLS never matches; an application protocol matches only when the listener
        runs ``http_inspector`` and the request is HTTP (``http/1.1``, or ``h2c`` for gRPC)."""
        inspected = any(f.name == "envoy.filters.listener.http_inspector" for f in listener.listener_filters)
        detected = {"http": {"http/1.0", "http/1.1"}, "grpc": {"h2c"}}.get(protocol, set()) if inspected else set()
        best = None
        for chain in listener.filter_chains:
            fcm = chain.filter_chain_match
            if fcm.HasField("destination_port") and fcm.destination_port.value != port:
                continue
            if fcm.server_names or fcm.transport_protocol not in ("", "raw_buffer"):
                continue
            if fcm.application_protocols and not detected & set(fcm.application_protocols):
                continue
            rank = (0 if fcm.HasField("destination_port") else 1,
                    0 if fcm.transport_protocol else 1,
                    0 if fcm.application_protocols else 1)
            if best is None or rank < best[0]:
                best = (rank, chain)
        if best is not None:
            return best[1]
        if listener.HasField("default_filter_chain"):
            return listener.default_filter_chain
        return None

    # -- the walk ---------------------------------------------------------------------------------
    def explain(self, request: Request) -> Explanation:
        node_id = self.node.node_id if self.node is not None else "?"
        kind = self.node.kind if self.node is not None else "virtualNode"
        ex = Explanation(node=node_id, request=request, outcome="routed", status=None, reason="")
        direction = _DIRECTION.get(kind)
        self._hop(ex, request, direction, depth=0)
        if ex.status == 404 and request.protocol == "grpc":
            ex.grpc_status = GRPC_UNIMPLEMENTED
        return ex

    def _fail(self, ex: Explanation, outcome: str, status: Optional[int], reason: str) -> None:
        ex.outcome, ex.status, ex.reason = outcome, status, reason

    def _hop(self, ex: Explanation, request: Request, direction: Optional[int], depth: int, address: Optional[str] = None) -> None:
        listener, transparent = self.listener_for(request.port, direction, address)
        if listener is None:
            where = "inbound" if direction == 1 else "outbound"
            self._fail(ex, "no-listener", None, f"no {where} listener takes port {request.port}: the connection is refused")
            return
        chain = self.filter_chain(listener, request.port, request.protocol)
        if chain is None:
            self._fail(ex, "no-listener", None, f"listener {listener.name} has no filter chain for port {request.port}: the connection is closed")
            return
        fcm = chain.filter_chain_match
        chain_text = (f"filter chain for destination port {fcm.destination_port.value}" if fcm.HasField("destination_port")
                      else ("original destination, default filter chain" if transparent else "filter chain"))
        hop = Hop(listener=listener.name, filter_chain=chain_text, request=_request_view(request))
        ex.hops.append(hop)
        network = chain.filters[-1] if chain.filters else None
        if network is None:
            self._fail(ex, "no-listener", None, f"filter chain of {listener.name} has no filters")
            return
        if "tcp_proxy" in network.name:
            self._tcp(ex, hop, network)
            return
        if "http_connection_manager" not in network.name:
            self._fail(ex, "unknown", None, f"network filter {network.name} is not explained")
            return
        hcm = http_connection_manager_pb2.HttpConnectionManager()
        network.typed_config.Unpack(hcm)
        if request.protocol == "tcp":
            hop.filter_chain += ", HTTP connection manager"
            self._fail(ex, "http", None, f"port {request.port} is served by an HTTP connection manager: a TCP connection's bytes would be parsed as HTTP")
            return
        if hcm.HasField("rds"):
            name = hcm.rds.route_config_name
            config = self.routes.get(name)
            if config is None:
                self._fail(ex, "not-found", 404, f"route configuration {name} is missing (Envoy waits for it)")
                return
        else:
            config = hcm.route_config
        hop.route_config = config.name
        self._route(ex, hop, request, config, depth)

    def _tcp(self, ex: Explanation, hop: Hop, network) -> None:
        proxy = tcp_proxy_pb2.TcpProxy()
        network.typed_config.Unpack(proxy)
        hop.tcp = True
        if proxy.WhichOneof("cluster_specifier") == "cluster":
            weighted = [(proxy.cluster, 1)]
        else:
            weighted = [(c.name, c.weight) for c in proxy.weighted_clusters.clusters]
        hop.targets = self._targets(weighted)
        if proxy.HasField("idle_timeout"):
            hop.idle_timeout = fmt_duration(proxy.idle_timeout)
        names = ", ".join(t.label for t in hop.targets)
        ex.outcome, ex.status = "tcp", None
        ex.reason = f"TCP proxy to {names}"
        target = hop.targets[0] if hop.targets else None
        if target is not None and target.virtual_node and self.names.mesh is not None:
            hop.virtual_service = self._service_for_tcp(target)
            hop.virtual_router = self.names.router_of(hop.virtual_service) if hop.virtual_service else None

    def _service_for_tcp(self, target: Upstream) -> Optional[str]:
        return self.names.tcp_service(self.node.name if self.node is not None else "", target.port)

    def _route(self, ex: Explanation, hop: Hop, request: Request, config, depth: int) -> None:
        normalized = request.with_changes(path=normalize_path(request.path))
        hop.request = _request_view(normalized)
        vhost, domain = select_virtual_host(config.virtual_hosts, request.host)
        if vhost is None:
            self._fail(ex, "not-found", 404, self._no_vhost_reason(request, config))
            return
        hop.virtual_host, hop.domain = vhost.name, domain
        self._label_vhost(hop, vhost)
        matched = None
        for route in vhost.routes:
            reasons = route_mismatches(route.match, normalized)
            check = RouteCheck(route.name, self._route_label(hop, route.name), not reasons, reasons)
            hop.checked.append(check)
            if not reasons:
                matched = route
                break
        if matched is None:
            self._fail(ex, "not-found", 404, f"no route of virtual host {vhost.name} matches the request")
            return
        hop.route = matched.name
        self._label_route(hop, matched.name)
        which = matched.WhichOneof("action")
        if which == "direct_response":
            self._fail(ex, "direct-response", matched.direct_response.status, f"route {matched.name} answers {matched.direct_response.status} itself")
            return
        if which == "redirect":
            self._fail(ex, "direct-response", 301, f"route {matched.name} redirects")
            return
        if which != "route":
            self._fail(ex, "unknown", None, f"route {matched.name} has action {which}")
            return
        action = matched.route
        retry = action.retry_policy if action.HasField("retry_policy") else (vhost.retry_policy if vhost.HasField("retry_policy") else None)
        if retry is not None:
            hop.retry = {
                "num_retries": retry.num_retries.value if retry.HasField("num_retries") else 1,
                "retry_on": retry.retry_on,
                "per_try_timeout": fmt_duration(retry.per_try_timeout) if retry.HasField("per_try_timeout") else None,
                "retriable_status_codes": list(retry.retriable_status_codes),
            }
        hop.timeout = fmt_duration(action.timeout) if action.HasField("timeout") else ENVOY_DEFAULT_ROUTE_TIMEOUT
        hop.idle_timeout = fmt_duration(action.idle_timeout) if action.HasField("idle_timeout") else None
        forwarded = self._rewrite(hop, matched, vhost, normalized)
        specifier = action.WhichOneof("cluster_specifier")
        if specifier == "cluster":
            weighted = [(action.cluster, 1)]
        elif specifier == "weighted_clusters":
            weighted = [(c.name, c.weight.value) for c in action.weighted_clusters.clusters]
        else:
            self._fail(ex, "unknown", None, f"route {matched.name} picks its cluster by {specifier}")
            return
        hop.targets = self._targets(weighted)
        ex.outcome, ex.status = "routed", None
        ex.reason = "routed to " + ", ".join(f"{t.label} ({t.probability * 100:g}%)" for t in hop.targets if t.probability > 0)
        # A gateway's route leads to its own egress listener: follow the request there.
        if len(hop.targets) == 1 and hop.targets[0].kind == "gateway-egress" and depth < 3:
            cluster = self.clusters.get(hop.targets[0].cluster)
            endpoint = _first_endpoint(cluster)
            if endpoint is not None:
                address, port = endpoint
                self._hop(ex, forwarded.with_changes(port=port), 2, depth + 1, address=address)

    def _rewrite(self, hop: Hop, route, vhost, request: Request) -> Request:
        action = route.route
        path = request.path
        changes: dict[str, Any] = {}
        if action.prefix_rewrite:
            bare, query = split_path(path)
            which = route.match.WhichOneof("path_specifier")
            matched_len = len(route.match.prefix) if which == "prefix" else len(bare)
            new_bare = action.prefix_rewrite + bare[matched_len:]
            changes["path"] = new_bare + ("?" + query if query else "")
            hop.rewrite["path"] = changes["path"]
        if action.host_rewrite_literal:
            changes["host"] = action.host_rewrite_literal
            hop.rewrite["host"] = action.host_rewrite_literal
        added = list(vhost.request_headers_to_add) + list(route.request_headers_to_add)
        if added:
            headers = list(request.headers)
            for option in added:
                key = option.header.key.lower()
                if option.append_action in (1, 2) or (option.HasField("append") and not option.append.value):  # OVERWRITE / ADD_IF_ABSENT
                    if option.append_action == 1 and any(k == key for k, _ in headers):
                        continue
                    headers = [(k, v) for k, v in headers if k != key]
                headers.append((key, option.header.value))
                hop.rewrite.setdefault("headers", {})[key] = option.header.value
            changes["headers"] = tuple(headers)
        return request.with_changes(**changes) if changes else request

    def _targets(self, weighted: list[tuple[str, int]]) -> list[Upstream]:
        total = sum(w for _, w in weighted)
        out = []
        for name, weight in weighted:
            kind, node, port, protocol = self.names.cluster(name)
            cluster = self.clusters.get(name)
            details = describe_cluster(cluster, self.assignments) if cluster is not None else {"type": "missing"}
            out.append(Upstream(cluster=name, weight=weight, probability=(weight / total if total else 0.0),
                                virtual_node=node, port=port, protocol=protocol, kind=kind, details=details))
        return out

    # -- App Mesh words ---------------------------------------------------------------------------
    def _label_vhost(self, hop: Hop, vhost) -> None:
        if self.node is not None and self.node.kind == "virtualGateway" and hop.listener.startswith("lds_ingress"):
            hop.gateway = self.node.name
            return
        domains = [d for d in vhost.domains if d != "*"]
        if domains:
            service = domains[0].split(":")[0]
            hop.virtual_service = service
            hop.virtual_router = self.names.router_of(service)

    def _route_label(self, hop: Hop, route_name: str) -> str:
        if hop.gateway:
            name = route_name[: -len("-exact")] if route_name.endswith("-exact") else route_name
            prio = self.names.gateway_route_priority(hop.gateway, name)
            return f"GatewayRoute {hop.gateway}/{name}" + (f" (priority {prio})" if prio is not None else "")
        if hop.virtual_router:
            prio = self.names.route_priority(hop.virtual_router, route_name)
            return f"Route {hop.virtual_router}/{route_name}" + (f" (priority {prio})" if prio is not None else "")
        if route_name == "provider":
            return f"VirtualService {hop.virtual_service} provided by VirtualNode {self.names.provider_node(hop.virtual_service or '') or '?'}"
        return f"route {route_name}"

    def _label_route(self, hop: Hop, route_name: str) -> None:
        if hop.gateway:
            name = route_name[: -len("-exact")] if route_name.endswith("-exact") else route_name
            hop.appmesh_route, hop.kind = name, "gatewayRoute"
            hop.priority = self.names.gateway_route_priority(hop.gateway, name)
        elif hop.virtual_router:
            hop.appmesh_route = route_name
            hop.priority = self.names.route_priority(hop.virtual_router, route_name)
            hop.kind = self.names.route_kind(hop.virtual_router, route_name)
        elif hop.virtual_host == "default_backend" and self.node is not None:
            # a gateway's header-routed host: routes are named <service>_<port>_<route>
            for service in (self.names.mesh.virtual_services if self.names.mesh is not None else {}):
                if route_name.startswith(service + "_"):
                    hop.virtual_service = service
                    hop.virtual_router = self.names.router_of(service)
                    hop.appmesh_route = route_name[len(service) + 1:].split("_", 1)[-1]
                    hop.priority = self.names.route_priority(hop.virtual_router, hop.appmesh_route)
            hop.appmesh_route = hop.appmesh_route or route_name
        else:
            hop.appmesh_route = route_name
            if route_name == "provider":
                hop.kind = "provider"

    def _no_vhost_reason(self, request: Request, config) -> str:
        known = sorted({d for vh in config.virtual_hosts for d in vh.domains})
        reason = f"no virtual host of {config.name} has domain {request.host.lower()!r} (known: {', '.join(known) or 'none'})"
        mesh = self.names.mesh
        if self.node is not None and self.node.kind == "virtualNode" and mesh is not None:
            why = self._backend_without_route(request.host.lower().rsplit(":", 1)[0] if request.host else "")
            if why:
                return f"{reason}; {why}"
            spec = mesh.spec
            egress = getattr(spec, "egressFilter", None) if spec is not None else None
            kind = egress.type if egress is not None else "DROP_ALL"
            reason += f"; it is not a backend of {self.node.name} and the mesh's egress filter is {kind}"
        return reason

    def _backend_without_route(self, host: str) -> str:
        """Why a backend of this node named ``host`` has no virtual host (a backend may name a
        service that does not exist yet, as on App Mesh), or ``""``."""
        mesh = self.names.mesh
        node = mesh.virtual_nodes.get(self.node.name)
        backends = {b.virtualService.virtualServiceName.lower(): b.virtualService.virtualServiceName
                    for b in (node.spec.backends or ()) if b.virtualService is not None} if node is not None else {}
        service = backends.get(host)
        if service is None:
            return ""
        found = mesh.virtual_services.get(service)
        if found is None:
            return (f"{service!r} is a backend of {self.node.name}, but virtual service {service!r} does not exist in mesh "
                    f"{mesh.name!r} (yet): no route to it until it is created")
        if found.spec.provider is None:
            return f"{service!r} is a backend of {self.node.name}, but virtual service {service!r} has no provider: no route to it until it has one"
        return ""


def _first_endpoint(cluster) -> Optional[tuple[str, int]]:
    if cluster is None:
        return None
    for group in cluster.load_assignment.endpoints:
        for lb in group.lb_endpoints:
            sa = lb.endpoint.address.socket_address
            return sa.address, sa.port_value
    return None


def _request_view(request: Request) -> dict[str, Any]:
    return {"method": request.method, "host": request.host, "port": request.port, "path": request.path,
            "headers": {k: v for k, v in request.headers}}


def explain(resources: Mapping[str, Mapping[str, Any]], request: Request, *, node=None, model=None) -> Explanation:
    """Follow ``request`` through ``resources`` (``compile_node``'s output) of ``node`` (a NodeRef).

    Pass the ``model`` for App Mesh words (routers, priorities, egress filter). Pure: no I/O.
    """
    return _Walk(resources, node, model).explain(request)
