"""Envoy names -> App Mesh words (virtual nodes, services, routers, routes, priorities).

Built from the model when one is given; without it, from the compiler's naming scheme alone.
"""
from __future__ import annotations

import re
from typing import Optional

from mesh_model.compiler import names

UNSET_PRIORITY = 1001  # as the compiler orders routes without a priority: after 0..1000
_EGRESS = re.compile(r"^cds_egress_(?P<mesh>.+?)_(?P<node>.+)_(?P<protocol>http|http2|grpc|tcp)_(?P<port>[0-9]+)$")


class AppMeshNames:
    def __init__(self, model=None, mesh: Optional[str] = None):
        self.model = model
        self.mesh_name = mesh
        self.clusters: dict[str, tuple[str, int, str]] = {}
        self.local: set[str] = set()
        meshes = model.meshes.values() if model is not None else ()
        for m in meshes:
            for node in m.virtual_nodes.values():
                for listener in node.spec.listeners or ():
                    pm = listener.portMapping
                    self.clusters[names.egress_cluster(m.name, node.name, pm.protocol, pm.port)] = (node.name, pm.port, pm.protocol)
                    self.local.add(names.local_app_cluster(m.name, node.name, pm.protocol, pm.port))

    def for_mesh(self, mesh: Optional[str]) -> "AppMeshNames":
        """The same names, about another mesh: the model-wide maps are shared, not rebuilt
        (a reload that summarises many nodes builds them once per model)."""
        other = object.__new__(AppMeshNames)
        other.__dict__.update(self.__dict__)
        other.mesh_name = mesh
        return other

    @property
    def mesh(self):
        if self.model is None or self.mesh_name is None:
            return None
        return self.model.meshes.get(self.mesh_name)

    def cluster(self, name: str) -> tuple[str, Optional[str], Optional[int], Optional[str]]:
        """(kind, virtual node, port, protocol) of a cluster name."""
        if name in self.clusters:
            node, port, protocol = self.clusters[name]
            return "virtual-node", node, port, protocol
        if name in self.local or name.startswith("cds_ingress_") and "_self_redirect_" not in name:
            return "local-app", None, None, None
        if "_self_redirect_" in name:
            return "gateway-egress", None, None, None
        if name.endswith("_mesh-allow-all"):
            return "passthrough", None, None, None
        m = _EGRESS.match(name)
        if m:
            return "virtual-node", m["node"], int(m["port"]), m["protocol"]
        return "unknown", None, None, None

    def router_of(self, service: str) -> Optional[str]:
        mesh = self.mesh
        vs = mesh.virtual_services.get(service) if mesh is not None else None
        provider = vs.spec.provider if vs is not None else None
        if provider is not None and provider.virtualRouter is not None:
            return provider.virtualRouter.virtualRouterName
        return None

    def provider_node(self, service: str) -> Optional[str]:
        mesh = self.mesh
        vs = mesh.virtual_services.get(service) if mesh is not None else None
        provider = vs.spec.provider if vs is not None else None
        if provider is not None and provider.virtualNode is not None:
            return provider.virtualNode.virtualNodeName
        return None

    def route_priority(self, router: Optional[str], route: str) -> Optional[int]:
        mesh = self.mesh
        if mesh is None or router is None:
            return None
        found = mesh.routes.get(router, {}).get(route)
        if found is None:
            return None
        return UNSET_PRIORITY if found.spec.priority is None else found.spec.priority

    def route_kind(self, router: Optional[str], route: str) -> Optional[str]:
        mesh = self.mesh
        found = mesh.routes.get(router, {}).get(route) if mesh is not None and router else None
        if found is None:
            return None
        for kind in ("httpRoute", "http2Route", "grpcRoute", "tcpRoute"):
            if getattr(found.spec, kind, None) is not None:
                return kind
        return None

    def gateway_route_priority(self, gateway: str, route: str) -> Optional[int]:
        mesh = self.mesh
        found = mesh.gateway_routes.get(gateway, {}).get(route) if mesh is not None else None
        if found is None:
            return None
        return UNSET_PRIORITY if found.spec.priority is None else found.spec.priority

    def service_ports(self, service: str) -> list[tuple[int, str]]:
        mesh = self.mesh
        vs = mesh.virtual_services.get(service) if mesh is not None else None
        provider = vs.spec.provider if vs is not None else None
        if provider is None:
            return []
        if provider.virtualRouter is not None:
            router = mesh.virtual_routers.get(provider.virtualRouter.virtualRouterName)
            listeners = router.spec.listeners if router is not None else ()
        else:
            node = mesh.virtual_nodes.get(provider.virtualNode.virtualNodeName)
            listeners = node.spec.listeners if node is not None else ()
        return [(l.portMapping.port, l.portMapping.protocol) for l in listeners or ()]

    def tcp_service(self, node_name: str, port: Optional[int]) -> Optional[str]:
        """The TCP backend virtual service of ``node_name`` on ``port``."""
        mesh = self.mesh
        node = mesh.virtual_nodes.get(node_name) if mesh is not None else None
        for backend in (node.spec.backends or ()) if node is not None else ():
            if backend.virtualService is None:
                continue
            service = backend.virtualService.virtualServiceName
            if (port, "tcp") in self.service_ports(service):
                return service
        return None
