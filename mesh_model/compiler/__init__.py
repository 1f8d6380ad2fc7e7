"""The compiler: (mesh model, node identity, instance placement) -> Envoy resources.

Import ``compile_node``, ``Placement``, ``CompileCache``, ``model_warnings`` and, for
incremental rebuilds, ``node_dependencies``/``changed_keys`` from here.

Pure and deterministic: no I/O, no clocks, no globals; resources come out keyed by type URL
and name, in sorted order, so the same model always yields byte-identical protos and
therefore the same xDS versions across runs, restarts and replicas.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from envoy.config.route.v3 import route_components_pb2
from google.protobuf.message import Message

from mesh_model import pacing
from mesh_model.spec.envoy_rules import access_log_format_problem
from mesh_model.spec.model import Mesh, MeshModel
from mesh_model.node_id import NodeRef
from mesh_model.compiler import names, type_urls
from mesh_model.compiler.built import ROUTE_CONFIGURATION, Built, route_configuration_bytes
from mesh_model.compiler.compile_cache import CompileCache
from mesh_model.compiler.clusters import egress_cluster, local_app_cluster
from mesh_model.compiler.common import to_proto
from mesh_model.compiler.dependencies import changed_keys, node_keys
from mesh_model.compiler.endpoints import load_assignment, needs_eds
from mesh_model.compiler.gateway import gateway_listeners_routes_clusters, header_routed_virtual_host
from mesh_model.compiler.listeners import egress_listeners, ingress_listeners, listener_families, listener_proto
from mesh_model.compiler.passthrough import ALLOW_ALL, allow_all_virtual_host, egress_filter, passthrough_clusters
from mesh_model.compiler.placement import Placement
from mesh_model.compiler.plan import NodePlan, Target, node_dependencies, plan_gateway, plan_node, plan_service
from mesh_model.compiler.routes import egress_virtual_hosts, ingress_route_config, virtual_host
from mesh_model.compiler.tcp import tcp_backends
from mesh_model.compiler.tls import client_policies

NodeResources = Mapping[str, Mapping[str, Message]]

__all__ = ["Built", "CompileCache", "CompileError", "CompiledNode", "changed_keys", "compile_node", "compile_node_built",
           "mesh_warnings", "model_warnings", "names", "node_dependencies", "NodeResources", "Placement", "type_urls"]


class CompileError(Exception):
    """The node cannot be compiled (e.g. it is not in the model)."""


@dataclass(frozen=True)
class CompiledNode:
    """One node's resources (type URL -> name -> ``Built``, sorted by name) and every
    dependency key its compilation read (``dependencies.py``), piece by piece."""

    resources: Mapping[str, Mapping[str, Built]]
    dependencies: frozenset


def compile_node(
    model: MeshModel, node: NodeRef, placement: Placement = Placement(), cache: CompileCache | None = None
) -> NodeResources:
    """Every resource one Envoy instance of ``node`` needs: type URL -> name -> proto.

    Pass the same ``cache`` when compiling many nodes of one model: pieces that do not depend
    on the caller (egress clusters, endpoints, backend virtual hosts) are then built once.
    """
    compiled = compile_node_built(model, node, placement, cache)
    return {t: {name: built.message for name, built in items.items()} for t, items in compiled.resources.items()}


def compile_node_built(
    model: MeshModel, node: NodeRef, placement: Placement = Placement(), cache: CompileCache | None = None
) -> CompiledNode:
    """``compile_node`` for the server: resources as ``Built`` (serialized and hashed once,
    shared by every snapshot holding them) and the dependencies the compilation read.

    Every piece goes through ``cache``, keyed by what it is built from, so compiling a node
    again after a model change (with ``cache.successor``) rebuilds only the pieces whose
    inputs changed and reassembles the rest.
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

    out = _Resources(cache, set(), placement)
    plan = _cached_plan(cache, mesh, ("plan", mesh.name, node.name), out.reads,
                        lambda plan_service_cached: plan_node(mesh, node.name, plan_service_cached))
    own = {("Mesh", mesh.name), ("VirtualNode", mesh.name, node.name)}  # what the node's own pieces read

    def own_pieces():
        clusters, routes = [], []
        for listener in plan.node.spec.listeners or ():
            clusters.append(_named(local_app_cluster(mesh, plan.node, listener, placement.app_address)))
            if listener.portMapping.protocol != "tcp":
                routes.append(_named(ingress_route_config(plan, listener)))
        return clusters, routes

    clusters, routes = out.cache.get(("own", mesh.name, node.name, out.placement_key), own_pieces, own, into=out.reads, placement=placement)
    out.clusters.update(clusters)
    out.routes.update(routes)
    if not placement.explicit:
        out.add(out.clusters, ("passthrough-clusters", mesh.name),
                lambda: [_named(c) for c in passthrough_clusters(mesh)], {("Mesh", mesh.name)}, shared=True)

    def extra_virtual_hosts() -> list[Built]:
        if placement.explicit or egress_filter(mesh) != ALLOW_ALL:
            return []
        return [cache.get(("allow-all-vhost", mesh.name),
                          lambda: Built(to_proto(allow_all_virtual_host(mesh.name), route_components_pb2.VirtualHost)),
                          {("Mesh", mesh.name)})]

    _egress_side(model, plan, out, extra_virtual_hosts, per_port=placement.explicit)

    def listeners():
        http_ports = sorted({sp.port for sp in plan.backends if sp.protocol != "tcp"})
        tcp, _conflicts = tcp_backends(plan.backends, http_ports)
        families = listener_families(mesh, plan.node)
        egress = egress_listeners(plan.node, placement, http_ports, tcp, families=families, mesh=mesh.name,
                                  egress_filter=egress_filter(mesh), build=shared_listener)
        return ingress_listeners(mesh, plan.node, placement, build=shared_listener) + egress

    def shared_listener(body: dict) -> tuple[str, Built]:
        # most sidecars' listeners are identical (no node name in them): built once for all
        # keyed by the body's pickle: equal pickles are equal bodies (a miss only costs a build),
        # and pickling is several times faster than JSON encoding here
        return cache.by_content(("listener", pickle.dumps(body, protocol=5)), lambda: _named(listener_proto(body)))

    out.add(out.listeners, ("listeners", mesh.name, node.name), listeners, plan.dependencies)
    return out.compiled()


