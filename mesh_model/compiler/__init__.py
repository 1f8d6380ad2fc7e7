"""The compiler: (mesh model, node identity, instance placement) -> Envoy resources.

Import ``compile_node``, ``Placement``, ``CompileCache``, ``model_warnings`` and, for
incremental rebuilds, ``node_dependencies``/``changed_keys`` from here.

Pure and deterministic: no I/O, no clocks, no globals; resources come out keyed by type URL
and name, in sorted order, so the same model always yields byte-identical protos and
therefore the same xDS versions across runs, restarts and replicas.
"""
from __future__ import annotations

from typing import Mapping

from envoy.config.route.v3 import route_components_pb2
from google.protobuf.message import Message

from mesh_model.spec.model import Mesh, MeshModel
from mesh_model.node_id import NodeRef
from mesh_model.compiler import names, type_urls
from mesh_model.compiler.compile_cache import CompileCache
from mesh_model.compiler.clusters import egress_cluster, local_app_cluster
from mesh_model.compiler.common import to_proto
from mesh_model.compiler.dependencies import changed_keys, node_keys
from mesh_model.compiler.endpoints import load_assignment, needs_eds
from mesh_model.compiler.gateway import gateway_listeners_routes_clusters, header_routed_virtual_host
from mesh_model.compiler.listeners import egress_listeners, ingress_listeners, listener_families
from mesh_model.compiler.passthrough import ALLOW_ALL, allow_all_virtual_host, egress_filter, passthrough_clusters
from mesh_model.compiler.placement import Placement
from mesh_model.compiler.plan import node_dependencies, plan_gateway, plan_node
from mesh_model.compiler.routes import egress_route_config, ingress_route_config, virtual_host
from mesh_model.compiler.tcp import tcp_backends
from mesh_model.compiler.tls import client_policy_for

NodeResources = Mapping[str, Mapping[str, Message]]

__all__ = ["CompileCache", "CompileError", "changed_keys", "node_dependencies", "NodeResources", "Placement", "compile_node", "model_warnings", "type_urls", "names"]


class CompileError(Exception):
    """The node cannot be compiled (e.g. it is not in the model)."""


def _sorted(items: dict[str, Message]) -> dict[str, Message]:
    return {name: items[name] for name in sorted(items)}


def compile_node(
    model: MeshModel, node: NodeRef, placement: Placement = Placement(), cache: CompileCache | None = None
) -> NodeResources:
    """Every resource one Envoy instance of ``node`` needs: type URL -> name -> proto.

    Pass the same ``cache`` when compiling many nodes of one model: pieces that do not depend
    on the caller (egress clusters, endpoints, backend virtual hosts) are then built once.
    """
    if cache is None:
        cache = CompileCache(model)
    cache.check(model)
    mesh = model.meshes.get(node.mesh)
    if mesh is None:
        raise CompileError(f"mesh {node.mesh!r} is not defined")
    if node.kind == "virtualGateway":
        return _compile_gateway(model, mesh, node, placement, cache)
    if node.name not in mesh.virtual_nodes:
        raise CompileError(f"virtual node {node.name!r} is not defined in mesh {node.mesh!r}")

    plan = plan_node(mesh, node.name)
    out = _Resources()
    for listener in plan.node.spec.listeners or ():
        cluster = local_app_cluster(mesh, plan.node, listener, placement.app_address)
        out.clusters[cluster.name] = cluster
        if listener.portMapping.protocol != "tcp":
            route = ingress_route_config(plan, listener)
            out.routes[route.name] = route

    extra_vhosts = []
    filter_type = egress_filter(mesh)
    if not placement.explicit:
        out.clusters.update((c.name, c) for c in passthrough_clusters(mesh))
        if filter_type == ALLOW_ALL:
            extra_vhosts.append(to_proto(allow_all_virtual_host(mesh.name), route_components_pb2.VirtualHost))
    http_ports, tcp = _egress_side(model, plan, placement, cache, out, extra_vhosts, per_port=placement.explicit)
    families = listener_families(mesh, plan.node)
    egress = egress_listeners(plan.node, placement, http_ports, tcp, families=families, mesh=mesh.name, egress_filter=filter_type)
    for listener in ingress_listeners(mesh, plan.node, placement) + egress:
        out.listeners[listener.name] = listener
    return out.by_type()


class _Resources:
    """The resources of one node as they are collected, by type and name."""

    def __init__(self) -> None:
        self.clusters: dict[str, Message] = {}
        self.endpoints: dict[str, Message] = {}
        self.listeners: dict[str, Message] = {}
        self.routes: dict[str, Message] = {}

    def by_type(self) -> NodeResources:
        return {
            type_urls.CLUSTER: _sorted(self.clusters),
            type_urls.ENDPOINT: _sorted(self.endpoints),
            type_urls.LISTENER: _sorted(self.listeners),
            type_urls.ROUTE: _sorted(self.routes),
            type_urls.SECRET: {},
        }


