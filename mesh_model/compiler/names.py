"""Envoy resource names, exactly as App Mesh's Envoy configuration named them.

Teams leaving App Mesh keep dashboards and alarms keyed on these names
(``cluster.cds_egress_<mesh>_<node>_<proto>_<port>.upstream_rq_5xx`` and friends), so they
are a compatibility surface: change them only with a migration note.
"""


def ingress_listener(address: str, port: int) -> str:
    return f"lds_ingress_{address}_{port}"


def egress_listener(address: str, port: int) -> str:
    return f"lds_egress_{address}_{port}"


def local_app_cluster(mesh: str, node: str, protocol: str, port: int) -> str:
    return f"cds_ingress_{mesh}_{node}_{protocol}_{port}"


def egress_cluster(mesh: str, target_node: str, protocol: str, port: int) -> str:
    return f"cds_egress_{mesh}_{target_node}_{protocol}_{port}"


def allow_all_cluster(mesh: str) -> str:
    """Mesh egress filter ALLOW_ALL: anything else, to its original destination."""
    return f"cds_egress_{mesh}_mesh-allow-all"


def amazonaws_cluster(mesh: str) -> str:
    """TLS to ``*.amazonaws.com`` (any egress filter), to its original destination."""
    return f"cds_egress_{mesh}_amazonaws"


def ingress_route_config(protocol: str, port: int) -> str:
    return f"rds_ingress_{protocol}_{port}"


def egress_route_config(port: int) -> str:
    return f"rds_egress_http_{port}"


INGRESS_STAT_PREFIX = "ingress"
EGRESS_STAT_PREFIX = "egress"
