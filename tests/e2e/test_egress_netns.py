"""Egress to the world outside the mesh, for real: App Mesh's iptables rules + the sidecar
entrypoint + Envoy as uid 1337 + meshplane, in two network namespaces made by this module.

    POD      192.0.2.2       the task of virtual node "client" (mesh "edge"): iptables.sh start,
                             Envoy (15000/15001), meshplane serve on 127.0.0.1:18100/18101;
                             default route via 192.0.2.1
      |  veth
    OUTSIDE  192.0.2.1       not in the mesh: nobody's sidecar, nobody's virtual node
             198.51.100.10   an HTTPS server on :443 (self-signed; it answers with the SNI it saw)
                             and a plain HTTP app on :80

What the egress listener must do (mesh_model/compiler/passthrough.py, App Mesh's behaviour):
TLS passes to its original destination under ALLOW_ALL and is refused under DROP_ALL, except
SNI ``*.amazonaws.com`` which passes under both (``cds_egress_<mesh>_amazonaws``); plain HTTP
to a non-mesh host passes under ALLOW_ALL and gets 404 under DROP_ALL. The client verifies the
server's own certificate: Envoy did not terminate TLS, the bytes reached the server.
"""
from __future__ import annotations

import atexit
import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from harness.mesh import MeshRunner
from harness.netns import (
    IPTABLES_SH, Netns, create_netns, delete_netns, iptables_env, ip, python_env, require_tools, start_app,
    start_serve, start_sidecar, veth,
)
from harness.processes import ProcessGroup, wait_until
from harness.traffic import http_get
from harness.model_builders import mesh, virtual_node, write_model

CLIENT = "mesh/edge/virtualNode/client"
POD_IP, OUTSIDE_IP, SERVER_IP = "192.0.2.2", "192.0.2.1", "198.51.100.10"
HTTPS_PORT, HTTP_PORT, APP_PORT = 443, 80, 8080
XDS, STATUS = ("127.0.0.1", 18100), ("127.0.0.1", 18101)
ADMIN = ("127.0.0.1", 9911)
SERVER_NAMES = ["outside.example", "something.amazonaws.com"]

ALLOW_ALL_CX = "cluster.cds_egress_edge_mesh-allow-all.upstream_cx_total"
AWS_CX = "cluster.cds_egress_edge_amazonaws.upstream_cx_total"
NO_CHAIN = "listener.0.0.0.0_15001.no_filter_chain_match"

HTTPS_SERVER = textwrap.dedent("""\
    import http.server, ssl, sys
    cert, key, host, port = sys.argv[1:5]
    seen = {}

    def sni(sock, name, ctx):
        seen[id(sock)] = name

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("outside-https sni=%s" % seen.get(id(self.connection))).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = sni
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("https listening", flush=True)
    server.serve_forever()
""")


def _model(egress_filter: str) -> list:
    return [mesh("edge", egressFilter={"type": egress_filter}), virtual_node("edge", "client", port=APP_PORT, host=POD_IP)]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the outside server's names and address."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(n) for n in SERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(SERVER_IP))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "outside.pem", directory / "outside.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Net:
    pass


@pytest.fixture(scope="module")
def net(tmp_path_factory, envoy_binary):
    require_tools("the egress data-path test")
    env = Net()
    suffix = os.getpid()
    env.pod, env.outside = Netns(f"mp-epod-{suffix}"), Netns(f"mp-eout-{suffix}")
    work = tmp_path_factory.mktemp("egress")
    env.shared = Path(tempfile.mkdtemp(prefix="meshplane-egress-"))
    env.shared.chmod(0o755)
    group = ProcessGroup(log_dir=work / "logs")

    def cleanup() -> None:
        group.close()
        for ns in (env.pod, env.outside):
            ns.close()
            delete_netns(ns.name)
        shutil.rmtree(env.shared, ignore_errors=True)

    atexit.register(cleanup)
    try:
        create_netns(env.pod, env.outside)
        veth(env.pod, [f"{POD_IP}/24"], env.outside, [f"{OUTSIDE_IP}/24", f"{SERVER_IP}/32"])
        ip("-n", env.pod.name, "route", "add", "default", "via", OUTSIDE_IP)
        env.pod.run("sh", IPTABLES_SH, "start", env=iptables_env({"APPMESH_APP_PORTS": str(APP_PORT)}))

        env.cert, key = _self_signed(work)
        script = work / "https_server.py"
        script.write_text(HTTPS_SERVER)
        env.https = group.start("outside-https", env.outside.exec_argv(
            sys.executable, script, env.cert, key, SERVER_IP, HTTPS_PORT), env=python_env())
        env.http = start_app(group, env.outside, "outside-http", SERVER_IP, HTTP_PORT)

        env.model_file = work / "model" / "mesh.yaml"
        env.filter = "DROP_ALL"
        write_model(env.model_file, _model(env.filter))
        serve = start_serve(group, env.pod, env.model_file.parent, XDS, STATUS)
        env.envoy = start_sidecar(group, env.pod, env.shared, envoy_binary, xds=XDS, admin=ADMIN,
                                  node_arn=f"arn:aws:appmesh:eu-west-1:111122223333:{CLIENT}")
        env.outside.call(env.http.wait_ready, 15)
        wait_until(lambda: "https listening" in env.https.output(), 15, message="the HTTPS server did not start")
        env.runner = MeshRunner(group, env.model_file.parent, work)
        env.runner.serve_proc, env.runner.http = serve, STATUS
        env.pod.call(env.envoy.wait_ready, 30)
        env.pod.call(env.runner.wait_converged, CLIENT, types=("cds", "lds", "rds"), timeout=20)
        env.group = group
        yield env
    finally:
        cleanup()
        atexit.unregister(cleanup)


