"""gRPC routes through real Envoy: service/method and metadata matches, weights, gRPC retries.

client (grpcio, h2c) -> sidecar egress (route config of a grpc router listener)
                     -> HTTP/2 upstream clusters -> two gRPC servers (v1, v2)
"""
from __future__ import annotations

import threading
from collections import Counter
from concurrent import futures

import grpc
import pytest

from harness.mesh import MeshRunner
from harness.processes import free_port
from harness.traffic import split_violations
from harness.model_builders import mesh, route, virtual_node, virtual_router, virtual_service, write_model

SERVICE = "color.ColorService"


class ColorServer:
    """A gRPC server answering /color.ColorService/* with its own name; can fail calls with UNAVAILABLE."""

    def __init__(self, name: str, host: str, port: int):
        self.name = name
        self.calls = 0
        self.fail_next = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(self._handle)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"GetColor": handler, "Other": handler})])
        self.server.add_insecure_port(f"{host}:{port}")
        self.server.start()

    def _handle(self, request: bytes, context) -> bytes:
        with self._lock:
            self.calls += 1
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is briefly unavailable")
        return self.name.encode()

    def stop(self) -> None:
        self.server.stop(0)


@pytest.fixture(scope="module")
def grpc_mesh(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    a = module_addresses
    v1_host, v2_host = a(), a()
    port = free_port(v1_host)
    servers = {"v1": ColorServer("v1", v1_host, port), "v2": ColorServer("v2", v2_host, port)}
    tmp = tmp_path_factory.mktemp("grpc")
    model = tmp / "model" / "mesh.yaml"
    write_model(model, mesh("colors"),
                virtual_service("colors", "color.colors.local", router="color-router"),
                virtual_router("colors", "color-router", port, "grpc"),
                route("colors", "color-router", "canary-users", {"v2": 1}, protocol="grpc", priority=1,
                      match={"serviceName": SERVICE, "metadata": [{"name": "x-canary", "match": {"exact": "yes"}}]}),
                route("colors", "color-router", "get-color", {"v1": 75, "v2": 25}, protocol="grpc", priority=2,
                      match={"serviceName": SERVICE, "methodName": "GetColor"},
                      retryPolicy={"maxRetries": 2, "perRetryTimeout": {"unit": "s", "value": 2},
                                   "grpcRetryEvents": ["unavailable"]}),
                virtual_node("colors", "v1", port=port, protocol="grpc", host=v1_host),
                virtual_node("colors", "v2", port=port, protocol="grpc", host=v2_host),
                virtual_node("colors", "client", backends=["color.colors.local"]))
    runner = MeshRunner(module_procs, model.parent, tmp)
    runner.start_control_plane()
    sidecar = runner.start_sidecar("mesh/colors/virtualNode/client", ingress=a(), app=a(), egress=a())
    channel = grpc.insecure_channel(f"{sidecar.placement.egress_address}:{port}",
                                    options=[("grpc.default_authority", f"color.colors.local:{port}")])
    try:
        yield sidecar, port, servers, channel
    finally:
        channel.close()
        for server in servers.values():
            server.stop()


def _call(channel, method: str = "GetColor", metadata=()) -> str:
    return channel.unary_unary(f"/{SERVICE}/{method}")(b"", metadata=metadata, timeout=10).decode()


def test_grpc_method_route_splits_by_weight(grpc_mesh):
    _, _, _, channel = grpc_mesh
    counts = Counter(_call(channel) for _ in range(300))
    problems = split_violations(counts, {"v1": 75, "v2": 25})
    assert not problems, f"{dict(counts)}: {problems}"


def test_grpc_metadata_match_wins_by_priority(grpc_mesh):
    _, _, _, channel = grpc_mesh
    assert Counter(_call(channel, metadata=(("x-canary", "yes"),)) for _ in range(20)) == {"v2": 20}


def test_unmatched_grpc_method_is_unimplemented_by_envoy(grpc_mesh):
    _, _, _, channel = grpc_mesh
    with pytest.raises(grpc.RpcError) as err:
        _call(channel, method="Other")  # no route matches /color.ColorService/Other without x-canary
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_retry_on_unavailable(grpc_mesh):
    sidecar, port, servers, channel = grpc_mesh
    for server in servers.values():
        server.fail_next = 1  # whichever version the route picks fails once
    answer = _call(channel)
    assert answer in ("v1", "v2")
    retried = sum(sidecar.envoy.stat(f"cluster.cds_egress_colors_{v}_grpc_{port}.upstream_rq_retry") or 0 for v in ("v1", "v2"))
    assert retried >= 1
    assert servers[answer].fail_next == 0
