"""Real Envoy with meshplane's mesh CA: STRICT mTLS from `meshplane:identity` / `meshplane:trust`,
certificates renewed and the root rotated while traffic flows.

One mesh for the module (explicit data path, 127.x addresses), ``meshplane serve --ca-dir``
with 8 s certificates (renewed every ~5.3 s)::

    client sidecar --mTLS (http)--> echo sidecar (STRICT, wants spiffe://pki/virtualNode/client) -> echo app
                   --mTLS (tcp)---> db sidecar   (STRICT, same)                                    -> db app

The TCP path opens a new connection, hence a new mTLS handshake between the sidecars, for
every request: continuous traffic over it proves that every renewed certificate and the
rotated root are accepted by the peer at once. Python ``ssl`` clients talk straight to the
echo sidecar for the negative cases (another CA, a mesh-CA certificate of another node).
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.certs import CertificateAuthority
from xds_server.ca.authority import Identity, MeshCA
from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.tcp_apps import TcpNameServer
from harness.traffic import count_split, http_get
from harness.model_builders import (backend, client_policy_tls, listener, listener_tls, mesh, sds, virtual_node,
                                  virtual_service, write_model)

MESH = "pki"
ECHO, DB = "echo.pki.local", "db.pki.local"
LIFETIME = 8  # seconds: renewed at ~5.3 s
CLIENT_ID, ECHO_ID, DB_ID = (f"spiffe://{MESH}/virtualNode/{n}" for n in ("client", "echo", "db"))


def mesh_model(env) -> list[dict]:
    """echo (http) and db (tcp), both STRICT with the mesh CA's identity and trust, wanting the
    client's SAN; client reaches both with the mesh CA's identity, checking each one's SAN."""
    identity, trust = sds("meshplane:identity"), sds("meshplane:trust")
    strict = listener_tls("STRICT", identity, trust, sans=[CLIENT_ID])
    return [
        mesh(MESH),
        virtual_service(MESH, ECHO, node="echo"),
        virtual_service(MESH, DB, node="db"),
        virtual_node(MESH, "echo", listeners=[listener(env.http_port, tls=strict)], host=env.echo_ingress),
        virtual_node(MESH, "db", listeners=[listener(env.tcp_port, "tcp", tls=strict)], host=env.db_ingress),
        virtual_node(MESH, "client", backends=[
            backend(ECHO, clientPolicy=client_policy_tls(identity, trust, sans=[ECHO_ID])),
            backend(DB, clientPolicy=client_policy_tls(identity, trust, sans=[DB_ID])),
        ]),
    ]


class Env:
    pass