def _named(message: Message) -> tuple[str, Built]:
    return message.name, Built(message)


def _cached_plan(cache: CompileCache, mesh: Mesh, key: tuple, reads: set, build) -> NodePlan:
    """A node's (or gateway's) plan from the cache, its services' plans too; a plan carried
    over from an earlier model is pointed at this model's mesh and node objects (its
    dependencies say their content is the same, but the objects belong to the old model)."""
    def plan_service_cached(m: Mesh, service: str):
        return cache.get(("service-plan", m.name, service), lambda: plan_service(m, service), lambda planned: planned[1])

    plan = cache.get(key, lambda: build(plan_service_cached), lambda planned: planned.dependencies, into=reads)
    if plan.mesh is not mesh:
        current = mesh.virtual_gateways[plan.node.name] if key[0] == "gateway-plan" else mesh.virtual_nodes[plan.node.name]
        plan = replace(plan, mesh=mesh, node=current)
        cache.replace_value(key, plan)  # once per model, not once per compilation
    return plan


class _Resources:
    """The resources of one node as they are collected, by type and name, and what they read."""

    def __init__(self, cache: CompileCache, reads: set, placement: Placement) -> None:
        self.cache = cache
        self.reads = reads
        self.placement = placement
        self.placement_key = placement.key  # a string: hashed once, not field by field on every look-up
        self.clusters: dict[str, Built] = {}
        self.endpoints: dict[str, Built] = {}
        self.listeners: dict[str, Built] = {}
        self.routes: dict[str, Built] = {}

    def add(self, into: dict[str, Built], key: tuple, build, depends_on, *, shared: bool = False) -> None:
        """Add the (name, Built) pieces of ``key``, from the cache or ``build()``. A piece that
        is not ``shared`` is the node's own at this placement (cached per placement)."""
        if shared:
            pieces = self.cache.get(key, build, depends_on, into=self.reads)
        else:
            pieces = self.cache.get(key + (self.placement_key,), build, depends_on, into=self.reads, placement=self.placement)
        into.update(pieces)

    def compiled(self) -> CompiledNode:
        return CompiledNode(
            resources={
                type_urls.CLUSTER: _sorted(self.clusters),
                type_urls.ENDPOINT: _sorted(self.endpoints),
                type_urls.LISTENER: _sorted(self.listeners),
                type_urls.ROUTE: _sorted(self.routes),
                type_urls.SECRET: {},
            },
            dependencies=frozenset(self.reads),
        )


