"""TLS on a virtual gateway, with real Envoy and real certificates.

    HTTPS client (client cert) --mTLS--> gateway listener (STRICT, requires a client cert)
      -> gateway egress --mTLS (backendDefaults client policy)--> api sidecar (STRICT) -> api app

Refusals are checked at the gateway: plaintext, no client certificate, a certificate from
another CA.
"""
from __future__ import annotations

import http.client
import socket
import ssl

import pytest

from tests.certs import CertificateAuthority
from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port
from harness.model_builders import (client_policy_tls, file_certificate, gateway_route, listener, listener_tls, mesh,
                                  service_with_node, virtual_gateway, write_model)


@pytest.fixture(scope="module")
def edge(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    a = module_addresses
    gw_ingress, api_ingress, api_app = a(), a(), a()
    port, gw_port = free_port(api_ingress), free_port(gw_ingress)
    tmp = tmp_path_factory.mktemp("gwtls")
    ca, rogue = CertificateAuthority("edge CA"), CertificateAuthority("rogue CA")
    pki = tmp / "pki"
    c = {
        "ca": ca.write(pki / "ca.pem"),
        "gw": ca.issue(pki / "gw", uris=["spiffe://edge/virtualGateway/gw"], ips=[gw_ingress]),
        "api": ca.issue(pki / "api", uris=["spiffe://edge/virtualNode/api"]),
        "client": ca.issue(pki / "client", uris=["spiffe://partners/acme"]),
        "rogue": rogue.issue(pki / "rogue", uris=["spiffe://partners/acme"]),
    }
    model = tmp / "model" / "edge.yaml"
    ca_trust = file_certificate(c["ca"])
    gw_cert = file_certificate(c["gw"].cert, c["gw"].key)
    write_model(
        model, mesh("edge"),
        virtual_gateway(
            "edge", "gw",
            listeners=[listener(gw_port, tls=listener_tls("STRICT", gw_cert, ca_trust, sans=["spiffe://partners/acme"]))],
            backendDefaults={"clientPolicy": client_policy_tls(gw_cert, ca_trust, sans=["spiffe://edge/virtualNode/api"])}),
        gateway_route("edge", "gw", "api", "api.edge.local", match={"prefix": "/api/"}),
        service_with_node("edge", "api.edge.local", "api", host=api_ingress, listeners=[listener(
            port, tls=listener_tls("STRICT", file_certificate(c["api"].cert, c["api"].key), ca_trust,
                                   sans=["spiffe://edge/virtualGateway/gw"]))]),
    )
    app = AppServer("api", api_app, port).start()
    runner = MeshRunner(module_procs, model.parent, tmp)
    runner.start_control_plane()
    api = runner.start_sidecar("mesh/edge/virtualNode/api", ingress=api_ingress, app=api_app, egress=a())
    gw = runner.start_sidecar("mesh/edge/virtualGateway/gw", ingress=gw_ingress, app=a(), egress=a())
    try:
        yield {"gw": gw, "api": api, "host": gw_ingress, "port": gw_port, "certs": c}
    finally:
        app.stop()


def _context(edge, leaf=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(edge["certs"]["ca"]))
    context.check_hostname = False  # the gateway's certificate names it by IP and SPIFFE id
    if leaf is not None:
        context.load_cert_chain(str(leaf.cert), str(leaf.key))
    return context


def _https_get(edge, path: str, leaf=None) -> tuple[int, str]:
    conn = http.client.HTTPSConnection(edge["host"], edge["port"], context=_context(edge, leaf), timeout=5)
    try:
        conn.request("GET", path, headers={"Host": "edge.example"})
        response = conn.getresponse()
        return response.status, response.getheader("x-app")
    finally:
        conn.close()


def test_mtls_client_reaches_the_service_through_the_gateway_over_mtls(edge):
    for _ in range(5):
        assert _https_get(edge, "/api/items", edge["certs"]["client"]) == (200, "api")
    assert edge["api"].envoy.stat("http.ingress.downstream_rq_2xx") >= 5
    # the gateway's hop to the sidecar was TLS (the sidecar is STRICT and requires the
    # gateway's certificate, so the 200s above already prove it was mutual)
    handshakes = [v for k, v in edge["gw"].envoy.stats().items() if k.startswith("cluster.cds_egress_edge_api_http_") and k.endswith(".ssl.handshake")]
    assert handshakes and handshakes[0] >= 1


def test_gateway_refuses_a_client_without_certificate(edge):
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _https_get(edge, "/api/items")


def test_gateway_refuses_a_certificate_from_another_ca(edge):
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _https_get(edge, "/api/items", edge["certs"]["rogue"])


def test_gateway_refuses_plaintext(edge):
    with socket.create_connection((edge["host"], edge["port"]), timeout=5) as conn:
        conn.sendall(b"GET /api/items HTTP/1.1\r\nHost: edge.example\r\n\r\n")
        conn.settimeout(5)
        try:
            data = conn.recv(1024)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"HTTP/1.1 200")
