"""An authenticated control plane: a stream gets only the config of the node it proved.

`meshplane serve` runs as a real process; clients are real Envoys and scripted gRPC clients
(a rogue one asking for someone else's config must get PERMISSION_DENIED and not one byte).
"""
from __future__ import annotations

import asyncio
import hashlib
import textwrap

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from tests.certs import CertificateAuthority
from mesh_model.render import XdsTls
from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port
from harness.traffic import http_get
from harness.model_builders import mesh, service_with_node, virtual_node, write_model

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
FRONT, API = "mesh/shop/virtualNode/front", "mesh/shop/virtualNode/api"


def write_shop_and_bank(tmp_path, app_host: str, port: int):
    model = tmp_path / "model" / "mesh.yaml"
    write_model(model, mesh("shop"), mesh("bank"),
                service_with_node("shop", "api.shop.local", "api", host=app_host, port=port),
                virtual_node("shop", "front", backends=["api.shop.local"]),
                {**virtual_node("bank", "front"), "spec": {}})
    return model.parent


async def _first_response(channel, node_id: str, metadata=()):
    """Open an ADS stream as ``node_id``; return (responses received, final status code)."""
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    request = discovery_pb2.DiscoveryRequest(node=base_pb2.Node(id=node_id), type_url=CDS)

    async def requests():
        yield request
        await asyncio.sleep(3)

    call = stub.StreamAggregatedResources(requests(), metadata=metadata)
    received = []
    try:
        async for response in call:
            received.append(response)
            break
        return received, grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        return received, exc.code()
    finally:
        call.cancel()


def _ask(target: str, node_id: str, *, metadata=(), credentials=None):
    async def run():
        channel = grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
        async with channel:
            return await _first_response(channel, node_id, metadata)
    return asyncio.run(run())


# ------------------------------------------------------------------ bearer tokens


@pytest.fixture
def token_plane(tmp_path, procs, addresses):
    app_host = addresses()
    port = free_port(app_host)
    tokens = tmp_path / "tokens.yaml"
    digest = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
    tokens.write_text(textwrap.dedent(f"""
        tokens:
          - node: {FRONT}
            sha256: {digest("front-token")}
          - node: {API}
            token: api-token
          - admin: true
            sha256: {digest("admin-token")}
        """))
    runner = MeshRunner(procs, write_shop_and_bank(tmp_path, app_host, port), tmp_path)
    runner.start_control_plane("--xds-token-file", str(tokens))
    runner.app_host, runner.port = app_host, port
    return runner


def _bearer(token: str):
    return (("authorization", f"Bearer {token}"),)


def test_token_grants_its_own_node(token_plane):
    received, code = _ask("%s:%d" % token_plane.xds, FRONT, metadata=_bearer("front-token"))
    assert code == grpc.StatusCode.OK and received and received[0].type_url == CDS


def test_token_for_one_node_cannot_read_another(token_plane):
    target = "%s:%d" % token_plane.xds
    for other in (API, "mesh/bank/virtualNode/front", "arn:aws:appmesh:eu-west-1:111122223333:mesh/shop/virtualNode/api"):
        received, code = _ask(target, other, metadata=_bearer("front-token"))
        assert (received, code) == ([], grpc.StatusCode.PERMISSION_DENIED), other
    assert "may not receive the config of mesh/shop/virtualNode/api" in token_plane.serve_proc.output()


def test_missing_or_wrong_token_is_unauthenticated(token_plane):
    target = "%s:%d" % token_plane.xds
    assert _ask(target, FRONT) == ([], grpc.StatusCode.UNAUTHENTICATED)
    assert _ask(target, FRONT, metadata=_bearer("guess")) == ([], grpc.StatusCode.UNAUTHENTICATED)


def test_csds_needs_an_admin_token(token_plane):
    async def fetch(token):
        async with grpc.aio.insecure_channel("%s:%d" % token_plane.xds) as channel:
            stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            try:
                await stub.FetchClientStatus(csds_pb2.ClientStatusRequest(), metadata=_bearer(token))
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                return exc.code()

    assert asyncio.run(fetch("front-token")) == grpc.StatusCode.PERMISSION_DENIED
    assert asyncio.run(fetch("admin-token")) == grpc.StatusCode.OK


def test_envoy_with_a_token_gets_its_config(token_plane, addresses, tmp_path):
    with AppServer("api", token_plane.app_host, token_plane.port):
        sidecar = token_plane.start_sidecar(FRONT, ingress=addresses(), app=addresses(), egress=addresses(), xds_token="front-token")
        response = http_get(sidecar.egress_url(token_plane.port), host_header=f"api.shop.local:{token_plane.port}")
        assert response.status == 200 and response.headers.get("x-app") == "api"


# ------------------------------------------------------------------ mTLS


@pytest.fixture
def mtls_plane(tmp_path, procs, addresses):
    ca = CertificateAuthority("xds CA")
    ca_file = ca.write(tmp_path / "pki" / "ca.pem")
    server = ca.issue(tmp_path / "pki" / "server", ips=["127.0.0.1"])
    app_host = addresses()
    port = free_port(app_host)
    runner = MeshRunner(procs, write_shop_and_bank(tmp_path, app_host, port), tmp_path)
    runner.start_control_plane(
        "--xds-tls-cert", str(server.cert), "--xds-tls-key", str(server.key), "--xds-client-ca", str(ca_file),
    )
    runner.ca, runner.ca_file, runner.pki = ca, ca_file, tmp_path / "pki"
    runner.app_host, runner.port = app_host, port
    return runner