def _sorted(items: dict[str, Built]) -> dict[str, Built]:
    return {name: items[name] for name in sorted(items)}


def _egress_side(model, plan: NodePlan, out: _Resources, extra_virtual_hosts: Callable[[], list[Built]], *, per_port: bool) -> None:
    """Clusters, endpoints and route configs for calling the plan's backends (sidecar or gateway).

    This is the hot path of a change to a popular service: every caller comes through here.
    What a caller's egress side is made of (which targets, with which of its client policies)
    is cached per caller and only changes with the caller's plan; each target's cluster and
    endpoints are cached per (target, client policy) and shared by all callers.
    """
    mesh, cache, reads = plan.mesh, out.cache, out.reads

    def egress_keys() -> tuple[tuple[str, tuple], ...]:
        """The (cluster name, cache key) of each target."""
        # client_policies: the caller's own policy shapes its copy of the cluster. Plain
        # tuples of strings and numbers: hashed in C on every look-up of the hot path.
        policy_for = client_policies(plan)
        return tuple((target.cluster_name, ("egress", target.mesh, target.node, target.port, target.protocol,
                                            policy_for(target))) for target in plan.targets)

    def egress_pieces(target, client_tls) -> tuple[Built, Built | None]:
        cluster = Built(egress_cluster(mesh, target, client_tls=client_tls))
        endpoints = None
        if needs_eds(mesh, target):  # the same for every client policy
            endpoints = cache.get(("endpoints", target), lambda: Built(load_assignment(model, mesh, target)),
                                  lambda _built: {("Mesh", mesh.name)} | node_keys(mesh, target.node))
        return cluster, endpoints

    keys = cache.get(("egress-keys", mesh.name, plan.node.kind, plan.node.name), egress_keys, plan.dependencies, into=reads)
    clusters, endpoints = out.clusters, out.endpoints
    for cluster_name, key in keys:
        entry = cache.lookup(key)
        if entry is None:
            pieces = cache.get(key, lambda: egress_pieces(Target(*key[1:5]), key[5]),
                               lambda _pieces: {("Mesh", mesh.name)} | node_keys(mesh, key[2]), into=reads)
        else:  # the hot path: no closures, one look-up
            pieces, read = entry
            reads |= read  # what the target's pieces read now (its discovery may have changed)
        clusters[cluster_name] = pieces[0]
        if pieces[1] is not None:
            endpoints[cluster_name] = pieces[1]

    def shared_virtual_host(name: str, domains: tuple[str, ...], service_port) -> Built:
        return cache.get(
            ("vhost", mesh.name, service_port.service, service_port.port, name, domains),
            lambda: Built(virtual_host(name, domains, service_port)),
            lambda _built: service_port.dependencies | {("Mesh", mesh.name)},  # on a miss only
        )

    def route_configs() -> list[tuple[str, Built]]:
        http_backends = [sp for sp in plan.backends if sp.protocol != "tcp"]
        egress_port = out.placement.egress_port
        configs = [(names.egress_route_config(egress_port),
                    egress_virtual_hosts(http_backends, by_port=False, build_virtual_host=shared_virtual_host) + extra_virtual_hosts())]
        if per_port:
            for port in sorted({sp.port for sp in http_backends} - {egress_port}):
                same_port = [sp for sp in http_backends if sp.port == port]
                configs.append((names.egress_route_config(port),
                                egress_virtual_hosts(same_port, by_port=True, build_virtual_host=shared_virtual_host)))
        # a node's route configuration is its shared virtual hosts' bytes, concatenated
        return [(name, Built.from_bytes(ROUTE_CONFIGURATION, route_configuration_bytes(name, [v.data for v in vhosts])))
                for name, vhosts in configs]

    # the extra virtual hosts (allow-all, a gateway's header routing) read the mesh and the plan only
    out.add(out.routes, ("egress-routes", mesh.name, plan.node.kind, plan.node.name), route_configs,
            plan.dependencies | {("Mesh", mesh.name)})


