"""What one virtual node needs to know: its backends, their ports, routes and upstream targets.

App Mesh sends each Envoy only the config its virtual node's backends need, not the whole
mesh. This module walks the model once (node -> backend virtual services -> provider router
or node -> routes -> target nodes) and returns plain facts; the per-resource modules turn
those facts into Envoy protos.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mesh_model.spec import model as resources
from mesh_model.spec.route_types import route_of, serves_router_listener
from mesh_model.compiler import names

UNSET_PRIORITY = 1001  # App Mesh priorities are 0..1000, 0 highest; unprioritised routes go last


@dataclass(frozen=True, order=True)
class Target:
    """One listener of one virtual node: the unit an egress cluster points at."""

    mesh: str
    node: str
    port: int
    protocol: str

    @property
    def cluster_name(self) -> str:
        return names.egress_cluster(self.mesh, self.node, self.protocol, self.port)


@dataclass(frozen=True)
class WeightedTarget:
    target: Target
    weight: int


@dataclass(frozen=True)
class RoutePlan:
    """One App Mesh route (or the implicit catch-all of a node-provided service)."""

    name: str
    kind: str  # httpRoute | http2Route | grpcRoute | tcpRoute | "provider" (service -> node directly)
    spec: object  # the HttpRoute/GrpcRoute/TcpRoute spec, or None for "provider"
    targets: tuple[WeightedTarget, ...]


@dataclass(frozen=True)
class ServicePort:
    """One port of a backend virtual service, as the calling node sees it."""

    service: str
    port: int
    protocol: str
    routes: tuple[RoutePlan, ...]


@dataclass(frozen=True)
class NodePlan:
    mesh: resources.Mesh
    node: resources.Resource
    backends: tuple[ServicePort, ...]  # sorted by (service, port)

    @property
    def targets(self) -> tuple[Target, ...]:
        found = {wt.target for sp in self.backends for r in sp.routes for wt in r.targets}
        return tuple(sorted(found))


def node_listener_target(mesh: resources.Mesh, node_name: str, port: Optional[int]) -> Optional[Target]:
    """The target for (node, port); with no port, the node's only listener. Validation guarantees existence."""
    node = mesh.virtual_nodes.get(node_name)
    if node is None:
        return None
    listeners = node.spec.listeners or ()
    for listener in listeners:
        if port is None and len(listeners) == 1 or listener.portMapping.port == port:
            return Target(mesh.name, node_name, listener.portMapping.port, listener.portMapping.protocol)
    return None


def _route_sort_key(route: resources.Resource) -> tuple[int, str]:
    priority = route.spec.priority
    return (UNSET_PRIORITY if priority is None else priority, route.name)


def _router_ports(mesh: resources.Mesh, router_name: str) -> list[ServicePort]:
    router = mesh.virtual_routers[router_name]
    listeners = router.spec.listeners or ()
    ports = []
    for listener in listeners:
        port, protocol = listener.portMapping.port, listener.portMapping.protocol
        plans = []
        for route in sorted(mesh.routes.get(router_name, {}).values(), key=_route_sort_key):
            kind, body = route_of(route.spec)
            if not serves_router_listener(kind, protocol):
                continue
            match_port = getattr(body.match, "port", None) if body.match is not None else None
            if match_port is not None and match_port != port:
                continue
            targets = []
            for wt in body.action.weightedTargets:
                target = node_listener_target(mesh, wt.virtualNode, wt.port)
                if target is not None:
                    targets.append(WeightedTarget(target, wt.weight))
            plans.append(RoutePlan(route.name, kind, body, tuple(targets)))
        ports.append(ServicePort("", port, protocol, tuple(plans)))
    return ports


def service_ports(mesh: resources.Mesh, service_name: str) -> list[ServicePort]:
    """The ports a virtual service answers on and how each is routed (empty without a provider)."""
    service = mesh.virtual_services.get(service_name)
    if service is None or service.spec.provider is None:
        return []
    provider = service.spec.provider
    if provider.virtualRouter is not None:
        ports = _router_ports(mesh, provider.virtualRouter.virtualRouterName)
    else:
        node_name = provider.virtualNode.virtualNodeName
        ports = []
        for listener in mesh.virtual_nodes[node_name].spec.listeners or ():
            target = Target(mesh.name, node_name, listener.portMapping.port, listener.portMapping.protocol)
            route = RoutePlan("provider", "provider", None, (WeightedTarget(target, 100),))
            ports.append(ServicePort("", target.port, target.protocol, (route,)))
    return [ServicePort(service_name, p.port, p.protocol, p.routes) for p in ports]


def plan_node(mesh: resources.Mesh, node_name: str) -> NodePlan:
    node = mesh.virtual_nodes[node_name]
    backends: list[ServicePort] = []
    for backend in node.spec.backends or ():
        if backend.virtualService is None:
            continue
        backends.extend(service_ports(mesh, backend.virtualService.virtualServiceName))
    backends.sort(key=lambda sp: (sp.service, sp.port))
    return NodePlan(mesh, node, tuple(backends))
