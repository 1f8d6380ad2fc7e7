"""The sidecar image's entrypoint (envoy/entrypoint.sh) driven by App Mesh's stock variables.

Each variable: the real script runs (MESHPLANE_ENTRYPOINT_DRY_RUN=1: it writes the bootstrap and
prints Envoy's command line instead of starting it), the bootstrap has the expected pieces and
`envoy --mode validate` accepts it. With a real Envoy: the admin port answers on 127.0.0.1 and
::1; SIGTERM drains (a kept-alive client is told to close, Envoy stops early when no connection is
left, and at LISTENER_DRAIN_WAIT_TIME_S at the latest); Zipkin tracing end to end (spans reach a
collector this test runs) with DogStatsD stats carrying App Mesh's tags.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from harness.apps import AppServer
from harness.envoy import envoy_binary as find_envoy, validate_config
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.traffic import http_get
from harness.model_builders import mesh, service_with_node, virtual_node, write_model
from tests.paths import REPO

ENTRYPOINT = REPO / "envoy" / "entrypoint.sh"
NODE = "mesh/shop/virtualNode/front"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    dirs = [str(Path(sys.executable).parent), str(find_envoy().parent), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    env = {
        "PATH": ":".join(dict.fromkeys(dirs)), "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "MESHPLANE_XDS": "127.0.0.1:18000", "MESHPLANE_BOOTSTRAP_FILE": str(tmp_path / "envoy.yaml"),
        # run as root (CI), the entrypoint runs Envoy as this uid: keep it ours (tmp_path is 0700)
        "APPMESH_IGNORE_UID": str(os.getuid()), "APPMESH_IGNORE_GID": str(os.getgid()),
    }
    env.update(extra)
    return env


def dry_run(tmp_path: Path, **variables: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = _env(tmp_path, MESHPLANE_ENTRYPOINT_DRY_RUN="1", **variables)
    proc = subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=60)
    bootstrap = Path(env["MESHPLANE_BOOTSTRAP_FILE"])
    data = yaml.safe_load(bootstrap.read_text()) if proc.returncode == 0 else {}
    return proc, data


def checked(tmp_path: Path, **variables: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Dry run that must succeed, with a bootstrap Envoy accepts."""
    proc, data = dry_run(tmp_path, **variables)
    assert proc.returncode == 0, proc.stderr
    ok, output = validate_config(tmp_path / "envoy.yaml")
    assert ok, output
    return proc, data


def _cluster(data: dict, name: str) -> dict:
    return next(c for c in data["static_resources"]["clusters"] if c["name"] == name)


def _endpoint(cluster: dict) -> tuple[str, int]:
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    return address["address"], address["port_value"]


# -- identity ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variables, node_id", [
    ({"APPMESH_VIRTUAL_NODE_NAME": "mesh/shop/virtualNode/front"}, "mesh/shop/virtualNode/front"),  # the EKS injector's
    ({"APPMESH_RESOURCE_NAME": "mesh/shop/virtualGateway/gw"}, "mesh/shop/virtualGateway/gw"),
    ({"APPMESH_RESOURCE_ARN": "arn:aws:appmesh:eu-west-1:111122223333:mesh/shop/virtualNode/a",
      "APPMESH_VIRTUAL_NODE_NAME": "mesh/shop/virtualNode/b"}, "mesh/shop/virtualNode/a"),
    ({"APPMESH_VIRTUAL_NODE_NAME": "mesh/shop/virtualNode/b", "APPMESH_RESOURCE_NAME": "mesh/shop/virtualNode/c"},
     "mesh/shop/virtualNode/b"),
])
def test_node_id_variables(tmp_path, variables, node_id):
    _, data = checked(tmp_path, **variables)
    assert data["node"]["id"] == node_id


def test_no_node_id_names_the_variables(tmp_path):
    proc, _ = dry_run(tmp_path)
    assert proc.returncode == 1
    assert "APPMESH_RESOURCE_ARN (or APPMESH_VIRTUAL_NODE_NAME / APPMESH_RESOURCE_NAME) is required" in proc.stderr


def test_replicas_in_meshplane_xds(tmp_path):
    """MESHPLANE_XDS may name several control-plane replicas: the xDS cluster lists every one."""
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME="mesh/shop/virtualNode/front",
                      MESHPLANE_XDS="127.0.0.1:18000,127.0.0.2:18000")
    xds = next(c for c in data["static_resources"]["clusters"] if c["name"] == "meshplane_xds")
    endpoints = [e["endpoint"]["address"]["socket_address"] for g in xds["load_assignment"]["endpoints"] for e in g["lb_endpoints"]]
    assert [(e["address"], e["port_value"]) for e in endpoints] == [("127.0.0.1", 18000), ("127.0.0.2", 18000)]