@pytest.fixture(scope="module")
def pki(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    env = Env()
    a = module_addresses
    env.echo_ingress, env.echo_app, env.db_ingress, env.db_app = a(), a(), a(), a()
    env.client_egress = a()
    env.http_port = free_port(env.echo_ingress)
    env.tcp_port = free_port(env.db_ingress)
    while env.tcp_port == env.http_port:
        env.tcp_port = free_port(env.db_ingress)
    env.workdir = workdir = tmp_path_factory.mktemp("pki")
    env.ca_dir = workdir / "ca"
    env.echo_app_server = AppServer("echo", env.echo_app, env.http_port).start()
    env.db_app_server = TcpNameServer("db", env.db_app, env.tcp_port)
    model = workdir / "model" / "mesh.yaml"
    write_model(model, mesh_model(env))
    env.runner = MeshRunner(module_procs, model.parent, workdir)
    env.runner.start_control_plane(
        "--ca-dir", str(env.ca_dir), "--cert-lifetime", f"{LIFETIME}s", "--ca-rotation-grace", "30s",
    )
    start = env.runner.start_sidecar
    env.echo = start(f"mesh/{MESH}/virtualNode/echo", ingress=env.echo_ingress, app=env.echo_app, egress=a(), wait_ready=False)
    env.db = start(f"mesh/{MESH}/virtualNode/db", ingress=env.db_ingress, app=env.db_app, egress=a(), wait_ready=False)
    env.client = start(f"mesh/{MESH}/virtualNode/client", ingress=a(), app=a(), egress=env.client_egress, wait_ready=False)
    for sidecar in (env.echo, env.db, env.client):
        sidecar.envoy.wait_ready(timeout=30)
    try:
        yield env
    finally:
        env.echo_app_server.stop()
        env.db_app_server.stop()


# ---------------------------------------------------------------------------------------- helpers


def greeting(env) -> str:
    """One TCP connection through the client sidecar to the db app (a fresh mTLS handshake)."""
    with socket.create_connection((env.client_egress, env.tcp_port), timeout=5) as conn:
        return conn.recv(64).decode().strip() or "empty"


def echo_get(env):
    return http_get(env.client.egress_url(env.http_port), host_header=f"{ECHO}:{env.http_port}", timeout=5)


def listener_stat(sidecar, ingress: str, port: int, name: str) -> int:
    return sidecar.envoy.stat(f"listener.{ingress}_{port}.{name}") or 0


def issue_files(env, name: str, uri: str):
    """A certificate from the running mesh CA (as another process would get one), as PEM files."""
    leaf = MeshCA.load(env.ca_dir).issue(Identity(uri), LIFETIME)  # short: it delays the retirement of its root
    cert, key = env.workdir / f"{name}.pem", env.workdir / f"{name}.key"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    key.chmod(0o600)
    return cert, key


def bundle_file(env, name: str = "bundle.pem", root_id: str | None = None):
    ca = MeshCA.load(env.ca_dir)
    path = env.workdir / name
    if root_id is None:
        path.write_bytes(ca.bundle_pem())
    else:
        path.write_bytes(ca.certificate(root_id).public_bytes(serialization.Encoding.PEM))
    return path


def direct_tls_get(env, cafile, cert=None) -> tuple[int | str, x509.Certificate | None]:
    """GET / straight to the echo sidecar over TLS; (status or error name, the server certificate)."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False  # addressed by IP; the chain is still verified
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection(env.echo_ingress, env.http_port, timeout=5, context=context)
    try:
        conn.connect()
        peer = x509.load_der_x509_certificate(conn.sock.getpeercert(binary_form=True))
        conn.request("GET", "/", headers={"Host": "direct"})
        return conn.getresponse().status, peer
    except (ssl.SSLError, OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, None
    finally:
        conn.close()


def uri_sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)


def envoy_certs(sidecar) -> tuple[set[str], set[str]]:
    """(serials of the certificates it presents, serials of the CAs it trusts) from Envoy's /certs."""
    data = json.loads(sidecar.envoy.admin_get("/certs").body)
    chain, cas = set(), set()
    for entry in data.get("certificates", []):
        chain |= {c["serial_number"] for c in entry.get("cert_chain") or []}
        cas |= {c["serial_number"] for c in entry.get("ca_cert") or []}
    return chain, cas


def ca_show(env) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "xds_server.cli", "ca", "show", "--ca-dir", str(env.ca_dir), "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return {r["id"]: r for r in json.loads(result.stdout)["roots"]}


# ---------------------------------------------------------------------------------------- tests


def test_strict_mtls_with_mesh_ca_certificates(pki):
    handshakes = listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.handshake")
    counts = count_split(pki.client.egress_url(pki.http_port), 10, host_header=f"{ECHO}:{pki.http_port}")
    assert counts == {"echo": 10}, dict(counts)
    assert listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.handshake") > handshakes
    assert listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.no_certificate") == 0
    assert [greeting(pki) for _ in range(5)] == ["db"] * 5
    assert listener_stat(pki.db, pki.db_ingress, pki.tcp_port, "ssl.handshake") >= 5

    # the echo sidecar presents its mesh-CA identity: URI SAN + its service-discovery name (an IP)
    status, server_cert = direct_tls_get(pki, bundle_file(pki), issue_files(pki, "client-ok", CLIENT_ID))
    assert status == 200
    assert uri_sans(server_cert) == [ECHO_ID]
    assert [str(ip) for ip in server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)] == [pki.echo_ingress]
    # short-lived: valid for at most LIFETIME from now (from up to LIFETIME ago: clock-skew backdating)
    assert server_cert.not_valid_after_utc.timestamp() <= time.time() + LIFETIME + 1
    assert (server_cert.not_valid_after_utc - server_cert.not_valid_before_utc).total_seconds() <= 2 * LIFETIME + 1


def test_other_ca_and_other_identity_are_refused(pki):
    rogue = CertificateAuthority("rogue CA").issue(pki.workdir / "rogue", uris=[CLIENT_ID])  # right SAN, wrong CA
    errors = listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.fail_verify_error")
    status, _ = direct_tls_get(pki, bundle_file(pki), (rogue.cert, rogue.key))
    assert status != 200 and isinstance(status, str), status
    assert listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.fail_verify_error") > errors

    bad_san = listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.fail_verify_san")
    status, _ = direct_tls_get(pki, bundle_file(pki), issue_files(pki, "intruder", f"spiffe://{MESH}/virtualNode/intruder"))
    assert status != 200 and isinstance(status, str), status
    assert listener_stat(pki.echo, pki.echo_ingress, pki.http_port, "ssl.fail_verify_san") > bad_san

    status, _ = direct_tls_get(pki, bundle_file(pki), None)
    assert status != 200 and isinstance(status, str), status


