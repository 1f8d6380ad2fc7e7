"""Which model resources a node's compiled config depends on.

A change to the model recompiles only the nodes whose dependency set it touches
(DESIGN.md step 3; Istio's ``ProxyNeedsPush``). Keys are tuples naming resources:
``("Mesh", mesh)``, ``("VirtualNode", mesh, name)``, ``("VirtualService", mesh, name)``,
``("VirtualRouter", mesh, name)``, ``("Routes", mesh, router)`` (any route of the router,
including added or removed ones), ``("VirtualGateway", mesh, name)``,
``("GatewayRoutes", mesh, gateway)``, ``("CloudMapService", namespace, service)``.
"""
from __future__ import annotations

from typing import Iterable

from mesh_model.spec import model as resources
from mesh_model.spec.route_types import route_of

Key = tuple


def resource_key(resource: resources.Resource) -> Key:
    """The dependency key a changed resource invalidates."""
    if resource.kind == "Mesh":
        return ("Mesh", resource.name)
    if resource.kind == "Route":
        return ("Routes", resource.mesh, resource.virtualRouter)
    if resource.kind == "GatewayRoute":
        return ("GatewayRoutes", resource.mesh, resource.virtualGateway)
    if resource.kind == "CloudMapService":
        return ("CloudMapService", resource.namespaceName, resource.name)
    return (resource.kind, resource.mesh, resource.name)


def _all_resources(model: resources.MeshModel) -> Iterable[resources.Resource]:
    for mesh in model.meshes.values():
        yield mesh.resource
        yield from mesh.virtual_services.values()
        yield from mesh.virtual_routers.values()
        for routes in mesh.routes.values():
            yield from routes.values()
        yield from mesh.virtual_nodes.values()
        yield from mesh.virtual_gateways.values()
        for routes in mesh.gateway_routes.values():
            yield from routes.values()
    yield from model.cloud_map.values()


def _identity(resource: resources.Resource) -> tuple:
    return (resource.kind, resource.mesh, resource.virtualRouter, resource.virtualGateway, resource.namespaceName, resource.name)


def changed_keys(old: resources.MeshModel, new: resources.MeshModel) -> set[Key]:
    """Dependency keys of every resource added, removed or modified between two models."""
    before = {_identity(r): r for r in _all_resources(old)}
    after = {_identity(r): r for r in _all_resources(new)}
    changed: set[Key] = set()
    for ident in before.keys() | after.keys():
        a, b = before.get(ident), after.get(ident)
        if a is b:  # unchanged files give back the very same objects (loader.ParseCache)
            continue
        if a is None or b is None:
            changed.add(resource_key(a or b))
        elif a.digest and b.digest:
            if a.digest != b.digest:  # the loader's content hash of the validated spec
                changed.add(resource_key(a))
        elif a.spec != b.spec:
            changed.add(resource_key(a or b))
    return changed


def node_dependencies(model: resources.MeshModel, mesh_name: str, node_name: str, kind: str = "virtualNode") -> frozenset[Key]:
    """Everything ``compile_node`` reads for this node or gateway (a superset is fine, a subset is a bug)."""
    mesh = model.meshes.get(mesh_name)
    if kind == "virtualGateway":
        deps: set[Key] = {("Mesh", mesh_name), ("VirtualGateway", mesh_name, node_name), ("GatewayRoutes", mesh_name, node_name)}
        routes = mesh.gateway_routes.get(node_name, {}) if mesh else {}
        services = set()
        for route in routes.values():
            _, body = route_of(route.spec)
            services.add(body.action.target.virtualService.virtualServiceName)
        return frozenset(deps | service_dependencies(mesh, services))
    deps = {("Mesh", mesh_name), ("VirtualNode", mesh_name, node_name)}
    node = mesh.virtual_nodes.get(node_name) if mesh else None
    if node is None:
        return frozenset(deps)
    services = {b.virtualService.virtualServiceName for b in node.spec.backends or () if b.virtualService is not None}
    return frozenset(deps | service_dependencies(mesh, services))


def endpoint_dependencies(mesh: resources.Mesh, node_name: str) -> set[Key]:
    """The Cloud Map service a node's endpoints come from, if any."""
    node = mesh.virtual_nodes.get(node_name)
    sd = node.spec.serviceDiscovery if node is not None else None
    if sd is not None and sd.awsCloudMap is not None:
        return {("CloudMapService", sd.awsCloudMap.namespaceName, sd.awsCloudMap.serviceName)}
    return set()


def service_dependencies(mesh: resources.Mesh | None, services) -> set[Key]:
    """What calling these virtual services reads: providers, routers, routes, target nodes, Cloud Map."""
    deps: set[Key] = set()
    if mesh is None:
        return deps
    mesh_name = mesh.name
    for service_name in services:
        deps.add(("VirtualService", mesh_name, service_name))
        service = mesh.virtual_services.get(service_name)
        provider = service.spec.provider if service is not None else None
        targets: set[str] = set()
        if provider is not None and provider.virtualRouter is not None:
            router = provider.virtualRouter.virtualRouterName
            deps.add(("VirtualRouter", mesh_name, router))
            deps.add(("Routes", mesh_name, router))
            for route in mesh.routes.get(router, {}).values():
                _, body = route_of(route.spec)
                targets.update(t.virtualNode for t in body.action.weightedTargets)
        elif provider is not None and provider.virtualNode is not None:
            targets.add(provider.virtualNode.virtualNodeName)
        for target in targets:
            deps.add(("VirtualNode", mesh_name, target))
            deps |= endpoint_dependencies(mesh, target)
    return deps