def set_egress_filter(net, egress_filter: str) -> None:
    """Edit the mesh's egress filter in the model file; wait until Envoy took the new listener."""
    if net.filter == egress_filter:
        return
    before = net.pod.call(net.runner.versions, CLIENT)
    write_model(net.model_file, _model(egress_filter))
    net.pod.call(net.runner.wait_converged, CLIENT, changed_from=before, types=("lds",), timeout=20)
    net.filter = egress_filter
    # the new listener is active (warmed) and takes the new connections; the old one drains
    net.pod.call(net.envoy.wait_stat, "listener_manager.total_listeners_warming", lambda v: not v, 20)


def stats(net, *names: str) -> dict[str, int]:
    found = net.pod.call(net.envoy.stats, "|".join(f"^{n.replace('.', '[.]')}$" for n in names))
    return {n: found.get(n, 0) for n in names}


def wait_stats(net, expected: dict[str, int], timeout: float = 5) -> None:
    last: dict[str, int] = {}

    def reached() -> bool:
        last.update(stats(net, *expected))
        return last == expected

    try:
        wait_until(reached, timeout)
    except TimeoutError:
        raise AssertionError(f"Envoy counters {last}, expected {expected}") from None


def https_get(cafile: Path, server_hostname: str, ip_address: str = SERVER_IP, port: int = HTTPS_PORT) -> str:
    """GET / over TLS to ``ip_address`` with SNI ``server_hostname``, verifying the server's own
    certificate (so it is the server that answered, not Envoy); the response body."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((ip_address, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 200") or head.startswith("HTTP/1.1 200"), head
    return body


def test_allow_all_passes_tls_and_plain_http_to_their_original_destination(net):
    set_egress_filter(net, "ALLOW_ALL")
    before = stats(net, ALLOW_ALL_CX, AWS_CX, NO_CHAIN)
    body = net.pod.call(https_get, net.cert, "outside.example")
    assert body == "outside-https sni=outside.example"
    # plain HTTP to a host outside the mesh: the HTTP chain's mesh-allow-all virtual host
    response = net.pod.call(http_get, f"http://{SERVER_IP}:{HTTP_PORT}/plain", timeout=10)
    assert response.status == 200 and response.json()["app"] == "outside-http", response.text
    assert "x-envoy-upstream-service-time" in response.headers  # through the HTTP connection manager, as before
    wait_stats(net, {ALLOW_ALL_CX: before[ALLOW_ALL_CX] + 2, AWS_CX: before[AWS_CX], NO_CHAIN: before[NO_CHAIN]})


def test_drop_all_refuses_tls_and_plain_http_outside_the_mesh(net):
    set_egress_filter(net, "DROP_ALL")
    before = stats(net, ALLOW_ALL_CX, AWS_CX, NO_CHAIN)
    served = net.outside.call(lambda: net.http.requests)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        net.pod.call(https_get, net.cert, "outside.example")
    wait_stats(net, {NO_CHAIN: before[NO_CHAIN] + 1, AWS_CX: before[AWS_CX]})
    response = net.pod.call(http_get, f"http://{SERVER_IP}:{HTTP_PORT}/plain", timeout=10)
    assert response.status == 404 and response.headers.get("server") == "envoy", response.text
    assert net.outside.call(lambda: net.http.requests) == served  # nothing reached the outside app


@pytest.mark.parametrize("egress_filter", ["DROP_ALL", "ALLOW_ALL"])
def test_aws_endpoints_pass_by_sni_under_either_egress_filter(net, egress_filter):
    """SNI something.amazonaws.com to the outside server's address: App Mesh's
    cds_egress_<mesh>_amazonaws passthrough, to the address the app dialled, SNI untouched."""
    set_egress_filter(net, egress_filter)
    before = stats(net, ALLOW_ALL_CX, AWS_CX)
    body = net.pod.call(https_get, net.cert, "something.amazonaws.com")
    assert body == "outside-https sni=something.amazonaws.com"
    wait_stats(net, {AWS_CX: before[AWS_CX] + 1, ALLOW_ALL_CX: before[ALLOW_ALL_CX]})