def _egress_side(model, plan, placement: Placement, cache: CompileCache, out: _Resources, extra_vhosts, *, per_port: bool):
    """Clusters, endpoints and route configs for calling the plan's backends (sidecar or gateway).

    Returns the HTTP backend ports and the TCP backends by port, for the egress listeners.
    """
    mesh = plan.mesh
    for target in plan.targets:
        client_tls = client_policy_for(plan, target)  # the caller's own policy shapes its copy of the cluster
        target_deps = {("Mesh", mesh.name), ("VirtualNode", mesh.name, target.node)}
        out.clusters[target.cluster_name] = cache.get(
            ("cluster", target, client_tls), lambda: egress_cluster(mesh, target, client_tls=client_tls), target_deps
        )
        if needs_eds(mesh, target):
            out.endpoints[target.cluster_name] = cache.get(
                ("endpoints", target), lambda: load_assignment(model, mesh, target), lambda: {("Mesh", mesh.name)} | node_keys(mesh, target.node)
            )

    def shared_virtual_host(name: str, domains: tuple[str, ...], service_port) -> Message:
        key = ("vhost", mesh.name, service_port.service, service_port.port, name, domains)
        return cache.get(
            key,
            lambda: virtual_host(name, domains, service_port),
            lambda: service_port.dependencies | {("Mesh", mesh.name)},
        )

    http_backends = [sp for sp in plan.backends if sp.protocol != "tcp"]
    main = egress_route_config(
        names.egress_route_config(placement.egress_port),
        http_backends,
        by_port=False,
        extra_virtual_hosts=extra_vhosts,
        build_virtual_host=shared_virtual_host,
    )
    out.routes[main.name] = main
    http_ports = sorted({sp.port for sp in http_backends})
    if per_port:
        for port in http_ports:
            if port == placement.egress_port:
                continue
            config = egress_route_config(
                names.egress_route_config(port),
                [sp for sp in http_backends if sp.port == port],
                by_port=True,
                build_virtual_host=shared_virtual_host,
            )
            out.routes[config.name] = config
    tcp, _conflicts = tcp_backends(plan.backends, http_ports)
    return http_ports, tcp


def _compile_gateway(model, mesh: Mesh, node: NodeRef, placement: Placement, cache: CompileCache) -> NodeResources:
    """A virtual gateway: its listeners and gateway routes, then an egress side like a sidecar's."""
    gateway = mesh.virtual_gateways.get(node.name)
    if gateway is None:
        raise CompileError(f"virtual gateway {node.name!r} is not defined in mesh {node.mesh!r}")
    plan = plan_gateway(mesh, gateway)
    out = _Resources()
    listeners, route_configs, redirect_clusters = gateway_listeners_routes_clusters(mesh, gateway, placement)
    out.clusters.update((c.name, c) for c in redirect_clusters)
    out.routes.update((r.name, r) for r in route_configs)
    header_vhost = header_routed_virtual_host(plan)
    # The gateway's egress side is reached through its own self-redirect cluster only (no
    # iptables): one listener on egress_port, no per-port listeners, no TCP backends.
    _egress_side(model, plan, placement, cache, out, [header_vhost] if header_vhost is not None else [], per_port=False)
    for listener in listeners + egress_listeners(gateway, placement, [], {}, transparent=False):
        out.listeners[listener.name] = listener
    return out.by_type()


def _has_tcp_listeners(mesh) -> bool:
    """Whether a TCP backend can exist in ``mesh``: a router or node listener speaks tcp."""
    resources = list(mesh.virtual_routers.values()) + list(mesh.virtual_nodes.values())
    return any(listener.portMapping.protocol == "tcp"
               for resource in resources for listener in (resource.spec.listeners or ()))


def model_warnings(model: MeshModel) -> list[str]:
    """Valid but probably unintended: what the compiler has to leave out (e.g. two TCP
    backends of one node on the same port). Shown by ``validate`` and logged by ``serve``."""
    warnings = []
    for mesh in model.meshes.values():
        if not _has_tcp_listeners(mesh):
            continue  # no TCP backend anywhere in this mesh: nothing to leave out (and no planning)
        for name in mesh.virtual_nodes:
            plan = plan_node(mesh, name)
            http_ports = sorted({sp.port for sp in plan.backends if sp.protocol != "tcp"})
            _, conflicts = tcp_backends(plan.backends, http_ports)
            warnings.extend(f"VirtualNode {mesh.name}/{name}: {conflict}" for conflict in conflicts)
    return warnings

