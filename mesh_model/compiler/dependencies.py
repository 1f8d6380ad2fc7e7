"""Dependency keys: names for the model resources a compiled config was built from, and
which of them a model change touches.

A change to the model recompiles only the nodes whose dependency set it touches (as
Istio's ``ProxyNeedsPush`` does): planning records the keys of what it reads
(``plan.NodePlan.dependencies``), ``changed_keys`` lists the keys of what changed, and a
node is rebuilt when the two meet. Keys are tuples:
``("Mesh", mesh)``, ``("VirtualNode", mesh, name)``, ``("VirtualService", mesh, name)``,
``("VirtualRouter", mesh, name)``, ``("Routes", mesh, router)`` (any route of the router,
including added or removed ones), ``("VirtualGateway", mesh, name)``,
``("GatewayRoutes", mesh, gateway)``, ``("CloudMapService", namespace, service)``.

One key is finer than a resource: ``("VirtualNodeListeners", mesh, name)`` stands for a
node's existence and its listeners' ports and protocols, which is all that routing *to* the
node reads (a route's target is the cluster ``cds_egress_<mesh>_<node>_<protocol>_<port>``).
The rest of the node (health checks, outlier detection, TLS, discovery) reaches its callers
only through their egress cluster and endpoints, which read ``("VirtualNode", ...)``. So an
outlier-detection edit of a popular service's node rebuilds that one shared cluster, and
leaves every caller's routes, listeners and plans as they were.
"""
from __future__ import annotations

from typing import Iterable

from mesh_model.spec.model import Mesh, MeshModel, Resource

Key = tuple


def resource_key(resource: Resource) -> Key:
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


def listener_key(mesh: str, node_name: str) -> Key:
    """What routing to a node reads of it: whether it exists, its listeners' ports and protocols."""
    return ("VirtualNodeListeners", mesh, node_name)


def listener_ports(resource: Resource | None) -> tuple:
    """The part of a virtual node that ``listener_key`` stands for (``None``: no such node)."""
    if resource is None:
        return None
    return tuple((l.portMapping.port, l.portMapping.protocol) for l in resource.spec.listeners or ())


def node_keys(mesh: Mesh, node_name: str) -> set[Key]:
    """What a caller's egress cluster and endpoints for a node read of it: the node, and the
    Cloud Map service its endpoints come from."""
    keys: set[Key] = {("VirtualNode", mesh.name, node_name)}
    node = mesh.virtual_nodes.get(node_name)
    sd = node.spec.serviceDiscovery if node is not None else None
    if sd is not None and sd.awsCloudMap is not None:
        keys.add(("CloudMapService", sd.awsCloudMap.namespaceName, sd.awsCloudMap.serviceName))
    return keys


def _all_resources(model: MeshModel) -> Iterable[Resource]:
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


def _identity(resource: Resource) -> tuple:
    return (resource.kind, resource.mesh, resource.virtualRouter, resource.virtualGateway, resource.namespaceName, resource.name)


def changed_keys(old: MeshModel, new: MeshModel) -> set[Key]:
    """Dependency keys of every resource added, removed or modified between two models."""
    before = {_identity(r): r for r in _all_resources(old)}
    after = {_identity(r): r for r in _all_resources(new)}
    changed: set[Key] = set()
    for ident in before.keys() | after.keys():
        a, b = before.get(ident), after.get(ident)
        if a is b:  # unchanged files give back the very same objects (load.ParseCache)
            continue
        if a is None or b is None:
            differs = True
        elif a.digest and b.digest:
            differs = a.digest != b.digest  # the loader's content hash of the validated spec
        else:
            differs = a.spec != b.spec
        if not differs:
            continue
        resource = a or b
        changed.add(resource_key(resource))
        if resource.kind == "VirtualNode" and listener_ports(a) != listener_ports(b):
            changed.add(listener_key(resource.mesh, resource.name))
    return changed