def _compile_gateway(model, mesh: Mesh, node: NodeRef, placement: Placement, cache: CompileCache) -> CompiledNode:
    """A virtual gateway: its listeners and gateway routes, then an egress side like a sidecar's."""
    gateway = mesh.virtual_gateways.get(node.name)
    if gateway is None:
        raise CompileError(f"virtual gateway {node.name!r} is not defined in mesh {node.mesh!r}")
    out = _Resources(cache, set(), placement)
    plan = _cached_plan(cache, mesh, ("gateway-plan", mesh.name, node.name), out.reads,
                        lambda plan_service_cached: plan_gateway(mesh, gateway, plan_service_cached))

    def gateway_side():
        listeners, route_configs, redirect_clusters = gateway_listeners_routes_clusters(mesh, gateway, placement)
        # The gateway's egress side is reached through its own self-redirect cluster only (no
        # iptables): one listener on egress_port, no per-port listeners, no TCP backends.
        listeners = listeners + egress_listeners(gateway, placement, [], {}, transparent=False)
        return {"clusters": [_named(c) for c in redirect_clusters], "routes": [_named(r) for r in route_configs],
                "listeners": [_named(l) for l in listeners]}

    own = cache.get(("gateway", mesh.name, node.name, out.placement_key), gateway_side, plan.dependencies,
                    into=out.reads, placement=placement)
    out.clusters.update(own["clusters"])
    out.routes.update(own["routes"])
    out.listeners.update(own["listeners"])
    header_vhost = cache.get(("gateway-header-vhost", mesh.name, node.name),
                             lambda: _optional_built(header_routed_virtual_host(plan)), plan.dependencies, into=out.reads)
    _egress_side(model, plan, out, lambda: [header_vhost] if header_vhost is not None else [], per_port=False)
    return out.compiled()


def _optional_built(message: Message | None) -> Built | None:
    return None if message is None else Built(message)


def _has_tcp_listeners(mesh, cache: CompileCache) -> bool:
    """Whether a TCP backend can exist in ``mesh``: a router or node listener speaks tcp."""
    def speaks_tcp(resource) -> bool:
        return any(listener.portMapping.protocol == "tcp" for listener in resource.spec.listeners or ())

    for kind, resources in (("VirtualRouter", mesh.virtual_routers), ("VirtualNode", mesh.virtual_nodes)):
        for name, resource in resources.items():
            if cache.get(("speaks-tcp", kind, mesh.name, name), lambda: speaks_tcp(resource), {(kind, mesh.name, name)}):
                return True
    return False


def missing_backends(mesh: Mesh, node_name: str) -> list[str]:
    """The backends of a virtual node that name no virtual service of its mesh (valid, as on
    App Mesh: the service may be created later; until then the node has no route to it)."""
    node = mesh.virtual_nodes[node_name]
    return [b.virtualService.virtualServiceName for b in node.spec.backends or ()
            if b.virtualService is not None and b.virtualService.virtualServiceName not in mesh.virtual_services]


