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

from types import MappingProxyType
from typing import Any, Mapping

from mesh_model import pacing
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


def listener_ports(resource: Resource | None) -> tuple | None:
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


def _differs(a: Resource | None, b: Resource | None) -> bool:
    if a is b:  # unchanged files give back the very same objects (load.ParseCache)
        return False
    if a is None or b is None:
        return True
    if a.digest and b.digest:
        return a.digest != b.digest  # the loader's content hash of the validated spec
    return a.spec != b.spec


def _changed_in(old: Mapping[Any, Resource], new: Mapping[Any, Resource], changed: set[Key]) -> None:
    """Add the keys of the resources that differ between two name -> resource mappings."""
    for name in pacing.paced(old.keys() | new.keys() if old.keys() != new.keys() else new.keys()):
        a, b = old.get(name), new.get(name)
        if _differs(a, b):
            resource = a or b
            assert resource is not None  # a name of one of the two mappings
            changed.add(resource_key(resource))
            if resource.kind == "VirtualNode" and listener_ports(a) != listener_ports(b):
                changed.add(listener_key(resource.mesh, resource.name))


def _changed_in_nested(old: Mapping[str, Mapping[str, Resource]], new: Mapping[str, Mapping[str, Resource]], changed: set[Key]) -> None:
    for parent in old.keys() | new.keys():
        _changed_in(old.get(parent, _EMPTY), new.get(parent, _EMPTY), changed)


_EMPTY: Mapping[Any, Any] = MappingProxyType({})  # a mesh's mapping when the mesh is not there


def changed_keys(old: MeshModel, new: MeshModel) -> set[Key]:
    """Dependency keys of every resource added, removed or modified between two models.

    Walks the two models side by side, name by name: a resource of an unchanged file is the
    very same object in both (an identity check), so the cost is a dictionary look-up per
    resource, not a comparison; a mesh that is the very same object in both (a store reload
    loads only the meshes that changed) is skipped whole.
    """
    changed: set[Key] = set()
    for name in old.meshes.keys() | new.meshes.keys():
        a, b = old.meshes.get(name), new.meshes.get(name)
        if a is b:
            continue
        if a is None or b is None or _differs(a.resource, b.resource):
            changed.add(("Mesh", name))
        for field in _BY_NAME:
            _changed_in(getattr(a, field, _EMPTY), getattr(b, field, _EMPTY), changed)
        for field in _BY_PARENT:
            _changed_in_nested(getattr(a, field, _EMPTY), getattr(b, field, _EMPTY), changed)
    _changed_in(old.cloud_map, new.cloud_map, changed)
    return changed


# a Mesh's name -> resource mappings, and its parent -> name -> resource ones
_BY_NAME = ("virtual_services", "virtual_routers", "virtual_nodes", "virtual_gateways")
_BY_PARENT = ("routes", "gateway_routes")
