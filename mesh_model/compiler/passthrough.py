"""Mesh egress filter ALLOW_ALL: traffic to hosts outside the mesh goes to its original destination.

Only on the transparent data path, where iptables preserved the original destination; on the
explicit path the destination *is* the egress listener, so there is nothing to pass through to.
"""
from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from mesh_model.compiler.common import EGRESS_CONNECT_TIMEOUT, default_thresholds, to_proto


def allow_all_cluster_name(mesh: str) -> str:
    return f"cds_egress_{mesh}_mesh-allow-all"


def allow_all_cluster(mesh: str) -> cluster_pb2.Cluster:
    return to_proto(
        {
            "name": allow_all_cluster_name(mesh),
            "type": "ORIGINAL_DST",
            "lbPolicy": "CLUSTER_PROVIDED",
            "connectTimeout": EGRESS_CONNECT_TIMEOUT,
            "circuitBreakers": {"thresholds": [default_thresholds()]},
        },
        cluster_pb2.Cluster,
    )


def allow_all_virtual_host(mesh: str) -> dict[str, Any]:
    return {
        "name": "mesh-allow-all",
        "domains": ["*"],
        "routes": [{"name": "allow-all", "match": {"prefix": "/"}, "route": {"cluster": allow_all_cluster_name(mesh), "timeout": "0s"}}],
    }
