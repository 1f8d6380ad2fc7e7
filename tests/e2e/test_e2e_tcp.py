"""TCP routes through real Envoy: connections split by weight over a tcp_proxy."""
from __future__ import annotations

import socket
import socketserver
import textwrap
import threading
from collections import Counter

import pytest

from tests.harness.mesh import MeshRunner
from tests.harness.processes import free_port, wait_until
from tests.harness.traffic import split_violations


class _NameHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(self.server.app_name.encode() + b"\n")
        self.request.recv(64)  # hold the connection until the client is done


class TcpNameServer(socketserver.ThreadingTCPServer):
    """A TCP app that greets each connection with its name (a server-first protocol, like a database)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, host: str, port: int):
        super().__init__((host, port), _NameHandler)
        self.app_name = name
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


def _greeting(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5) as conn:
        data = conn.recv(64)
    return data.decode().strip() or "empty"


@pytest.fixture
def db_mesh(procs, addresses, tmp_path, envoy_binary):
    primary_host, replica_host, client_egress = addresses(), addresses(), addresses()
    port = free_port(primary_host)
    servers = [TcpNameServer("primary", primary_host, port), TcpNameServer("replica", replica_host, port)]
    model = tmp_path / "model" / "mesh.yaml"
    model.parent.mkdir()
    model.write_text(textwrap.dedent(f"""
        kind: Mesh
        name: data
        ---
        kind: VirtualService
        mesh: data
        name: db.data.local
        spec: {{provider: {{virtualRouter: {{virtualRouterName: db-router}}}}}}
        ---
        kind: VirtualRouter
        mesh: data
        name: db-router
        spec: {{listeners: [{{portMapping: {{port: {port}, protocol: tcp}}}}]}}
        ---
        kind: Route
        mesh: data
        virtualRouter: db-router
        name: split
        spec:
          tcpRoute:
            action:
              weightedTargets:
                - {{virtualNode: db-primary, weight: 75}}
                - {{virtualNode: db-replica, weight: 25}}
        ---
        kind: VirtualNode
        mesh: data
        name: db-primary
        spec:
          listeners: [{{portMapping: {{port: {port}, protocol: tcp}}}}]
          serviceDiscovery: {{dns: {{hostname: {primary_host}}}}}
        ---
        kind: VirtualNode
        mesh: data
        name: db-replica
        spec:
          listeners: [{{portMapping: {{port: {port}, protocol: tcp}}}}]
          serviceDiscovery: {{dns: {{hostname: {replica_host}}}}}
        ---
        kind: VirtualNode
        mesh: data
        name: app
        spec:
          backends: [{{virtualService: {{virtualServiceName: db.data.local}}}}]
        """))
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
    wait_until(lambda: _greeting(host, port) in ("primary", "replica"), 10, message="TCP listener not serving")
    n = 300
    counts = Counter(_greeting(host, port) for _ in range(n))
    problems = split_violations(counts, {"primary": 75, "replica": 25})
    assert not problems, f"{dict(counts)}: {problems}"
    assert sidecar.envoy.stat(f"cluster.cds_egress_data_db-primary_tcp_{port}.upstream_cx_total") >= counts["primary"]
