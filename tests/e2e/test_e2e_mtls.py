"""Real Envoy, real certificates: listener TLS and client policy TLS end to end.

One mesh for the module (explicit data path, 127.x addresses), certificates made in the test
by ``tests/certs.py`` and referenced by absolute path from the model:

    client sidecar --mTLS--> echo sidecar (STRICT, trusts the mesh CA, wants SAN spiffe://sec/client) -> echo app
                   --mTLS--> perm sidecar (PERMISSIVE, trusts the mesh CA)                             -> perm app
    badsan sidecar --TLS---> echo sidecar  (expects the wrong server SAN: refused by the caller)

Python ``ssl``/``socket`` clients talk straight to the server sidecars' ingress for the
negative cases (plaintext, a certificate from another CA, a client SAN the server refuses).
"""
from __future__ import annotations

import http.client
import ssl

import pytest

from tests.certs import CertificateAuthority
from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port
from harness.traffic import count_split, http_get
from harness.model_builders import (backend, client_policy_tls, file_certificate, listener, listener_tls, mesh,
                                  virtual_node, virtual_service, write_model)

MESH = "sec"
ECHO, PERM = "echo.sec.local", "perm.sec.local"


def mesh_model(env) -> list[dict]:
    """The certificates of ``env.certs`` (files) on every listener and client policy."""
    c = env.certs
    ca = file_certificate(c["ca"])
    client_cert = file_certificate(c["client"].cert, c["client"].key)
    return [
        mesh(MESH),
        virtual_service(MESH, ECHO, node="echo"),
        virtual_service(MESH, PERM, node="perm"),
        virtual_node(MESH, "echo", host=env.echo_ingress, listeners=[listener(env.port, tls=listener_tls(
            "STRICT", file_certificate(c["echo"].cert, c["echo"].key), ca, sans=["spiffe://sec/client"]))]),
        virtual_node(MESH, "perm", host=env.perm_ingress, listeners=[listener(env.port, tls=listener_tls(
            "PERMISSIVE", file_certificate(c["perm"].cert, c["perm"].key), ca))]),
        virtual_node(MESH, "client",
                     backendDefaults={"clientPolicy": client_policy_tls(client_cert, ca, sans=["spiffe://sec/echo"])},
                     backends=[ECHO, backend(PERM, clientPolicy=client_policy_tls(client_cert, ca, sans=["spiffe://sec/perm"]))]),
        virtual_node(MESH, "badsan",  # expects a server SAN that echo does not have
                     backendDefaults={"clientPolicy": client_policy_tls(client_cert, ca, sans=["spiffe://sec/not-echo"])},
                     backends=[ECHO]),
    ]


class Env:
    pass