# -- admin --------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, address, compat", [("1", "::", True), ("true", "::", True), ("0", "0.0.0.0", None), (None, "0.0.0.0", None)])
def test_admin_ipv6_variable(tmp_path, value, address, compat):
    variables = {"APPMESH_VIRTUAL_NODE_NAME": NODE, "ENVOY_ADMIN_ACCESS_PORT": "9911"}
    if value is not None:
        variables["ENVOY_ADMIN_ACCESS_ENABLE_IPV6"] = value
    _, data = checked(tmp_path, **variables)
    socket_address = data["admin"]["address"]["socket_address"]
    assert (socket_address["address"], socket_address["port_value"], socket_address.get("ipv4_compat")) == (address, 9911, compat)


def test_admin_answers_on_ipv4_and_ipv6(tmp_path, procs):
    admin = free_port()
    env = _env(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, ENVOY_ADMIN_ACCESS_PORT=str(admin),
               ENVOY_ADMIN_ACCESS_ENABLE_IPV6="true", LISTENER_DRAIN_WAIT_TIME_S="2", MESHPLANE_XDS=f"127.0.0.1:{free_port()}")
    proc = procs.start("entrypoint", ["sh", str(ENTRYPOINT)], env=env)
    for host in ("127.0.0.1", "[::1]"):
        def answers(host=host):
            if not proc.alive():
                raise RuntimeError(proc.tail(30))
            try:
                return http_get(f"http://{host}:{admin}/server_info", timeout=1).status == 200
            except OSError:
                return False
        wait_until(answers, 20, message=f"admin did not answer on {host}", fatal=(RuntimeError,))
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.popen.wait(timeout=10) == 0


# -- drain --------------------------------------------------------------------------------------

def test_drain_wait_variable(tmp_path):
    proc, _ = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, LISTENER_DRAIN_WAIT_TIME_S="7")
    assert "--drain-time-s 7 --drain-strategy immediate" in proc.stderr
    proc, _ = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE)
    assert "--drain-time-s 20 " in proc.stderr  # the stock agent's default
    proc, _ = dry_run(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, LISTENER_DRAIN_WAIT_TIME_S="soon")
    assert proc.returncode == 1 and "LISTENER_DRAIN_WAIT_TIME_S must be whole seconds" in proc.stderr


@pytest.fixture
def api_sidecar(procs, addresses, tmp_path):
    """meshplane serving node `api` (an http listener) and the entrypoint running its sidecar on
    the explicit data path; yields (entrypoint proc, ingress (host, port), admin port, app)."""
    app_host = addresses()
    port = free_port(app_host)
    model = tmp_path / "model" / "m.yaml"
    write_model(model, mesh("drain"), service_with_node("drain", "api.drain.local", "api", port=port, host=app_host))
    runner = MeshRunner(procs, model.parent, tmp_path)
    runner.start_control_plane()
    ingress, admin = addresses(), free_port()

    def start(drain_wait: int):
        env = _env(tmp_path, APPMESH_VIRTUAL_NODE_NAME="mesh/drain/virtualNode/api", MESHPLANE_XDS="%s:%d" % runner.xds,
                   MESHPLANE_INGRESS_ADDRESS=ingress, MESHPLANE_APP_ADDRESS=app_host, MESHPLANE_EGRESS_ADDRESS=addresses(),
                   ENVOY_ADMIN_ACCESS_PORT=str(admin), LISTENER_DRAIN_WAIT_TIME_S=str(drain_wait))
        proc = procs.start("entrypoint", ["sh", str(ENTRYPOINT)], env=env)

        def serving():
            if not proc.alive():
                raise RuntimeError(proc.tail(30))
            try:
                return http_get(f"http://{ingress}:{port}/", timeout=1).status == 200
            except OSError:
                return False
        wait_until(serving, 30, message="the sidecar did not serve", fatal=(RuntimeError,))
        return proc

    with AppServer("api", app_host, port) as app:
        yield start, (ingress, port), admin, app


def _admin_stat(admin: int, name: str) -> int | None:
    body = http_get(f"http://127.0.0.1:{admin}/stats?filter=^{name}$", timeout=2).body
    text = body.decode() if isinstance(body, bytes) else body
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return None


