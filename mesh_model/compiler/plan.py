"""What one virtual node or gateway needs to know: its backends, their ports, routes and
upstream targets, and which model resources that took.

App Mesh sends each Envoy only the config its virtual node's backends need, not the whole
mesh. This module walks the model once (node -> backend virtual services -> provider router
or node -> routes -> target nodes; gateway -> gateway routes -> target virtual services ->
the same) and returns plain facts; the per-resource modules turn those facts into Envoy
protos. As it walks it records the dependency key of every resource it reads
(``NodePlan.dependencies``): that set is what ``compile_node`` reads for the node, so a
model change that touches none of it leaves the node's config as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Optional

from mesh_model.compiler import names
from mesh_model.compiler.dependencies import Key, listener_key, node_keys
from mesh_model.spec.model import Mesh, MeshModel, Resource
from mesh_model.spec.shapes import GrpcRoute, HttpRoute, TcpRoute
from mesh_model.spec.route_types import route_of, serves_router_listener

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
    spec: HttpRoute | GrpcRoute | TcpRoute | None  # by ``kind`` (http and http2 share HttpRoute); None for "provider"
    targets: tuple[WeightedTarget, ...]


@dataclass(frozen=True)
class ServicePort:
    """One port of a backend virtual service, as the calling node sees it."""

    service: str
    port: int
    protocol: str
    routes: tuple[RoutePlan, ...]
    # what planning the whole service read: a piece built from this port (a virtual host)
    # depends on these keys only, whichever node it is built for
    dependencies: frozenset[Key] = field(default=frozenset(), compare=False)

    @cached_property
    def targets(self) -> frozenset[Target]:
        """Every target its routes send to; worked out once, as a service's plan is shared by
        every node that calls it."""
        return frozenset(wt.target for r in self.routes for wt in r.targets)


@dataclass(frozen=True)
class NodePlan:
    mesh: Mesh
    node: Resource  # the virtual node, or the virtual gateway
    backends: tuple[ServicePort, ...]  # sorted by (service, port)
    dependencies: frozenset[Key] = frozenset()  # every model resource compiling this node reads

    @cached_property
    def targets(self) -> tuple[Target, ...]:
        found = frozenset().union(*(sp.targets for sp in self.backends))
        # the dataclass order (mesh, node, port, protocol), compared as plain tuples: much faster
        return tuple(sorted(found, key=lambda t: (t.mesh, t.node, t.port, t.protocol)))


@dataclass(frozen=True)
class GatewayRoutePlan:
    name: str
    kind: str  # httpRoute | http2Route | grpcRoute
    body: Any
    priority: int
    service: str
    service_port: Optional[int]


def node_listener_target(mesh: Mesh, node_name: str, port: Optional[int]) -> Optional[Target]:
    """The target for (node, port); with no port, the node's only listener. Validation guarantees existence."""
    node = mesh.virtual_nodes.get(node_name)
    if node is None:
        return None
    listeners = node.spec.listeners or ()
    for listener in listeners:
        if port is None and len(listeners) == 1 or listener.portMapping.port == port:
            return Target(mesh.name, node_name, listener.portMapping.port, listener.portMapping.protocol)
    return None


def _route_sort_key(route: Resource) -> tuple[int, str]:
    priority = route.spec.priority
    return (UNSET_PRIORITY if priority is None else priority, route.name)


def _router_ports(mesh: Mesh, router_name: str, reads: set[Key]) -> list[ServicePort]:
    reads.add(("VirtualRouter", mesh.name, router_name))
    reads.add(("Routes", mesh.name, router_name))
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
                reads.add(listener_key(mesh.name, wt.virtualNode))
                target = node_listener_target(mesh, wt.virtualNode, wt.port)
                if target is not None:
                    targets.append(WeightedTarget(target, wt.weight))
            plans.append(RoutePlan(route.name, kind, body, tuple(targets)))
        ports.append(ServicePort("", port, protocol, tuple(plans)))
    return ports


