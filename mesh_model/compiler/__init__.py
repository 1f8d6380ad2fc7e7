"""The compiler: (mesh model, node identity, instance placement) -> Envoy resources.

Pure and deterministic: no I/O, no clocks, no globals; resources come out keyed by type URL
and name, in sorted order, so the same model always yields byte-identical protos and
therefore the same xDS versions across runs, restarts and replicas.
"""
from __future__ import annotations

from typing import Mapping

from google.protobuf.message import Message

from .. import resources
from ..node_id import NodeRef
from . import names, type_urls
from .clusters import egress_cluster, local_app_cluster
from .endpoints import load_assignment, needs_eds
from .listeners import egress_listeners, ingress_listeners
from .placement import Placement
from .plan import plan_node
from .cache import CompileCache
from .passthrough import allow_all_cluster, allow_all_virtual_host
from .tcp import tcp_backends
from .tls import client_policy_for
from .routes import egress_route_config, ingress_route_config, virtual_host

NodeResources = Mapping[str, Mapping[str, Message]]

__all__ = ["CompileCache", "CompileError", "NodeResources", "Placement", "compile_node", "type_urls", "names"]


class CompileError(Exception):
    """The node cannot be compiled (e.g. it is not in the model)."""


def _sorted(items: dict[str, Message]) -> dict[str, Message]:
    return {name: items[name] for name in sorted(items)}


def compile_node(
    model: resources.MeshModel, node: NodeRef, placement: Placement = Placement(), cache: CompileCache | None = None
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
    if node.kind != "virtualNode":
        raise CompileError(f"{node.kind} {node.mesh}/{node.name}: virtual gateways are not supported yet")
    if node.name not in mesh.virtual_nodes:
        raise CompileError(f"virtual node {node.name!r} is not defined in mesh {node.mesh!r}")

    plan = plan_node(mesh, node.name)
    clusters: dict[str, Message] = {}
    endpoints: dict[str, Message] = {}
    routes: dict[str, Message] = {}

    for listener in plan.node.spec.listeners or ():
        cluster = local_app_cluster(mesh, plan.node, listener, placement.app_address)
        clusters[cluster.name] = cluster
        if listener.portMapping.protocol != "tcp":
            route = ingress_route_config(plan, listener)
            routes[route.name] = route

    for target in plan.targets:
        client_tls = client_policy_for(plan, target)  # the caller's own policy shapes its copy of the cluster
        clusters[target.cluster_name] = cache.get(("cluster", target, client_tls), lambda: egress_cluster(mesh, target, client_tls=client_tls))
        if needs_eds(mesh, target):
            endpoints[target.cluster_name] = cache.get(("endpoints", target), lambda: load_assignment(model, mesh, target))

    def shared_virtual_host(name: str, domains: tuple[str, ...], service_port) -> Message:
        key = ("vhost", mesh.name, service_port.service, service_port.port, name, domains)
        return cache.get(key, lambda: virtual_host(name, domains, service_port))

    http_backends = [sp for sp in plan.backends if sp.protocol != "tcp"]
    extra_vhosts = []
    if not placement.explicit and _egress_filter(mesh) == "ALLOW_ALL":
        passthrough = allow_all_cluster(mesh.name)
        clusters[passthrough.name] = passthrough
        extra_vhosts.append(allow_all_virtual_host(mesh.name))
    main = egress_route_config(
        names.egress_route_config(placement.egress_port),
        http_backends,
        by_port=False,
        extra_virtual_hosts=extra_vhosts,
        build_virtual_host=shared_virtual_host,
    )
    routes[main.name] = main
    http_ports = sorted({sp.port for sp in http_backends})
    if placement.explicit:
        for port in http_ports:
            if port == placement.egress_port:
                continue
            config = egress_route_config(
                names.egress_route_config(port),
                [sp for sp in http_backends if sp.port == port],
                by_port=True,
                build_virtual_host=shared_virtual_host,
            )
            routes[config.name] = config

    tcp, _conflicts = tcp_backends(plan.backends, http_ports)
    listeners = {l.name: l for l in ingress_listeners(mesh, plan.node, placement) + egress_listeners(plan.node, placement, http_ports, tcp)}
    return {
        type_urls.CLUSTER: _sorted(clusters),
        type_urls.ENDPOINT: _sorted(endpoints),
        type_urls.LISTENER: _sorted(listeners),
        type_urls.ROUTE: _sorted(routes),
        type_urls.SECRET: {},
    }


def _egress_filter(mesh: resources.Mesh) -> str:
    spec = mesh.spec
    egress = getattr(spec, "egressFilter", None) if spec is not None else None
    return egress.type if egress is not None else "DROP_ALL"