def _tls_credentials(plane, leaf=None):
    key = leaf.key.read_bytes() if leaf else None
    cert = leaf.cert.read_bytes() if leaf else None
    return grpc.ssl_channel_credentials(plane.ca_file.read_bytes(), key, cert)


def test_envoy_with_a_client_certificate_gets_its_config(mtls_plane, addresses):
    leaf = mtls_plane.ca.issue(mtls_plane.pki / "front", uris=["spiffe://shop/virtualNode/front"])
    tls = XdsTls(ca=str(mtls_plane.ca_file), cert=str(leaf.cert), key=str(leaf.key))
    with AppServer("api", mtls_plane.app_host, mtls_plane.port):
        sidecar = mtls_plane.start_sidecar(FRONT, ingress=addresses(), app=addresses(), egress=addresses(), xds_tls=tls)
        response = http_get(sidecar.egress_url(mtls_plane.port), host_header=f"api.shop.local:{mtls_plane.port}")
        assert response.status == 200 and response.headers.get("x-app") == "api"


def test_certificate_for_one_node_cannot_read_another(mtls_plane):
    leaf = mtls_plane.ca.issue(mtls_plane.pki / "rogue", uris=["spiffe://shop/virtualNode/front"])
    target = "127.0.0.1:%d" % mtls_plane.xds[1]
    assert _ask(target, FRONT, credentials=_tls_credentials(mtls_plane, leaf))[1] == grpc.StatusCode.OK
    for other in (API, "mesh/bank/virtualNode/front"):
        assert _ask(target, other, credentials=_tls_credentials(mtls_plane, leaf)) == ([], grpc.StatusCode.PERMISSION_DENIED)


def test_client_without_certificate_is_refused(mtls_plane):
    target = "127.0.0.1:%d" % mtls_plane.xds[1]
    received, code = _ask(target, FRONT, credentials=_tls_credentials(mtls_plane))
    assert received == [] and code == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    received, code = _ask(target, FRONT)  # plaintext to a TLS port
    assert received == [] and code == grpc.StatusCode.UNAVAILABLE


def test_certificate_naming_no_node_is_unauthenticated(mtls_plane):
    leaf = mtls_plane.ca.issue(mtls_plane.pki / "web", dns=["web.example"])
    target = "127.0.0.1:%d" % mtls_plane.xds[1]
    assert _ask(target, FRONT, credentials=_tls_credentials(mtls_plane, leaf)) == ([], grpc.StatusCode.UNAUTHENTICATED)


# ------------------------------------------------------------------ units


def test_node_id_from_spiffe_uri():
    from xds_server.admission.auth import node_id_from_uri

    assert node_id_from_uri("spiffe://shop/virtualNode/front") == FRONT
    assert node_id_from_uri("spiffe://corp.example/mesh/shop/virtualGateway/gw") == "mesh/shop/virtualGateway/gw"
    assert node_id_from_uri("https://shop/virtualNode/front") is None
    assert node_id_from_uri("spiffe://shop/workload/front") is None


def test_token_file_errors_name_the_entry(tmp_path):
    from xds_server.admission.auth import load_token_file

    bad = tmp_path / "t.yaml"
    bad.write_text("tokens:\n  - node: mesh/shop/virtualNode/front\n  - sha256: abc\n    node: x\n")
    with pytest.raises(ValueError, match=r"tokens\[0\]: needs 'token' or a 64-hex-digit 'sha256'"):
        load_token_file(bad)
    bad.write_text("tokens:\n  - token: t\n")
    with pytest.raises(ValueError, match=r"tokens\[0\]: needs 'node'"):
        load_token_file(bad)


def test_mesh_ca_issues_the_xds_credentials_end_to_end(tmp_path, procs, addresses):
    """No outside PKI: `meshplane ca issue` makes meshplane's server certificate and the node's client certificate."""
    import subprocess
    import sys

    ca_dir = tmp_path / "ca"

    def meshplane(*args):
        subprocess.run([sys.executable, "-m", "xds_server.cli", *args], check=True, capture_output=True, text=True, timeout=60)

    from xds_server.ca.authority import MeshCA

    MeshCA.open(ca_dir)
    meshplane("ca", "issue", "--ca-dir", str(ca_dir), "--server", "--ip", "127.0.0.1", "--out", str(tmp_path / "pki" / "server"))
    meshplane("ca", "issue", "--ca-dir", str(ca_dir), "--node", FRONT, "--lifetime", "1h", "--out", str(tmp_path / "pki" / "front"))
    assert oct((tmp_path / "pki" / "front.key").stat().st_mode & 0o777) == "0o600"
    app_host = addresses()
    port = free_port(app_host)
    runner = MeshRunner(procs, write_shop_and_bank(tmp_path, app_host, port), tmp_path)
    pki = tmp_path / "pki"
    runner.start_control_plane("--xds-tls-cert", str(pki / "server.pem"), "--xds-tls-key", str(pki / "server.key"),
                               "--xds-client-ca", str(pki / "server-ca.pem"))
    tls = XdsTls(ca=str(pki / "front-ca.pem"), cert=str(pki / "front.pem"), key=str(pki / "front.key"))
    with AppServer("api", app_host, port):
        sidecar = runner.start_sidecar(FRONT, ingress=addresses(), app=addresses(), egress=addresses(), xds_tls=tls)
        response = http_get(sidecar.egress_url(port), host_header=f"api.shop.local:{port}")
        assert response.status == 200 and response.headers.get("x-app") == "api"
