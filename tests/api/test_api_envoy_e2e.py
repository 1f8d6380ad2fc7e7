"""Real Envoy end to end, the mesh made with boto3 only: ``meshplane serve --store sqlite:///...``,
an Envoy bootstrapped for the front node, apps behind two virtual nodes; ``update_route`` moves
the weights and the Envoy follows (split checked with a binomial tolerance)."""
from __future__ import annotations

from tests.api.conftest import start_serve
from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.traffic import count_split, split_violations

SERVICE = "catalog.shop.local"
FRONT = "mesh/shop/virtualNode/front"


def route(weights: dict[str, int]) -> dict:
    return {"httpRoute": {"match": {"prefix": "/"}, "action": {
        "weightedTargets": [{"virtualNode": n, "weight": w} for n, w in weights.items()]}}}


def test_envoy_follows_update_route(procs, free_port, tmp_path, addresses, envoy_binary):
    front_ingress, front_app, front_egress, v1_host, v2_host = (addresses() for _ in range(5))
    port = free_port(front_ingress)
    apps = [AppServer("v1", v1_host, port).start(), AppServer("v2", v2_host, port).start()]
    try:
        api = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/meshplane.db")
        c = api.client()
        c.create_mesh(meshName="shop")
        listener = [{"portMapping": {"port": port, "protocol": "http"}}]
        for name, host in (("v1", v1_host), ("v2", v2_host)):
            c.create_virtual_node(meshName="shop", virtualNodeName=name,
                                  spec={"listeners": listener, "serviceDiscovery": {"dns": {"hostname": host}}})
        c.create_virtual_router(meshName="shop", virtualRouterName="catalog", spec={"listeners": listener})
        c.create_route(meshName="shop", virtualRouterName="catalog", routeName="main", spec=route({"v1": 1, "v2": 1}))
        c.create_virtual_service(meshName="shop", virtualServiceName=SERVICE,
                                 spec={"provider": {"virtualRouter": {"virtualRouterName": "catalog"}}})
        c.create_virtual_node(meshName="shop", virtualNodeName="front", spec={
            "listeners": listener, "serviceDiscovery": {"dns": {"hostname": front_ingress}},
            "backends": [{"virtualService": {"virtualServiceName": SERVICE}}]})

        runner = MeshRunner(procs, tmp_path / "unused", tmp_path / "work")
        host, xds_port = api.xds.rsplit(":", 1)
        http_host, http_port = api.http.rsplit(":", 1)
        runner.xds, runner.http = (host, int(xds_port)), (http_host, int(http_port))
        front = runner.start_sidecar(FRONT, ingress=front_ingress, app=front_app, egress=front_egress)
        url, host_header = front.egress_url(port), f"{SERVICE}:{port}"
        n = 300
        counts = count_split(url, n, host_header=host_header)
        assert not split_violations(counts, {"v1": 1, "v2": 1}), counts

        for weights in ({"v1": 9, "v2": 1}, {"v1": 0, "v2": 1}):
            before = runner.wait_converged(FRONT)
            updated = c.update_route(meshName="shop", virtualRouterName="catalog", routeName="main", spec=route(weights))
            runner.wait_converged(FRONT, changed_from=before)
            counts = count_split(url, n, host_header=host_header)
            expected = {k: v for k, v in weights.items() if v}
            assert not split_violations(counts, expected), (weights, counts)
        assert updated["route"]["metadata"]["version"] == 3
    finally:
        for app in apps:
            app.stop()