def test_sigterm_drains_and_stops_when_connections_are_gone(api_sidecar):
    start, (host, port), admin, _ = api_sidecar
    proc = start(drain_wait=20)
    client = http.client.HTTPConnection(host, port, timeout=5)
    client.request("GET", "/before")
    response = client.getresponse()
    response.read()
    assert response.status == 200 and response.getheader("connection") != "close"
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    wait_until(lambda: "draining inbound listeners" in proc.tail(20), 5, message="the entrypoint did not start the drain")
    time.sleep(0.5)  # its POST /drain_listeners follows the line at once
    # a kept-alive client of the inbound listener is served and told to go
    client.request("GET", "/during")
    response = client.getresponse()
    response.read()
    assert response.status == 200 and response.getheader("connection") == "close"
    client.close()
    assert _admin_stat(admin, "http.ingress.downstream_cx_drain_close") == 1
    assert proc.popen.wait(timeout=10) == 0
    assert time.monotonic() - began < 8, "the entrypoint waited although no connection was left"
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{admin}/ready", timeout=1)


def test_sigterm_drain_is_bounded_by_listener_drain_wait_time(api_sidecar):
    start, (host, port), admin, _ = api_sidecar
    proc = start(drain_wait=3)
    stuck = socket.create_connection((host, port), timeout=5)  # a request whose body never comes
    stuck.sendall(b"POST /upload HTTP/1.1\r\nHost: api\r\nContent-Length: 100000\r\n\r\npartial")
    wait_until(lambda: _admin_stat(admin, "http.ingress.downstream_rq_active") == 1, 5, message="request not active")
    began = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.popen.wait(timeout=15) == 0
    elapsed = time.monotonic() - began
    stuck.close()
    assert 2.5 <= elapsed <= 3 + 4, elapsed
    assert "Envoy stopped after 3s of drain" in proc.tail(40)


# -- tracing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variables, tracer, collector", [
    ({"ENABLE_ENVOY_XRAY_TRACING": "1", "XRAY_DAEMON_PORT": "2001", "XRAY_SAMPLING_RATE": "0.2"},
     {"driver": "xray", "address": "127.0.0.1", "port": 2001, "samplingRate": 0.2, "segmentName": "shop/front"}, None),
    ({"ENABLE_ENVOY_XRAY_TRACING": "true", "XRAY_SEGMENT_NAME": "front-seg"},
     {"driver": "xray", "address": "127.0.0.1", "port": 2000, "segmentName": "front-seg"}, None),
    ({"ENABLE_ENVOY_JAEGER_TRACING": "1"},
     {"driver": "jaeger", "cluster": "meshplane_tracing_jaeger", "version": "PROTO"}, ("127.0.0.1", 9411)),
    ({"ENABLE_ENVOY_JAEGER_TRACING": "1", "JAEGER_TRACER_ADDRESS": "jaeger.observability", "JAEGER_TRACER_PORT": "9412",
      "JAEGER_TRACER_VERSION": "JSON"},
     {"driver": "jaeger", "cluster": "meshplane_tracing_jaeger", "version": "JSON"}, ("jaeger.observability", 9412)),
    ({"ENABLE_ENVOY_DATADOG_TRACING": "1"},
     {"driver": "datadog", "cluster": "meshplane_tracing_datadog", "serviceName": "envoy-shop/front"}, ("127.0.0.1", 8126)),
    ({"ENABLE_ENVOY_DATADOG_TRACING": "1", "DATADOG_TRACER_ADDRESS": "10.0.0.5", "DATADOG_TRACER_PORT": "8127", "DD_SERVICE": "front"},
     {"driver": "datadog", "cluster": "meshplane_tracing_datadog", "serviceName": "front"}, ("10.0.0.5", 8127)),
    ({"ENABLE_ENVOY_ZIPKIN_TRACING": "1"}, {"driver": "zipkin", "cluster": "meshplane_tracing_zipkin"}, ("127.0.0.1", 9411)),
    ({"ENABLE_ENVOY_ZIPKIN_TRACING": "1", "ZIPKIN_TRACER_ADDRESS": "zipkin", "ZIPKIN_TRACER_PORT": "9511"},
     {"driver": "zipkin", "cluster": "meshplane_tracing_zipkin"}, ("zipkin", 9511)),
], ids=["xray", "xray-segment", "jaeger", "jaeger-address", "datadog", "datadog-address", "zipkin", "zipkin-address"])
def test_tracing_variables(tmp_path, variables, tracer, collector):
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, **variables)
    assert data["node"]["metadata"]["meshplane"]["tracing"] == tracer
    names = [c["name"] for c in data["static_resources"]["clusters"]]
    if collector is None:
        assert names == ["meshplane_xds"]  # X-Ray: UDP to the daemon, no cluster
    else:
        assert _endpoint(_cluster(data, tracer["cluster"])) == collector


