"""TCP routes through real Envoy: connections split by weight over a tcp_proxy."""
from __future__ import annotations

from collections import Counter

import pytest

from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.tcp_apps import TcpNameServer, tcp_greeting
from harness.traffic import split_violations
from harness.model_builders import mesh, route, virtual_node, virtual_router, virtual_service, write_model


@pytest.fixture
def db_mesh(procs, addresses, tmp_path, envoy_binary):
    primary_host, replica_host, client_egress = addresses(), addresses(), addresses()
    port = free_port(primary_host)
    servers = [TcpNameServer("primary", primary_host, port), TcpNameServer("replica", replica_host, port)]
    model = tmp_path / "model" / "mesh.yaml"
    write_model(model, mesh("data"),
                virtual_service("data", "db.data.local", router="db-router"),
                virtual_router("data", "db-router", port, "tcp"),
                route("data", "db-router", "split", {"db-primary": 75, "db-replica": 25}, protocol="tcp"),
                virtual_node("data", "db-primary", port=port, protocol="tcp", host=primary_host),
                virtual_node("data", "db-replica", port=port, protocol="tcp", host=replica_host),
                virtual_node("data", "app", backends=["db.data.local"]))
    runner = MeshRunner(procs, model.parent, tmp_path)
    runner.start_control_plane()
    sidecar = runner.start_sidecar("mesh/data/virtualNode/app", ingress=addresses(), app=addresses(), egress=client_egress)
    try:
        yield sidecar, port
    finally:
        for server in servers:
            server.stop()


def test_tcp_connections_split_by_route_weight(db_mesh):
    sidecar, port = db_mesh
    host = sidecar.placement.egress_address
    wait_until(lambda: tcp_greeting(host, port) in ("primary", "replica"), 10, message="TCP listener not serving")
    n = 300
    counts = Counter(tcp_greeting(host, port) for _ in range(n))
    problems = split_violations(counts, {"primary": 75, "replica": 25})
    assert not problems, f"{dict(counts)}: {problems}"
    assert sidecar.envoy.stat(f"cluster.cds_egress_data_db-primary_tcp_{port}.upstream_cx_total") >= counts["primary"]
