"""The `meshplane` command line contract: validate, render, bootstrap, serve (exit codes, output)."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml

from harness.apps import start_app
from harness.envoy import EnvoyProcess, validate_config
from harness.processes import free_port, wait_until
from harness.traffic import http_get
from tests.paths import GOLDEN
from harness.model_builders import mesh, service_with_node, virtual_node, write_model

GOLDEN_RETAIL = GOLDEN / "retail" / "model"


def meshplane(*args: str, check_rc: int | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "xds_server.cli", *args], capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert result.returncode == check_rc, f"rc={result.returncode}\nstdout:{result.stdout}\nstderr:{result.stderr}"
    return result


def test_validate_valid_model_exits_0():
    result = meshplane("validate", str(GOLDEN_RETAIL), check_rc=0)
    assert "mesh retail" in result.stderr


def test_validate_reports_every_error_on_stderr_and_exits_1(tmp_path):
    (tmp_path / "a.yaml").write_text("kind: Mesh\nname: m\n---\nkind: VirtualNode\nmesh: m\nname: n\nspec:\n  listeners: [{portMapping: {port: 99999, protocol: http}}]\n  serviceDiscovery: {dns: {hostname: h}}\n")
    (tmp_path / "b.yaml").write_text("kind: VirtualService\nmesh: m\nname: s\nspec:\n  provider: {virtualRouter: {virtualRouterName: nope}}\n")
    (tmp_path / "c.yaml").write_text("kind: Mesh\nname: [unclosed\n")
    result = meshplane("validate", str(tmp_path), check_rc=1)
    lines = result.stderr.strip().splitlines()
    assert any(f"{tmp_path / 'a.yaml'}: VirtualNode m/n: spec.listeners[0].portMapping.port: must be <= 65535" == l for l in lines), lines
    assert any("c.yaml" in l and "line 2" in l for l in lines), lines
    assert result.stdout == ""
    assert "nothing was changed" in lines[-1]


def _two_node_model(tmp_path: Path, app_host: str, port: int) -> Path:
    model = tmp_path / "model.yaml"
    write_model(model, mesh("m"), service_with_node("m", "api.m.local", "api", host=app_host, port=port),
                virtual_node("m", "client", backends=["api.m.local"]))
    return model


def test_render_static_bootstrap_runs_in_envoy(tmp_path, procs, addresses, envoy_binary):
    """`render` output is a complete config: Envoy runs it with no control plane and routes a request."""
    app_host, egress = addresses(), addresses()
    port = free_port(app_host)
    model = _two_node_model(tmp_path, app_host, port)
    out = tmp_path / "client.yaml"
    admin = ("127.0.0.1", free_port())
    meshplane("render", str(model), "--node", "mesh/m/virtualNode/client", "--egress-address", egress,
              "--ingress-address", addresses(), "--admin-address", "%s:%d" % admin, "-o", str(out), check_rc=0)
    ok, output = validate_config(out)
    assert ok, output
    with start_app("api", app_host, port):
        envoy = EnvoyProcess.start(procs, out, name="static-client", admin=admin)
        envoy.wait_ready()
        response = http_get(f"http://{egress}:{port}/x", host_header=f"api.m.local:{port}")
        assert response.status == 200 and response.headers.get("x-app") == "api", response.text


def test_render_resources_lists_types_in_push_order(tmp_path):
    result = meshplane("render", str(GOLDEN_RETAIL), "--node", "arn:aws:appmesh:eu-west-1:111122223333:mesh/retail/virtualNode/front", "--resources", check_rc=0)
    document = yaml.safe_load(result.stdout)
    assert set(document) == {"clusters", "endpoints", "listeners", "routes", "secrets"}
    assert "cds_egress_retail_catalog-v1_http_8080" in [c["name"] for c in document["clusters"]]


def test_render_unknown_node_is_a_clear_error():
    result = meshplane("render", str(GOLDEN_RETAIL), "--node", "mesh/retail/virtualNode/ghost", check_rc=1)
    assert "virtual node 'ghost' is not defined in mesh 'retail'" in result.stderr
    result = meshplane("render", str(GOLDEN_RETAIL), "--node", "retail/ghost", check_rc=1)
    assert "is not of the form mesh/<mesh>/virtualNode/<name>" in result.stderr


def test_bootstrap_is_valid_envoy_config(tmp_path):
    out = tmp_path / "bootstrap.yaml"
    meshplane("bootstrap", "--node", "mesh/retail/virtualNode/front", "--xds", "127.0.0.1:18000",
              "--ingress-address", "127.0.0.10", "--app-address", "127.0.0.11", "--egress-address", "127.0.0.12",
              "--admin-address", "127.0.0.1:9901", "-o", str(out), check_rc=0)
    config = yaml.safe_load(out.read_text())
    assert config["node"]["id"] == "mesh/retail/virtualNode/front"
    assert config["node"]["metadata"]["meshplane"] == {
        "mode": "explicit", "ingressAddress": "127.0.0.10", "appAddress": "127.0.0.11",
        "egressAddress": "127.0.0.12", "ingressPort": 15000, "egressPort": 15001,
    }
    assert config["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    ok, output = validate_config(out)
    assert ok, output


def test_bootstrap_defaults_are_app_mesh_defaults():
    result = meshplane("bootstrap", "--node", "mesh/m/virtualNode/n", "--xds", "meshplane.internal:18000", check_rc=0)
    config = yaml.safe_load(result.stdout)
    assert config["node"]["metadata"]["meshplane"]["mode"] == "transparent"
    assert config["admin"]["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9901}
    xds = config["static_resources"]["clusters"][0]
    assert xds["type"] == "STRICT_DNS"  # a host name is resolved, an IP is STATIC


def test_bootstrap_rejects_bad_xds_address():
    result = meshplane("bootstrap", "--node", "mesh/m/virtualNode/n", "--xds", "nohostport", check_rc=1)
    assert "--xds must be HOST:PORT" in result.stderr


def test_serve_refuses_an_invalid_model_at_start(tmp_path):
    (tmp_path / "m.yaml").write_text("kind: Route\nmesh: nowhere\nname: r\n")
    result = meshplane("serve", str(tmp_path), "--xds", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}", check_rc=1, timeout=30)
    assert "m.yaml" in result.stderr


def test_serve_stops_gracefully_on_sigterm(tmp_path, procs):
    http = free_port()
    proc = procs.start("serve", [sys.executable, "-m", "xds_server.cli", "serve", str(GOLDEN_RETAIL),
                                 "--xds", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{http}"])
    wait_until(lambda: _healthy(http), 20, message=f"serve not healthy:\n{proc.tail(20)}")
    proc.signal(signal.SIGTERM)
    wait_until(lambda: not proc.alive(), 10, message="serve did not stop on SIGTERM")
    assert proc.popen.returncode == 0
    assert "stopped" in proc.output()


def test_serve_takes_ads_streams_while_the_model_loads(tmp_path, procs):
    """After a restart, Envoys that reconnect while the model loads are taken and wait for their
    config, instead of being refused and backing off (Envoy's backoff grows to 30 s)."""
    import asyncio
    import socket

    from bench.meshgen import MeshSpec, generate_texts
    from tests.xds_client import AdsClient, make_node
    from xds_server.cache.snapshot import TYPE_CLUSTER

    model = tmp_path / "model"
    model.mkdir()
    # 2,000 nodes and their services: seconds of loading, where a connect takes milliseconds
    for label, text in generate_texts(MeshSpec(nodes=2000, backends=1), files=20):
        (model / label).write_text(text)
    xds, http = free_port(), free_port()
    proc = procs.start("serve", [sys.executable, "-m", "xds_server.cli", "serve", str(model),
                                 "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http}"])

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", xds)) == 0

    wait_until(listening, 30, interval=0.01, message=f"xDS port never listened:\n{proc.tail(20)}")

    async def stream() -> tuple[bool, object]:
        async with AdsClient(f"127.0.0.1:{xds}", node=make_node("mesh/bench/virtualNode/node-1")) as client:
            client.send(TYPE_CLUSTER)
            await asyncio.sleep(0.2)  # the request is read while the model still loads
            loading = not _healthy(http)
            return loading, await client.recv(timeout=120)

    loading, response = asyncio.run(stream())
    assert loading, "the model was loaded before the stream's request was read: the test proves nothing"
    assert response.type_url == TYPE_CLUSTER and len(response.resources) > 1
    assert _healthy(http)


def _healthy(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
    except OSError:
        return False


def test_bootstrap_takes_the_stock_image_settings(tmp_path):
    """APPMESH_RESOURCE_CLUSTER, ENVOY_ADMIN_ACCESS_LOG_FILE and ENVOY_INITIAL_FETCH_TIMEOUT equivalents."""
    out = tmp_path / "b.yaml"
    meshplane("bootstrap", "--node", "mesh/m/virtualNode/n", "--xds", "127.0.0.1:18000", "--node-cluster", "front-prod",
              "--admin-access-log", str(tmp_path / "admin.log"), "--initial-fetch-timeout", "15", "-o", str(out), check_rc=0)
    config = yaml.safe_load(out.read_text())
    assert config["node"] == {**config["node"], "id": "mesh/m/virtualNode/n", "cluster": "front-prod"}
    assert config["admin"]["access_log"][0]["typed_config"]["path"] == str(tmp_path / "admin.log")
    assert config["dynamic_resources"]["cds_config"]["initial_fetch_timeout"] == "15s"
    ok, output = validate_config(out)
    assert ok, output


def test_validate_warns_about_a_tcp_backend_left_out():
    """Valid, but two TCP backends of one node share a port: the second cannot be routed (exit 0, a warning)."""
    tcp_model = GOLDEN / "tcp" / "model"
    result = meshplane("validate", str(tcp_model), check_rc=0)
    assert ("warning: VirtualNode data/app: TCP backend legacy-db.data.local:5432 left out: "
            "port 5432 is already used by db.data.local") in result.stderr
