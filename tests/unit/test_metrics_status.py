"""Prometheus /metrics (text format 0.0.4), /status and /config_dump, in-process and via `meshplane serve`.

The in-process ``plane`` wires what serve.py wires (StatusRegistry with metrics and cache,
the limiter around the resolver, CSDS on the same grpc server, the HTTP endpoint); the last
test runs the real `meshplane serve` subprocess.
"""
from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from tests.conformance.test_ads_sotw import NODE, SILENCE, build, cluster, id_resolver, run
from tests.xds_client import AdsClient, make_node
from xds_server.server import csds
from xds_server.observability import metrics as metrics_mod
from xds_server.server.servicer import AggregatedDiscoveryServicer, add_to_server
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.http import start_http
from xds_server.admission.stream_limits import StreamLimiter
from xds_server.observability.metrics import Counter, Gauge, Histogram, Metrics, StreamMetrics, render
from xds_server.cache.snapshot import TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_SECRET
from xds_server.observability.status import StatusRegistry
from xds_server.server.callbacks import CallbackFanout

KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


# --- a Prometheus text-format parser (strict enough to catch format mistakes) -------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(v: str) -> str:
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)


def parse_metrics(text: str) -> tuple[dict, dict]:
    """-> ({(name, frozenset(labels.items())): value}, {family: type}); asserts the format."""
    assert text.endswith("\n")
    samples, types, helps = {}, {}, set()
    for line in text.splitlines():
        assert line, "no blank lines"
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"duplicate HELP {name}"
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"duplicate TYPE {name}"
            types[name] = kind
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        name, _, body, value = m.groups()
        labels = {}
        if body:
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                assert lm, f"bad labels in {line!r}"
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample {name} before its TYPE"
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value)
    return samples, types


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- in-process control plane (what serve.py wires) --------------------------------------

@dataclass
class Plane:
    target: str
    http_port: int
    cache: SnapshotCache
    registry: StatusRegistry
    metrics: Metrics

    async def get(self, path: str) -> tuple[int, dict, bytes]:
        return await http_request(self.http_port, path)

    async def scrape(self) -> dict:
        code, headers, body = await self.get("/metrics")
        assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        return parse_metrics(body.decode())[0]


@asynccontextmanager
async def plane(snapshots: dict | None = None, *, max_per_node: int = 500, max_streams: int = 10_000, resolver=None):
    cache = SnapshotCache()
    for key, snap in (snapshots if snapshots is not None else {NODE: build()}).items():
        cache.set(key, snap)
    m = Metrics()
    registry = StatusRegistry(cache=cache)
    limiter = StreamLimiter(registry, max_proxies_per_node=max_per_node, max_streams=max_streams, metrics=m)
    server = grpc.aio.server()
    stream_events = CallbackFanout(registry, StreamMetrics(m, cache))
    add_to_server(server, AggregatedDiscoveryServicer(cache, limiter.wrap(resolver or id_resolver(cache)), stream_events))
    csds.add_to_server(server, csds.ClientStatusServicer(registry, cache))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    http = await start_http("127.0.0.1", 0, registry, lambda: {"ok": True}, metrics=m, cache=cache)
    try:
        yield Plane(f"127.0.0.1:{port}", http.sockets[0].getsockname()[1], cache, registry, m)
    finally:
        http.close()
        await http.wait_closed()
        await server.stop(None)