@pytest.fixture(scope="module")
def sec(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    env = Env()
    a = module_addresses
    env.echo_ingress, env.echo_app = a(), a()
    env.perm_ingress, env.perm_app = a(), a()
    env.client_egress, env.badsan_egress = a(), a()
    env.port = free_port(env.echo_ingress)
    workdir = tmp_path_factory.mktemp("sec")

    certs = workdir / "certs"
    ca, rogue = CertificateAuthority("mesh CA"), CertificateAuthority("rogue CA")
    env.certs = {
        "ca": ca.write(certs / "ca.pem"),
        "echo": ca.issue(certs / "echo", uris=["spiffe://sec/echo"], dns=[ECHO]),
        "perm": ca.issue(certs / "perm", uris=["spiffe://sec/perm"], dns=[PERM]),
        "client": ca.issue(certs / "client", uris=["spiffe://sec/client"]),
        "intruder": ca.issue(certs / "intruder", uris=["spiffe://sec/intruder"]),  # right CA, wrong SAN
        "rogue": rogue.issue(certs / "rogue", uris=["spiffe://sec/client"]),  # right SAN, wrong CA
    }

    env.apps = {
        "echo": AppServer("echo", env.echo_app, env.port).start(),
        "perm": AppServer("perm", env.perm_app, env.port).start(),
    }
    model = workdir / "model" / "mesh.yaml"
    write_model(model, mesh_model(env))
    env.runner = MeshRunner(module_procs, model.parent, workdir)
    env.runner.start_control_plane()
    start = env.runner.start_sidecar
    sidecars = {
        "echo": start(f"mesh/{MESH}/virtualNode/echo", ingress=env.echo_ingress, app=env.echo_app, egress=a(), wait_ready=False),
        "perm": start(f"mesh/{MESH}/virtualNode/perm", ingress=env.perm_ingress, app=env.perm_app, egress=a(), wait_ready=False),
        "client": start(f"mesh/{MESH}/virtualNode/client", ingress=a(), app=a(), egress=env.client_egress, wait_ready=False),
        "badsan": start(f"mesh/{MESH}/virtualNode/badsan", ingress=a(), app=a(), egress=env.badsan_egress, wait_ready=False),
    }
    for sidecar in sidecars.values():
        sidecar.envoy.wait_ready(timeout=30)
    env.echo, env.perm, env.client, env.badsan = (sidecars[k] for k in ("echo", "perm", "client", "badsan"))
    env.egress_cluster = f"cluster.cds_egress_{MESH}_echo_http_{env.port}"
    try:
        yield env
    finally:
        for app in env.apps.values():
            app.stop()


def listener_stat(env, ingress: str, name: str) -> int:
    """A per-listener stat of a server sidecar's ingress (``listener.<addr>_<port>.<name>``)."""
    sidecar = env.echo if ingress == env.echo_ingress else env.perm
    return sidecar.envoy.stat(f"listener.{ingress}_{env.port}.{name}") or 0


def direct_tls_get(env, ingress: str, cert=None) -> int | str:
    """GET / straight to a server sidecar over TLS (verifying it against the mesh CA).

    Returns the HTTP status, or the name of the error when the connection was refused.
    """
    context = ssl.create_default_context(cafile=str(env.certs["ca"]))
    context.check_hostname = False  # the sidecar is addressed by IP; the chain is still verified
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    conn = http.client.HTTPSConnection(ingress, env.port, timeout=5, context=context)
    try:
        conn.request("GET", "/", headers={"Host": "direct"})
        return conn.getresponse().status
    except (ssl.SSLError, OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def direct_plaintext_get(env, ingress: str) -> int | str:
    try:
        return http_get(f"http://{ingress}:{env.port}/", timeout=5).status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__


def test_strict_mtls_between_sidecars(sec):
    handshakes = listener_stat(sec, sec.echo_ingress, "ssl.handshake")
    counts = count_split(sec.client.egress_url(sec.port), 20, host_header=f"{ECHO}:{sec.port}")
    assert counts == {"echo": 20}, dict(counts)
    # the traffic really was TLS on both ends, with a client certificate
    assert listener_stat(sec, sec.echo_ingress, "ssl.handshake") > handshakes
    assert listener_stat(sec, sec.echo_ingress, "ssl.no_certificate") == 0
    assert (sec.client.envoy.stat(f"{sec.egress_cluster}.ssl.handshake") or 0) >= 1


def test_strict_refuses_plaintext(sec):
    result = direct_plaintext_get(sec, sec.echo_ingress)
    assert result != 200, "a plaintext client reached a STRICT listener"
    assert isinstance(result, str), result  # the connection is dropped, no HTTP answer at all


def test_strict_refuses_other_ca_missing_cert_and_wrong_san(sec):
    # control: a certificate from the mesh CA with the SAN the listener wants is accepted
    assert direct_tls_get(sec, sec.echo_ingress, sec.certs["client"]) == 200

    errors = listener_stat(sec, sec.echo_ingress, "ssl.fail_verify_error")
    result = direct_tls_get(sec, sec.echo_ingress, sec.certs["rogue"])
    assert result != 200 and isinstance(result, str), result
    assert listener_stat(sec, sec.echo_ingress, "ssl.fail_verify_error") > errors

    no_cert = listener_stat(sec, sec.echo_ingress, "ssl.fail_verify_no_cert")
    result = direct_tls_get(sec, sec.echo_ingress, None)
    assert result != 200 and isinstance(result, str), result
    assert listener_stat(sec, sec.echo_ingress, "ssl.fail_verify_no_cert") > no_cert

    bad_san = listener_stat(sec, sec.echo_ingress, "ssl.fail_verify_san")
    result = direct_tls_get(sec, sec.echo_ingress, sec.certs["intruder"])
    assert result != 200 and isinstance(result, str), result
    assert listener_stat(sec, sec.echo_ingress, "ssl.fail_verify_san") > bad_san


def test_server_san_mismatch_is_refused_by_the_client_sidecar(sec):
    cluster = sec.egress_cluster
    before = sec.badsan.envoy.stat(f"{cluster}.ssl.fail_verify_san") or 0
    served = sec.apps["echo"].requests
    response = http_get(sec.badsan.egress_url(sec.port), host_header=f"{ECHO}:{sec.port}")
    assert response.status == 503, (response.status, response.text)
    assert sec.apps["echo"].requests == served, "the request reached the app over an unverified connection"
    assert (sec.badsan.envoy.stat(f"{cluster}.ssl.fail_verify_san") or 0) > before


def test_permissive_accepts_tls_sidecar_and_plaintext(sec):
    handshakes = listener_stat(sec, sec.perm_ingress, "ssl.handshake")
    counts = count_split(sec.client.egress_url(sec.port), 10, host_header=f"{PERM}:{sec.port}")
    assert counts == {"perm": 10}, dict(counts)
    assert listener_stat(sec, sec.perm_ingress, "ssl.handshake") > handshakes  # the sidecar spoke TLS

    handshakes = listener_stat(sec, sec.perm_ingress, "ssl.handshake")
    response = http_get(f"http://{sec.perm_ingress}:{sec.port}/", timeout=5)
    assert response.status == 200 and response.headers.get("x-app") == "perm", (response.status, response.text)
    assert listener_stat(sec, sec.perm_ingress, "ssl.handshake") == handshakes  # served by the plaintext chain


def test_permissive_still_validates_tls_clients(sec):
    """PERMISSIVE with validation: plaintext passes, but a TLS client must still present a trusted certificate."""
    assert direct_tls_get(sec, sec.perm_ingress, sec.certs["client"]) == 200
    result = direct_tls_get(sec, sec.perm_ingress, sec.certs["rogue"])
    assert result != 200 and isinstance(result, str), result