def plan_service(mesh: Mesh, service_name: str) -> tuple[tuple[ServicePort, ...], frozenset[Key]]:
    """The ports a virtual service answers on and how each is routed (none without a
    provider), and the keys of every resource read to find out.

    A service that does not exist (a node's backend may name one that is created later, as
    on App Mesh) has no ports, and its key is still read: creating it recompiles its callers."""
    reads: set[Key] = {("VirtualService", mesh.name, service_name)}
    service = mesh.virtual_services.get(service_name)
    if service is None or service.spec.provider is None:
        return (), frozenset(reads)
    provider = service.spec.provider
    if provider.virtualRouter is not None:
        ports = _router_ports(mesh, provider.virtualRouter.virtualRouterName, reads)
    else:
        node_name = provider.virtualNode.virtualNodeName
        reads.add(listener_key(mesh.name, node_name))
        ports = []
        for listener in mesh.virtual_nodes[node_name].spec.listeners or ():
            target = Target(mesh.name, node_name, listener.portMapping.port, listener.portMapping.protocol)
            route = RoutePlan("provider", "provider", None, (WeightedTarget(target, 100),))
            ports.append(ServicePort("", target.port, target.protocol, (route,)))
    dependencies = frozenset(reads)
    return tuple(ServicePort(service_name, p.port, p.protocol, p.routes, dependencies) for p in ports), dependencies


def service_ports(mesh: Mesh, service_name: str) -> tuple[ServicePort, ...]:
    """The ports a virtual service answers on and how each is routed (empty without a provider)."""
    return plan_service(mesh, service_name)[0]


ServicePlanner = Callable[[Mesh, str], tuple[tuple[ServicePort, ...], frozenset[Key]]]


def _plan_backends(mesh: Mesh, node: Resource, services, reads: set[Key], service_plan: ServicePlanner) -> NodePlan:
    backends: list[ServicePort] = []
    for service in services:
        ports, dependencies = service_plan(mesh, service)
        backends.extend(ports)
        reads |= dependencies
    backends.sort(key=lambda sp: (sp.service, sp.port))
    return NodePlan(mesh, node, tuple(backends), frozenset(reads))


def plan_node(mesh: Mesh, node_name: str, service_plan: ServicePlanner = plan_service) -> NodePlan:
    """A virtual node calls the virtual services listed in its backends. ``service_plan``
    may answer from a cache (``plan_service``'s result depends only on its reads)."""
    node = mesh.virtual_nodes[node_name]
    services = [b.virtualService.virtualServiceName for b in node.spec.backends or () if b.virtualService is not None]
    reads: set[Key] = {("Mesh", mesh.name), ("VirtualNode", mesh.name, node_name)}
    return _plan_backends(mesh, node, services, reads, service_plan)


def gateway_routes(mesh: Mesh, gateway: str) -> list[GatewayRoutePlan]:
    plans = []
    for route in mesh.gateway_routes.get(gateway, {}).values():
        kind, body = route_of(route.spec)
        target = body.action.target
        priority = UNSET_PRIORITY if route.spec.priority is None else route.spec.priority
        plans.append(GatewayRoutePlan(route.name, kind, body, priority, target.virtualService.virtualServiceName, target.port))
    return plans


def plan_gateway(mesh: Mesh, gateway: Resource, service_plan: ServicePlanner = plan_service) -> NodePlan:
    """Every virtual service a gateway route targets becomes a backend of the gateway's egress side."""
    services = sorted({p.service for p in gateway_routes(mesh, gateway.name)})
    reads: set[Key] = {("Mesh", mesh.name), ("VirtualGateway", mesh.name, gateway.name), ("GatewayRoutes", mesh.name, gateway.name)}
    return _plan_backends(mesh, gateway, services, reads, service_plan)


def compiled_dependencies(plan: NodePlan) -> frozenset[Key]:
    """Everything compiling a planned node reads: its plan's reads, and all of every target
    node (its egress cluster and endpoints carry the target's checks, TLS and discovery)."""
    keys = set(plan.dependencies)
    for target in plan.targets:
        keys |= node_keys(plan.mesh, target.node)
    return frozenset(keys)


def node_dependencies(model: MeshModel, mesh_name: str, node_name: str, kind: str = "virtualNode") -> frozenset[Key]:
    """Everything ``compile_node`` reads for this node or gateway (``compiled_dependencies``
    of its plan; for a node or mesh not in the model, the keys that would bring it in)."""
    mesh = model.meshes.get(mesh_name)
    if kind == "virtualGateway":
        gateway = mesh.virtual_gateways.get(node_name) if mesh is not None else None
        if mesh is None or gateway is None:
            return frozenset({("Mesh", mesh_name), ("VirtualGateway", mesh_name, node_name), ("GatewayRoutes", mesh_name, node_name)})
        return compiled_dependencies(plan_gateway(mesh, gateway))
    if mesh is None or node_name not in mesh.virtual_nodes:
        return frozenset({("Mesh", mesh_name), ("VirtualNode", mesh_name, node_name)})
    return compiled_dependencies(plan_node(mesh, node_name))