def test_tracing_config_file(tmp_path):
    fragment = tmp_path / "tracing.yaml"
    fragment.write_text(yaml.safe_dump({
        "tracing": {"http": {"name": "envoy.tracers.zipkin", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig", "collector_cluster": "my_zipkin",
            "collector_endpoint": "/api/v2/spans", "collector_endpoint_version": "HTTP_JSON"}}},
        "static_resources": {"clusters": [{"name": "my_zipkin", "type": "STRICT_DNS", "connect_timeout": "1s", "load_assignment": {
            "cluster_name": "my_zipkin", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "zipkin.local", "port_value": 9411}}}}]}]}}]},
    }))
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, ENVOY_TRACING_CFG_FILE=str(fragment))
    tracer = data["node"]["metadata"]["meshplane"]["tracing"]
    assert tracer["driver"] == "custom" and tracer["provider"]["typed_config"]["collector_cluster"] == "my_zipkin"
    assert "tracing" not in data  # the provider goes into the HTTP connection managers
    assert _endpoint(_cluster(data, "my_zipkin")) == ("zipkin.local", 9411)
    assert _cluster(data, "meshplane_xds")


# -- stats --------------------------------------------------------------------------------------

def test_stats_tags_variable(tmp_path):
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, ENABLE_ENVOY_STATS_TAGS="1")
    assert data["stats_config"]["stats_tags"] == [{"tag_name": "appmesh.mesh", "fixed_value": "shop"},
                                                  {"tag_name": "appmesh.virtual_node", "fixed_value": "front"}]
    _, data = checked(tmp_path, APPMESH_RESOURCE_ARN="mesh/shop/virtualGateway/gw", ENABLE_ENVOY_STATS_TAGS="1")
    assert data["stats_config"]["stats_tags"][1] == {"tag_name": "appmesh.virtual_gateway", "fixed_value": "gw"}
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE)
    assert "stats_config" not in data


