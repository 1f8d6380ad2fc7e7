"""ipPreference on the transparent path: with IPv6_PREFERRED the wildcard listeners bind IPv4
and IPv6 (App Mesh's default binds IPv4 only). Real Envoy, static config from `render`."""
from __future__ import annotations

import socket

from mesh_model import load_paths
from mesh_model.render import dump_yaml, static_bootstrap
from mesh_model.compiler import Placement, compile_node, type_urls
from mesh_model.node_id import parse_node_id
from harness.envoy import EnvoyProcess
from harness.processes import free_port
from harness.traffic import http_get
from tests.paths import GOLDEN

RETAIL = GOLDEN / "retail" / "model"


def _free_on_both_families() -> int:
    for _ in range(20):
        port = free_port("127.0.0.1")
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on both families")


def _listeners(name: str, placement: Placement):
    model = load_paths([RETAIL])
    return compile_node(model, parse_node_id(f"mesh/retail/virtualNode/{name}"), placement)


def test_ipv6_preferred_binds_both_families(tmp_path, procs, envoy_binary):
    ingress, egress = _free_on_both_families(), _free_on_both_families()
    placement = Placement(ingress_port=ingress, egress_port=egress)
    resources = _listeners("front", placement)
    config = tmp_path / "front.yaml"
    admin = ("127.0.0.1", free_port())
    config.write_text(dump_yaml(static_bootstrap(parse_node_id("mesh/retail/virtualNode/front"), resources, admin="%s:%d" % admin)))
    envoy = EnvoyProcess.start(procs, config, name="dual-stack", admin=admin)
    envoy.wait_ready()
    # the egress listener routes by Host: an unknown host gets Envoy's 404 on either family
    for url in (f"http://127.0.0.1:{egress}/", f"http://[::1]:{egress}/"):
        response = http_get(url, host_header="nowhere.example")
        assert response.status == 404 and response.headers.get("server") == "envoy", url
    # the ingress listener accepts on IPv6 too (a direct connection matches no filter chain,
    # since its original destination is the listener itself: Envoy closes it and counts it)
    with socket.create_connection(("::1", ingress), timeout=5) as conn:
        conn.settimeout(5)
        assert conn.recv(1) == b""
    counted = {k: v for k, v in envoy.stats().items() if k.endswith("no_filter_chain_match") and str(ingress) in k}
    assert sum(counted.values()) == 1, counted


def test_ipv4_only_binds_ipv4_only():
    listeners = _listeners("catalog-v2", Placement())[type_urls.LISTENER]  # catalog-v2: ipPreference IPv4_ONLY
    assert all(not listener.additional_addresses for listener in listeners.values())
    listeners = _listeners("front", Placement())[type_urls.LISTENER]  # the mesh says IPv6_PREFERRED
    assert all(listener.additional_addresses[0].address.socket_address.address == "::" for listener in listeners.values())
