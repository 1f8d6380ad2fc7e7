"""ClusterLoadAssignments for virtual nodes discovered through (meshplane's stand-in for) Cloud Map.

An EDS cluster only leaves warming when its ClusterLoadAssignment arrives, so one is emitted
for every EDS cluster even when no instance matches (an empty assignment: the cluster is
ready and has no hosts, instead of blocking the listeners that wait for it).
"""
from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2

from mesh_model.spec.model import Mesh, MeshModel
from mesh_model.compiler.common import socket_address, to_proto
from mesh_model.compiler.plan import Target


def _matches(instance, wanted: dict[str, str]) -> bool:
    """App Mesh keeps only instances carrying *all* of the node's attributes."""
    return all(instance.attributes.get(k) == v for k, v in wanted.items())


def load_assignment(model: MeshModel, mesh: Mesh, target: Target) -> endpoint_pb2.ClusterLoadAssignment:
    cloud_map = mesh.virtual_nodes[target.node].spec.serviceDiscovery.awsCloudMap
    wanted = {a.key: a.value for a in cloud_map.attributes or ()}
    service = model.cloud_map.get((cloud_map.namespaceName, cloud_map.serviceName))
    endpoints = set()
    if service is not None:
        for instance in service.spec.instances:
            if _matches(instance, wanted):
                endpoints.add((instance.address, instance.port or target.port))
    lb_endpoints = [{"endpoint": {"address": socket_address(address, port)}} for address, port in sorted(endpoints)]
    body = {"clusterName": target.cluster_name, "endpoints": [{"lbEndpoints": lb_endpoints}] if lb_endpoints else []}
    return to_proto(body, endpoint_pb2.ClusterLoadAssignment)


def needs_eds(mesh: Mesh, target: Target) -> bool:
    return mesh.virtual_nodes[target.node].spec.serviceDiscovery.awsCloudMap is not None