def test_private_keys_are_redacted_everywhere(pki):
    dump = http_get(pki.runner.http_url(f"/config_dump?node=mesh/{MESH}/virtualNode/client"), timeout=5)
    assert dump.status == 200
    text = dump.body.decode()
    assert "meshplane:identity" in text and "[redacted]" in text
    assert "PRIVATE KEY" not in text and "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS" not in text  # nor base64 of it
    status = http_get(pki.runner.http_url("/status"), timeout=5).body.decode()
    assert "PRIVATE" not in status and "meshCA" in status
    assert "PRIVATE KEY" not in pki.runner.serve_proc.tail(10_000)


def test_rotation_under_continuous_traffic(pki):
    failures: list[str] = []
    done = {"tcp": 0, "http": 0}
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                answer = greeting(pki)
                if answer != "db":
                    failures.append(f"tcp: {answer!r}")
                done["tcp"] += 1
                response = echo_get(pki)
                if response.status != 200 or response.headers.get("x-app") != "echo":
                    failures.append(f"http: {response.status} {response.text[:200]}")
                done["http"] += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                failures.append(f"{type(exc).__name__}: {exc}")

    handshakes = listener_stat(pki.db, pki.db_ingress, pki.tcp_port, "ssl.handshake")
    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    echo_serials: list[str] = []
    client_serials: list[str] = []

    def observe():
        for sidecar, seen in ((pki.echo, echo_serials), (pki.client, client_serials)):
            chain, cas = envoy_certs(sidecar)
            for serial in sorted(chain - set(seen)):
                seen.append(serial)
        return cas

    try:
        # 1. leaf renewals: at least two new certificates on both sides of the connection
        start = set(envoy_certs(pki.echo)[0])
        wait_until(lambda: observe() is not None and len(set(echo_serials) - start) >= 2 and len(client_serials) >= 3,
                   4 * LIFETIME, interval=0.2, message="two certificate renewals")
        # 2. root rotation: trusted first, then signing, then the old root goes away
        old_root = MeshCA.load(pki.ca_dir).active.id
        rotate = subprocess.run([sys.executable, "-m", "xds_server.cli", "ca", "rotate", "--ca-dir", str(pki.ca_dir)],
                                capture_output=True, text=True, timeout=30)
        assert rotate.returncode == 0, rotate.stderr
        new_root = rotate.stdout.strip()
        wait_until(lambda: len(observe()) == 2, 10, interval=0.1, message="Envoy trusts both roots")
        # switched because every node ACKed the new bundle, well before the 30 s grace
        wait_until(lambda: ca_show(pki)[new_root]["state"] == "active", 10, interval=0.2, message="new root signs")
        only_new = bundle_file(pki, "new-root.pem", new_root)
        client_cert = issue_files(pki, "client-new", CLIENT_ID)  # signed by the new root now
        status, cert = wait_until(lambda: (r := direct_tls_get(pki, only_new, client_cert))[0] == 200 and r, 10,
                                  interval=0.2, message="echo presents a leaf of the new root")
        assert uri_sans(cert) == [ECHO_ID]
        # the old root is not dropped the moment the new one signs: it stays trusted while
        # leaves it signed live (on a loaded machine it may have finished retiring already)
        assert ca_show(pki)[old_root]["state"] in ("retiring", "retired")
        wait_until(lambda: ca_show(pki)[old_root]["state"] == "retired", 3 * LIFETIME, interval=0.3, message="old root retired")
        wait_until(lambda: len(observe()) == 1, 10, interval=0.1, message="Envoy trusts only the new root")
        time.sleep(1)  # traffic keeps flowing on the new root alone
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not failures, f"{len(failures)} failed of {done}: {failures[:5]}"
    assert done["tcp"] >= 50 and done["http"] >= 50, done
    assert len(echo_serials) >= 4 and len(client_serials) >= 4, (echo_serials, client_serials)
    # every TCP request was its own handshake between the sidecars, across all the rotations
    wait_until(lambda: listener_stat(pki.db, pki.db_ingress, pki.tcp_port, "ssl.handshake") - handshakes >= done["tcp"],
               5, message="a handshake per TCP request")
    assert listener_stat(pki.db, pki.db_ingress, pki.tcp_port, "ssl.fail_verify_error") == 0