def _dangling_backends(mesh: Mesh, cache: CompileCache) -> list[str]:
    """A warning per backend that names no virtual service (yet)."""
    def reads(node) -> set:  # on a miss only: a reload looks up each node's entry, nothing more
        return {("VirtualNode", mesh.name, node.name)} | {("VirtualService", mesh.name, b.virtualService.virtualServiceName)
                                                          for b in node.spec.backends if b.virtualService is not None}

    warnings: list[str] = []
    for name, node in pacing.paced(mesh.virtual_nodes.items()):
        if not node.spec.backends:
            continue
        found = cache.get(("missing-backends", mesh.name, name), lambda: missing_backends(mesh, name), lambda _found: reads(node))
        warnings.extend(f"VirtualNode {mesh.name}/{name}: backend virtual service '{service}' does not exist in mesh "
                        f"'{mesh.name}' (yet): requests to it find no route until it is created" for service in found)
    return warnings


def _log_format_warnings(mesh: Mesh) -> list[str]:
    """A warning per access log format part Envoy does not know (App Mesh's API took any
    format; the compiler writes such parts to the log literally: ``servable_log_format``)."""
    warnings = []
    for kind, resources in (("VirtualNode", mesh.virtual_nodes), ("VirtualGateway", mesh.virtual_gateways)):
        for name, resource in resources.items():
            logging = resource.spec.logging
            file = None if logging is None or logging.accessLog is None else logging.accessLog.file
            if file is None or file.format is None:
                continue
            texts = [("text", file.format.text)] if file.format.text is not None else []
            texts += [(f"json[{i}].value", item.value) for i, item in enumerate(file.format.json or ())]
            for where, text in texts:
                problem = access_log_format_problem(text)
                if problem is not None:
                    warnings.append(f"{kind} {mesh.name}/{name}: spec.logging.accessLog.file.format.{where}: {problem}; "
                                    "Envoy would refuse the format, so meshplane writes that part to the log as literal text")
    return warnings


def model_warnings(model: MeshModel, cache: CompileCache | None = None) -> list[str]:
    """Valid but probably unintended: what the compiler has to leave out (e.g. two TCP
    backends of one node on the same port). Shown by ``validate`` and logged by ``serve``.
    With the model's ``cache`` (as ``serve`` passes it), a reload re-checks only what changed."""
    if cache is None:
        cache = CompileCache(model)
    cache.check(model)
    return [warning for mesh in model.meshes.values() for warning in mesh_warnings(mesh, cache)]


def mesh_warnings(mesh: Mesh, cache: CompileCache) -> list[str]:
    """``model_warnings`` of one mesh (a function of that mesh alone: ``serve`` keeps them
    for every mesh a reload did not change). ``cache``: the compile cache of the model the
    mesh belongs to."""
    warnings = _dangling_backends(mesh, cache) + _log_format_warnings(mesh)
    if not _has_tcp_listeners(mesh, cache):
        return warnings  # no TCP backend anywhere in this mesh: nothing to leave out (and no planning)
    for name in mesh.virtual_nodes:
        # the node's plan as compilation caches it: planned once for both, and once per change
        plan = _cached_plan(cache, mesh, ("plan", mesh.name, name), set(),
                            lambda plan_service_cached: plan_node(mesh, name, plan_service_cached))

        def conflicts() -> list[str]:
            http_ports = sorted({sp.port for sp in plan.backends if sp.protocol != "tcp"})
            return tcp_backends(plan.backends, http_ports)[1]

        found = cache.get(("tcp-conflicts", mesh.name, name), conflicts, plan.dependencies)
        warnings.extend(f"VirtualNode {mesh.name}/{name}: {conflict}" for conflict in found)
    return warnings