@pytest.mark.parametrize("variables, address", [
    ({}, {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": 8125}}),
    ({"STATSD_PORT": "9125", "STATSD_ADDRESS": "10.0.0.7"}, {"socket_address": {"protocol": "UDP", "address": "10.0.0.7", "port_value": 9125}}),
    ({"STATSD_SOCKET_PATH": "/var/run/datadog/dsd.socket"}, {"pipe": {"path": "/var/run/datadog/dsd.socket"}}),
], ids=["defaults", "address-port", "socket"])
def test_dog_statsd_variables(tmp_path, variables, address):
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, ENABLE_ENVOY_DOG_STATSD="1", **variables)
    (sink,) = data["stats_sinks"]
    assert sink["name"] == "envoy.stat_sinks.dog_statsd" and sink["typed_config"]["address"] == address


def test_stats_sinks_and_stats_config_files(tmp_path):
    sinks = tmp_path / "sinks.yaml"
    sinks.write_text(yaml.safe_dump({"stats_sinks": [{"name": "envoy.stat_sinks.statsd", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
        "address": {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": 8125}}}}]}))
    config = tmp_path / "stats.json"
    config.write_text(json.dumps({"stats_config": {"stats_matcher": {"inclusion_list": {"patterns": [{"prefix": "cluster."}]}}}}))
    _, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, ENVOY_STATS_SINKS_CFG_FILE=str(sinks), ENVOY_STATS_CONFIG_FILE=str(config),
                      ENABLE_ENVOY_STATS_TAGS="1", ENABLE_ENVOY_DOG_STATSD="1")
    assert [s["name"] for s in data["stats_sinks"]] == ["envoy.stat_sinks.dog_statsd", "envoy.stat_sinks.statsd"]
    assert data["stats_config"]["stats_matcher"] == {"inclusion_list": {"patterns": [{"prefix": "cluster."}]}}
    assert len(data["stats_config"]["stats_tags"]) == 2


def test_metric_extension_cannot_be_honoured_one_line(tmp_path):
    proc, data = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE, APPMESH_METRIC_EXTENSION_VERSION="1")
    lines = [line for line in proc.stderr.splitlines() if "APPMESH_METRIC_EXTENSION_VERSION" in line]
    assert len(lines) == 1 and "ignored" in lines[0] and "proprietary" in lines[0]
    proc, _ = checked(tmp_path, APPMESH_VIRTUAL_NODE_NAME=NODE)
    assert "APPMESH_METRIC_EXTENSION_VERSION" not in proc.stderr


# -- end to end: spans to a Zipkin collector, DogStatsD with App Mesh's tags ------------------

class _Collector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str):
        self.spans: list[dict] = []
        self.posts: list[tuple] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: D401 - quiet
                pass

            def do_POST(inner):  # noqa: N805
                if "chunked" in (inner.headers.get("transfer-encoding") or ""):
                    body = b""
                    while (size := int(inner.rfile.readline().split(b";")[0], 16)):
                        body += inner.rfile.read(size)
                        inner.rfile.readline()
                    inner.rfile.readline()
                else:
                    body = inner.rfile.read(int(inner.headers.get("content-length") or 0))
                self.posts.append((inner.path, dict(inner.headers), body))
                if inner.path == "/api/v2/spans":
                    self.spans.extend(json.loads(body))
                inner.send_response(202)
                inner.send_header("content-length", "0")
                inner.end_headers()

        super().__init__((host, 0), Handler)


def test_zipkin_spans_and_dog_statsd_end_to_end(procs, addresses, tmp_path):
    app_host = addresses()
    port = free_port(app_host)
    model = tmp_path / "model" / "m.yaml"
    write_model(model, mesh("trace"), service_with_node("trace", "api.trace.local", "api", port=port, host=app_host),
                virtual_node("trace", "front", backends=["api.trace.local"]))
    runner = MeshRunner(procs, model.parent, tmp_path)
    runner.start_control_plane()
    collector = _Collector("127.0.0.1")
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    statsd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    statsd.bind(("127.0.0.1", 0))
    statsd.settimeout(1)
    egress = addresses()
    env = _env(tmp_path, APPMESH_VIRTUAL_NODE_NAME="mesh/trace/virtualNode/front", MESHPLANE_XDS="%s:%d" % runner.xds,
               MESHPLANE_INGRESS_ADDRESS=addresses(), MESHPLANE_APP_ADDRESS=addresses(), MESHPLANE_EGRESS_ADDRESS=egress,
               ENVOY_ADMIN_ACCESS_PORT=str(free_port()), LISTENER_DRAIN_WAIT_TIME_S="1",
               ENABLE_ENVOY_ZIPKIN_TRACING="1", ZIPKIN_TRACER_ADDRESS="127.0.0.1", ZIPKIN_TRACER_PORT=str(collector.server_port),
               ENABLE_ENVOY_STATS_TAGS="1", ENABLE_ENVOY_DOG_STATSD="1", STATSD_PORT=str(statsd.getsockname()[1]))
    try:
        proc = procs.start("entrypoint", ["sh", str(ENTRYPOINT)], env=env)
        with AppServer("api", app_host, port):
            def through():
                if not proc.alive():
                    raise RuntimeError(proc.tail(30))
                try:
                    return http_get(f"http://{egress}:{port}/traced", host_header=f"api.trace.local:{port}", timeout=2).status == 200
                except OSError:
                    return False
            wait_until(through, 30, message="no traffic through the sidecar", fatal=(RuntimeError,))
            for _ in range(5):  # Zipkin's tracer sends once 5 spans are buffered (or every 5 s)
                assert http_get(f"http://{egress}:{port}/traced", host_header=f"api.trace.local:{port}").status == 200
        upstream = f"cds_egress_trace_api_http_{port}"

        def span():
            return next((s for s in list(collector.spans) if upstream in json.dumps(s.get("tags", {}))), None)
        found = wait_until(span, 15, message=f"no span naming {upstream} reached the collector: {collector.posts[:3]}")
        assert found["tags"].get("upstream_cluster") == upstream, found
        assert "api.trace.local" in json.dumps(found)

        def tagged():
            try:
                datagram = statsd.recv(65535).decode()
            except socket.timeout:
                return None
            return datagram if "appmesh.mesh:trace" in datagram and "appmesh.virtual_node:front" in datagram else None
        wait_until(tagged, 20, message="no DogStatsD metric with App Mesh's tags")
        ok, output = validate_config(tmp_path / "envoy.yaml")
        assert ok, output
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.popen.wait(timeout=10) == 0
    finally:
        collector.shutdown()
        collector.server_close()
        statsd.close()