async def http_request(port: int, path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def until(predicate, timeout: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def secret_snapshot(**kw):
    secret = secret_pb2.Secret(name="cert", tls_certificate=common_pb2.TlsCertificate(
        certificate_chain=core_pb2.DataSource(inline_string=CERT_PEM),
        private_key=core_pb2.DataSource(inline_string=KEY_PEM),
    ))
    on_disk = secret_pb2.Secret(name="ondisk", tls_certificate=common_pb2.TlsCertificate(
        certificate_chain=core_pb2.DataSource(filename="/etc/certs/cert.pem"),
        private_key=core_pb2.DataSource(filename="/etc/certs/key.pem"),
    ))
    return build(secrets={"cert": secret, "ondisk": on_disk}, **kw)


# --- 1. text format ----------------------------------------------------------------------

def test_text_format_round_trip():
    c = Counter("t_events_total", "Events.\nSecond line \\ backslash.", ("type",))
    c.inc(type="cds")
    c.inc(2, type="cds")
    c.inc(type='we"ird\\la\nbel')
    g = Gauge("t_level", "Level.")
    g.set(2.5)
    h = Histogram("t_seconds", "Latency.", ("type",), buckets=(0.1, 1, 10))
    for v in (0.05, 0.1, 0.5, 3, 20):
        h.observe(v, type="lds")
    text = "\n".join(c.lines() + g.lines() + h.lines()) + "\n"
    samples, types = parse_metrics(text)
    assert types == {"t_events_total": "counter", "t_level": "gauge", "t_seconds": "histogram"}
    assert "# HELP t_events_total Events.\\nSecond line \\\\ backslash." in text
    assert sample(samples, "t_events_total", type="cds") == 3
    assert sample(samples, "t_events_total", type='we"ird\\la\nbel') == 1
    assert sample(samples, "t_level") == 2.5
    buckets = [sample(samples, "t_seconds_bucket", type="lds", le=le) for le in ("0.1", "1", "10", "+Inf")]
    assert buckets == [2, 3, 4, 5]                      # cumulative, le inclusive
    assert sample(samples, "t_seconds_count", type="lds") == 5
    assert math.isclose(sample(samples, "t_seconds_sum", type="lds"), 23.65)
    with pytest.raises(ValueError):
        c.inc(-1, type="cds")
    with pytest.raises(ValueError):
        c.inc(kind="x")                                  # wrong label names


def test_metric_set_renders_zeroed_core_series_and_hooks():
    m = Metrics()
    samples, types = parse_metrics(render(m))
    for t in ("cds", "eds", "lds", "rds", "sds"):
        assert ("meshplane_xds_pushes_total", frozenset({("type", t)})) in samples
        assert sample(samples, "meshplane_xds_nacks_total", type=t) == 0
    assert types["meshplane_xds_push_ack_seconds"] == "histogram"
    m.observe_compile(0.02, 7)
    m.observe_compile(0.5, 3)
    m.observe_reload(True)
    m.observe_reload(False)
    m.observe_reload(False)
    samples, _ = parse_metrics(render(m))
    assert sample(samples, "meshplane_compile_seconds_count") == 2
    assert sample(samples, "meshplane_compile_seconds_bucket", le="0.025") == 1
    assert sample(samples, "meshplane_compiled_nodes_total") == 10
    assert sample(samples, "meshplane_last_compile_nodes") == 3
    assert sample(samples, "meshplane_model_reloads_total", result="ok") == 1
    assert sample(samples, "meshplane_model_reloads_total", result="error") == 2
    # the module-level hooks (what ControlPlane calls) feed the process-wide DEFAULT set
    before = metrics_mod.DEFAULT.compile_seconds.count()
    metrics_mod.observe_compile(0.01, 1)
    metrics_mod.observe_reload(True)
    assert metrics_mod.DEFAULT.compile_seconds.count() == before + 1
    # unknown type URLs are bucketed, never a new label value per client whim
    m.pushed("type.googleapis.com/some.Random.Thing")
    assert sample(parse_metrics(render(m))[0], "meshplane_xds_pushes_total", type="other") == 1


# --- 2. /metrics after real pushes, ACKs and a NACK ------------------------------------

def test_metrics_after_push_ack_nack_and_close():
    async def t():
        async with plane() as p:
            s = await p.scrape()
            assert sample(s, "meshplane_xds_connected_proxies") == 0
            assert sample(s, "meshplane_snapshot_keys") == 1
            assert sample(s, "meshplane_snapshot_bytes", type="cds") > 0
            assert sample(s, "meshplane_snapshot_bytes", type="sds") == 0
            async with AdsClient(p.target, node=make_node(NODE)) as c:
                c.send(TYPE_CLUSTER)
                cds = await c.recv()
                c.ack(cds)
                c.send(TYPE_ENDPOINT, ["a", "b"])
                eds = await c.recv()
                c.nack(eds, "bad endpoints", names=["a", "b"])
                await c.expect_silence(SILENCE)
                s = await p.scrape()
                assert sample(s, "meshplane_xds_connected_proxies") == 1
                assert sample(s, "meshplane_xds_connected_nodes") == 1
                assert sample(s, "meshplane_xds_streams_opened_total") == 1
                assert sample(s, "meshplane_xds_pushes_total", type="cds") == 1
                assert sample(s, "meshplane_xds_pushes_total", type="eds") == 1
                assert sample(s, "meshplane_xds_acks_total", type="cds") == 1
                assert sample(s, "meshplane_xds_acks_total", type="eds") == 0
                assert sample(s, "meshplane_xds_nacks_total", type="eds") == 1
                assert sample(s, "meshplane_xds_push_ack_seconds_count", type="cds") == 1
                assert sample(s, "meshplane_xds_push_ack_seconds_bucket", type="cds", le="+Inf") == 1
                assert sample(s, "meshplane_xds_push_ack_seconds_count", type="eds") == 0
                # a model change: pushed, ACKed -> one more convergence sample, bounded by wall time
                changed_at = time.monotonic()
                p.cache.set(NODE, build(clusters={"a": cluster("a", timeout=7), "b": cluster("b")}))
                cds2 = await c.recv()
                await asyncio.sleep(0.05)
                c.ack(cds2)
                await c.expect_silence(SILENCE)
                elapsed = time.monotonic() - changed_at
                conv = p.metrics.convergence
                assert conv.count(type="cds") == 2
                s = await p.scrape()
                assert sample(s, "meshplane_xds_acks_total", type="cds") == 2
                assert 0.05 <= sample(s, "meshplane_xds_convergence_seconds_sum", type="cds") <= 0.1 + 2 * elapsed
            await until(lambda: p.registry.count() == 0)
            s = await p.scrape()
            assert sample(s, "meshplane_xds_streams_closed_total") == 1
            assert sample(s, "meshplane_xds_connected_proxies") == 0
    run(t())


def test_repeated_ack_counts_once():
    """Envoy re-requests EDS with the same version/nonce while clusters warm: one ACK, one sample."""
    async def t():
        async with plane() as p:
            async with AdsClient(p.target, node=make_node(NODE)) as c:
                c.send(TYPE_CLUSTER)
                cds = await c.recv()
                c.ack(cds)
                c.ack(cds)
                await c.expect_silence(SILENCE)
                assert p.metrics.acks.value(type="cds") == 1
                assert p.metrics.push_ack.count(type="cds") == 1
    run(t())


# --- 3. /status and /config_dump ---------------------------------------------------------

def test_status_keeps_its_shape():
    async def t():
        async with plane() as p:
            async with AdsClient(p.target, node=make_node(NODE)) as c:
                c.send(TYPE_CLUSTER)
                cds = await c.recv()
                c.nack(cds, "no good")
                await c.expect_silence(SILENCE)
                code, headers, body = await p.get("/status")
                doc = json.loads(body)
                assert code == 200 and doc["model"] == {"ok": True}
                node = doc["nodes"][NODE]
                assert set(node) == {"streams", "key", "types", "per_stream"}
                assert set(node["types"]) == {"cds", "eds", "lds", "rds", "sds"}
                assert set(node["types"]["cds"]) == {"sent", "acked", "nacked", "nacks", "last_push", "acked_streams"}
                assert node["types"]["cds"]["nacked"] == {"version": cds.version_info, "error": "no good"}
                assert node["types"]["cds"]["last_push"]
                assert node["per_stream"][0]["types"]["cds"]["nacks"] == 1
    run(t())


def test_config_dump_connected_unknown_and_redacted():
    async def t():
        snap = secret_snapshot()
        async with plane({NODE: snap}) as p:
            code, _, body = await p.get("/config_dump?node=" + NODE)
            assert code == 404 and b"is not connected" in body and b"(none)" in body
            async with AdsClient(p.target, node=make_node(NODE)) as c:
                c.send(TYPE_CLUSTER)
                await c.recv()
                code, headers, body = await p.get("/config_dump?node=" + NODE)
                assert code == 200 and headers["content-type"] == "application/json"
                doc = json.loads(body)
                assert doc["node"] == NODE and doc["streams"] == 1
                (dump,) = doc["snapshots"]
                assert dump["key"] == NODE and dump["streams"] == 1
                assert set(dump["types"]) == {"cds", "eds", "lds", "rds", "sds"}
                cds = dump["types"]["cds"]
                assert cds["type_url"] == TYPE_CLUSTER and cds["version"] == snap.get(TYPE_CLUSTER).version
                assert [r["name"] for r in cds["resources"]] == ["a", "b"]
                a = cds["resources"][0]
                assert a["version"] == snap.get(TYPE_CLUSTER).resource_versions["a"]
                assert a["resource"]["@type"] == TYPE_CLUSTER and a["resource"]["name"] == "a"
                assert a["resource"]["connect_timeout"] == "1s"          # snake_case, like Envoy's dump
                lds = dump["types"]["lds"]["resources"][0]["resource"]
                hcm = lds["filter_chains"][0]["filters"][0]["typed_config"]
                assert hcm["rds"]["route_config_name"] == "r"               # nested Any rendered
                secrets = {r["name"]: r["resource"] for r in dump["types"]["sds"]["resources"]}
                assert secrets["cert"]["tls_certificate"]["private_key"] == "[redacted]"
                assert secrets["cert"]["tls_certificate"]["certificate_chain"] == {"inline_string": CERT_PEM}
                assert secrets["ondisk"]["tls_certificate"]["private_key"] == {"filename": "/etc/certs/key.pem"}
                assert b"PRIVATE KEY" not in body
                # the cache itself is untouched
                packed = p.cache.get(NODE).get(TYPE_SECRET).resources["cert"]
                assert b"PRIVATE KEY" in packed.value

                code, _, body = await p.get(f"/config_dump?node={NODE}&type=rds,cds")
                assert set(json.loads(body)["snapshots"][0]["types"]) == {"cds", "rds"}
                code, _, body = await p.get("/config_dump")
                assert code == 400 and NODE.encode() in body
                code, _, body = await p.get("/config_dump?node=mesh/m/virtualNode/other")
                assert code == 404 and b"'mesh/m/virtualNode/other' is not connected" in body
                assert NODE.encode() in body                              # lists who is connected
    run(t())


def test_config_dump_custom_provider_and_missing():
    async def t():
        registry = StatusRegistry()
        calls = []

        def provider(node_id):
            calls.append(node_id)
            return {"node": node_id, "compiled": True} if node_id.endswith("/x") else None

        server = await start_http("127.0.0.1", 0, registry, config_dump_provider=provider)
        port = server.sockets[0].getsockname()[1]
        bare = await start_http("127.0.0.1", 0, registry)     # no cache, no provider
        bare_port = bare.sockets[0].getsockname()[1]
        try:
            code, _, body = await http_request(port, "/config_dump?node=mesh/m/virtualNode/x")
            assert code == 200 and json.loads(body) == {"node": "mesh/m/virtualNode/x", "compiled": True}
            assert (await http_request(port, "/config_dump?node=mesh/m/virtualNode/y"))[0] == 404
            assert calls == ["mesh/m/virtualNode/x", "mesh/m/virtualNode/y"]
            assert (await http_request(bare_port, "/config_dump?node=n"))[0] == 404
            code, _, body = await http_request(bare_port, "/metrics")   # live gauges only
            assert code == 200 and sample(parse_metrics(body.decode())[0], "meshplane_xds_connected_proxies") == 0
        finally:
            for s in (server, bare):
                s.close()
                await s.wait_closed()
    run(t())


# --- 4. end to end: `meshplane serve` ------------------------------------------------------

RETAIL_FRONT = "mesh/retail/virtualNode/front"


def test_serve_subprocess_answers_metrics_config_dump_and_csds(procs, free_port):
    from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

    from tests.unit.test_cli import GOLDEN_RETAIL, _healthy
    from harness.processes import wait_until
    from harness.traffic import http_get

    xds, http = free_port(), free_port()
    proc = procs.start("serve", [sys.executable, "-m", "xds_server.cli", "serve", str(GOLDEN_RETAIL),
                                 "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http}",
                                 "--max-proxies-per-node", "1"])
    wait_until(lambda: _healthy(http), 20, message=f"serve not healthy:\n{proc.tail(20)}")
    base = f"http://127.0.0.1:{http}"

    async def t():
        async with AdsClient(f"127.0.0.1:{xds}", node=make_node(RETAIL_FRONT)) as c:
            for type_url in (TYPE_CLUSTER, TYPE_LISTENER):
                c.send(type_url)
                c.ack(await c.recv())
            await c.expect_silence(SILENCE)
            async with AdsClient(f"127.0.0.1:{xds}", node=make_node(RETAIL_FRONT)) as extra:
                extra.send(TYPE_CLUSTER)                  # over --max-proxies-per-node 1
                code, details = await extra.status()
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and RETAIL_FRONT in details
            metrics_resp = await asyncio.to_thread(http_get, base + "/metrics", timeout=5)
            dump_resp = await asyncio.to_thread(http_get, f"{base}/config_dump?node={RETAIL_FRONT}", timeout=5)
            preview_resp = await asyncio.to_thread(http_get, f"{base}/config_dump?node=mesh/retail/virtualNode/cart", timeout=5)
            unknown_resp = await asyncio.to_thread(http_get, f"{base}/config_dump?node=mesh/retail/virtualNode/ghost", timeout=5)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{xds}") as ch:
                status = await csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).FetchClientStatus(
                    csds_pb2.ClientStatusRequest(), timeout=5)
            return metrics_resp, dump_resp, status, preview_resp, unknown_resp

    metrics_resp, dump_resp, status, preview_resp, unknown_resp = run(t(), timeout=30)
    # a node of the model that is not connected: what it would get (default placement)
    assert preview_resp.status == 200
    preview = json.loads(preview_resp.body)
    assert preview["streams"] == 0 and preview["snapshots"][0]["key"] == "not connected: default placement"
    assert "cds_ingress_retail_cart_http_7070" in [r["name"] for r in preview["snapshots"][0]["types"]["cds"]["resources"]]
    assert unknown_resp.status == 404
    assert metrics_resp.status == 200
    samples, _ = parse_metrics(metrics_resp.body.decode())
    assert sample(samples, "meshplane_xds_connected_proxies") == 1
    assert sample(samples, "meshplane_xds_pushes_total", type="cds") == 1
    assert sample(samples, "meshplane_xds_acks_total", type="lds") == 1
    assert sample(samples, "meshplane_xds_streams_rejected_total", code="RESOURCE_EXHAUSTED",
                  reason="max_proxies_per_node") == 1
    assert sample(samples, "meshplane_snapshot_bytes", type="lds") > 0
    assert dump_resp.status == 200
    dump = json.loads(dump_resp.body)
    assert dump["node"] == RETAIL_FRONT and dump["snapshots"][0]["types"]["lds"]["resources"]
    (config,) = status.config
    assert config.node.id == RETAIL_FRONT
    by_type = {}
    for x in config.generic_xds_configs:
        by_type.setdefault(x.type_url, set()).add(x.config_status)
    assert by_type[TYPE_CLUSTER] == by_type[TYPE_LISTENER] == {csds_pb2.SYNCED}
    assert "--max-proxies-per-node" in proc.output()          # the refusal is logged


def test_real_envoy_is_synced_in_metrics_csds_and_config_dump(procs, addresses, tmp_path, envoy_binary):
    """A real Envoy sidecar: its ACKs show in /metrics, CSDS reports every resource SYNCED."""
    from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

    from tests.unit.test_cli import GOLDEN_RETAIL
    from harness.mesh import MeshRunner
    from harness.processes import wait_until
    from harness.traffic import http_get

    runner = MeshRunner(procs, GOLDEN_RETAIL, tmp_path)
    runner.start_control_plane()
    runner.start_sidecar(RETAIL_FRONT, ingress=addresses(), app=addresses(), egress=addresses())
    runner.wait_converged(RETAIL_FRONT, types=("cds", "lds", "rds"))

    samples, _ = parse_metrics(http_get(runner.http_url("/metrics"), timeout=5).body.decode())
    assert sample(samples, "meshplane_xds_connected_proxies") == 1
    for t in ("cds", "lds", "rds"):
        assert sample(samples, "meshplane_xds_acks_total", type=t) >= 1
        assert sample(samples, "meshplane_xds_push_ack_seconds_count", type=t) >= 1
        assert sample(samples, "meshplane_xds_nacks_total", type=t) == 0
    dump = json.loads(http_get(runner.http_url(f"/config_dump?node={RETAIL_FRONT}"), timeout=5).body)
    assert dump["snapshots"][0]["types"]["rds"]["resources"]

    async def csds_fetch():
        async with grpc.aio.insecure_channel("%s:%d" % runner.xds) as ch:
            return await csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).FetchClientStatus(
                csds_pb2.ClientStatusRequest(), timeout=5)

    def all_synced():
        (config,) = run(csds_fetch()).config
        assert config.node.id == RETAIL_FRONT and config.generic_xds_configs
        return all(x.config_status == csds_pb2.SYNCED for x in config.generic_xds_configs) and config

    config = wait_until(all_synced, 10, interval=0.1, message="CSDS never showed the Envoy in sync")
    assert {x.type_url for x in config.generic_xds_configs} >= {TYPE_CLUSTER, TYPE_LISTENER}


def test_status_and_metrics_only_subscribe_to_stream_events():
    """Neither imports the other (not even for type hints); both hear streams through callbacks."""
    import ast
    from pathlib import Path

    import xds_server.observability.metrics as metrics_module
    import xds_server.observability.status as status_module
    from xds_server.server.callbacks import Callbacks

    for module, other in ((status_module, "metrics"), (metrics_module, "status")):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert f"xds_server.observability.{other}" not in imported, module.__name__
    assert issubclass(StatusRegistry, Callbacks) and issubclass(StreamMetrics, Callbacks)
