"""A virtual gateway in real Envoy: gateway routes match, rewrite and hand over to service routing.

client -> gateway listener (gateway routes: prefix, exact path, header, hostname, rewrites)
       -> the gateway's own egress (the target virtual service's router: routes, weights)
       -> the apps (red, blue, white) — no sidecars behind, to keep the test small.
"""
from __future__ import annotations

import pytest

from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port
from harness.traffic import count_split, http_get, split_violations
from harness.model_builders import (gateway_route, mesh, route, virtual_gateway, virtual_node, virtual_router,
                                  virtual_service, write_model)

GATEWAY = "mesh/edge/virtualGateway/gw"
SHOP, WHITE = "shop.edge.local", "white.edge.local"


@pytest.fixture(scope="module")
def edge(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    a = module_addresses
    hosts = {name: a() for name in ("red", "blue", "white")}
    port = free_port(hosts["red"])
    gw_port = free_port("127.0.0.1")
    apps = [AppServer(name, host, port).start() for name, host in hosts.items()]
    tmp = tmp_path_factory.mktemp("edge")
    model = tmp / "model" / "edge.yaml"
    write_model(
        model, mesh("edge"),
        virtual_gateway("edge", "gw", port=gw_port),
        gateway_route("edge", "gw", "shop", SHOP, match={"prefix": "/shop/"}),
        gateway_route("edge", "gw", "legacy", SHOP, match={"prefix": "/legacy/"}, rewrite={"prefix": {"value": "/blue/"}}),
        gateway_route("edge", "gw", "white-by-header", WHITE, priority=1,
                      match={"prefix": "/", "headers": [{"name": "x-color", "match": {"exact": "white"}}]}),
        gateway_route("edge", "gw", "partners", WHITE, priority=2, match={"hostname": {"suffix": ".partner.example"}},
                      rewrite={"hostname": {"defaultTargetHostname": "DISABLED"}}),
        virtual_service("edge", SHOP, router="shop"),
        virtual_router("edge", "shop", port),
        route("edge", "shop", "blue-only", {"blue": 1}, priority=1, match={"prefix": "/blue"}),
        route("edge", "shop", "canary", {"red": 75, "blue": 25}, priority=2),
        virtual_service("edge", WHITE, node="white"),
        [virtual_node("edge", name, port=port, host=host) for name, host in hosts.items()],
    )
    runner = MeshRunner(module_procs, model.parent, tmp)
    runner.start_control_plane()
    sidecar = runner.start_sidecar(GATEWAY, ingress=a(), app=a(), egress=a())
    try:
        yield sidecar, gw_port, {app.name: app for app in apps}
    finally:
        for app in apps:
            app.stop()


def _url(edge, path: str) -> str:
    sidecar, gw_port, _ = edge
    return sidecar.ingress_url(gw_port, path)


def test_prefix_rewritten_to_root_and_host_to_the_service(edge):
    response = http_get(_url(edge, "/shop/items?id=3"), host_header="www.shop.example")
    assert response.status == 200, response.text
    body = response.json()
    assert body["path"] == "/items?id=3"            # the matched prefix became "/"
    assert body["host"] == "shop.edge.local"         # Host rewritten to the target service
    assert body["app"] in ("red", "blue")


def test_service_router_weights_apply_behind_the_gateway(edge):
    counts = count_split(_url(edge, "/shop/x"), 300)
    problems = split_violations(counts, {"red": 75, "blue": 25})
    assert not problems, f"{dict(counts)}: {problems}"


def test_bare_prefix_without_slash_also_matches(edge):
    response = http_get(_url(edge, "/shop"))
    assert response.status == 200 and response.json()["path"] == "/"


def test_prefix_rewrite_value_reaches_the_service_route(edge):
    """/legacy/x is rewritten to /blue/x, which the service's own route sends to blue."""
    counts = count_split(_url(edge, "/legacy/x"), 20, key=lambda r: (r.headers.get("x-app"), r.json()["path"]))
    assert counts == {("blue", "/blue/x"): 20}, dict(counts)


def test_header_match_by_priority(edge):
    response = http_get(_url(edge, "/shop/x"), headers={"x-color": "white"})
    assert response.status == 200 and response.headers.get("x-app") == "white"


def test_hostname_match_keeps_the_host_when_rewrite_disabled(edge):
    response = http_get(_url(edge, "/anything"), host_header="api.partner.example:8443")
    assert response.status == 200 and response.headers.get("x-app") == "white", response.text
    body = response.json()
    assert body["host"] == "api.partner.example:8443"
    assert "x-app-mesh-virtual-service" not in {k.lower() for k in response.headers.keys()}


def test_unmatched_request_gets_404_from_the_gateway(edge):
    response = http_get(_url(edge, "/nowhere"), host_header="other.example")
    assert response.status == 404
