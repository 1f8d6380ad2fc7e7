"""The App Mesh API: write -> Envoy serving it, and write throughput with a large store.

**Latency** (``api: write -> Envoy``): the convergence benchmark's mesh (node ``front`` ->
service ``catalog`` -> route ``main`` -> nodes ``v1`` / ``v2``, two in-process apps, one real
Envoy for ``front``), made with boto3 through the API. Each of ``edits`` writes is one
``update_route`` flipping ``main`` 100/0 <-> 0/100; the clock starts just before the call and
stops at the first response through ``front``'s egress listener from the newly weighted app
(polled on fresh connections every ~2 ms). Two set-ups:

* one replica: ``meshplane serve --store sqlite:///...``, the Envoy connected to it;
* across replicas: two ``serve --store postgresql://...`` on one database; the write goes to
  replica A, the Envoy is connected to replica B only (LISTEN/NOTIFY, catch-up read, recompile).

Floor: the same ``update_route`` call's HTTP round trip alone (timed in the same loop): what
is left is the change reaching the compiler, xDS and Envoy's apply.

**Throughput** (``api: update_route/s``): a store holding ``meshgen``'s mesh (``nodes`` nodes,
services, routers, routes: 2,001 resources at 500 nodes), written through the API's own
``/meshplane/v1/apply`` (run in this process, before the server starts); then one boto3 client calls ``update_route`` back to back (each call
validated against the whole would-be mesh, committed, then loaded and compiled by the
server, which competes for the same CPU) for ``writes`` calls; and, to isolate the API's own
write path, the same writes through ``ApiService.handle`` in this process (no serve process). With the API's per-document validation cache (the default) and without it
(``MESHPLANE_API_VALIDATION_CACHE=0``), on SQLite and on PostgreSQL.

Floor: raw ``store.commit`` of the same row (the same route, its version + 1) per second,
straight into the store from this process, before the server starts.

PostgreSQL comes from ``harness/postgres.py`` (``MESHPLANE_TEST_POSTGRES``, a server on
127.0.0.1:5432, or a throwaway cluster); without one the PostgreSQL rows are SKIP.
"""
from __future__ import annotations

import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, seconds_until_serving, summary, wait_until_serving

SERVICE = "catalog.api.local"
FRONT = "mesh/api/virtualNode/front"
REGION = "us-west-2"


def _client(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client("appmesh", endpoint_url=url, region_name=REGION, aws_access_key_id="x",
                        aws_secret_access_key="y", config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def _route(weights: dict[str, int]) -> dict:
    return {"httpRoute": {"match": {"prefix": "/"}, "action": {
        "weightedTargets": [{"virtualNode": n, "weight": w} for n, w in weights.items()]}}}


class _Serve:
    """One ``meshplane serve --store URL`` subprocess on free ports."""

    def __init__(self, group, store: str, name: str, env: dict | None = None):
        from harness.processes import free_port, wait_until
        from harness.traffic import http_get

        self.xds, self.http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.http}"
        self.proc = group.start(name, [sys.executable, "-m", "xds_server.cli", "serve", "--store", store,
                                       "--xds", self.xds, "--http", self.http],
                                env={**os.environ, **(env or {})})

        def healthy() -> bool:
            if not self.proc.alive():
                raise RuntimeError(f"{name} exited:\n{self.proc.tail(30)}")
            try:
                return http_get(self.url + "/healthz", timeout=1).status == 200
            except OSError:
                return False

        wait_until(healthy, 60, message=f"{name} did not become healthy", fatal=(RuntimeError,))


def _stop(serve: _Serve) -> None:
    serve.proc.stop()


# ------------------------------------------------------------------ latency


def _create_conv_mesh(c, port: int, v1: str, v2: str, front: str) -> None:
    c.create_mesh(meshName="api")
    listener = [{"portMapping": {"port": port, "protocol": "http"}}]
    for name, host in (("v1", v1), ("v2", v2)):
        c.create_virtual_node(meshName="api", virtualNodeName=name,
                              spec={"listeners": listener, "serviceDiscovery": {"dns": {"hostname": host}}})
    c.create_virtual_router(meshName="api", virtualRouterName="catalog", spec={"listeners": listener})
    c.create_route(meshName="api", virtualRouterName="catalog", routeName="main", spec=_route({"v1": 100, "v2": 0}))
    c.create_virtual_service(meshName="api", virtualServiceName=SERVICE,
                             spec={"provider": {"virtualRouter": {"virtualRouterName": "catalog"}}})
    c.create_virtual_node(meshName="api", virtualNodeName="front", spec={
        "listeners": listener, "serviceDiscovery": {"dns": {"hostname": front}},
        "backends": [{"virtualService": {"virtualServiceName": SERVICE}}]})


def _latency(stores: list[str], edits: int, log) -> tuple[list[float], list[float], int]:
    """Write on the replica of ``stores[0]``, Envoy connected to the last one. Returns
    (write -> served latencies, update_route round trips, edits that did not converge)."""
    from bench.convergence_bench import _addresses
    from harness.apps import AppServer
    from harness.mesh import MeshRunner
    from harness.processes import ProcessGroup, free_port

    addr = _addresses()
    front_ingress, front_app, front_egress, v1_host, v2_host = (next(addr) for _ in range(5))
    port = free_port(front_ingress)
    apps = [AppServer("v1", v1_host, port).start(), AppServer("v2", v2_host, port).start()]
    rng = random.Random(8)
    latencies, round_trips, failures = [], [], 0
    try:
        with tempfile.TemporaryDirectory(prefix="meshplane-bench-api-") as tmp, \
                ProcessGroup(log_dir=Path(tmp) / "logs") as group:
            replicas = [_Serve(group, store, f"replica-{i}") for i, store in enumerate(stores)]
            writer, served_by = replicas[0], replicas[-1]
            c = _client(writer.url)
            _create_conv_mesh(c, port, v1_host, v2_host, front_ingress)
            runner = MeshRunner(group, Path(tmp) / "unused", Path(tmp))
            host, xds_port = served_by.xds.rsplit(":", 1)
            runner.xds = (host, int(xds_port))
            front = runner.start_sidecar(FRONT, ingress=front_ingress, app=front_app, egress=front_egress)
            url, host_header = front.egress_url(port), f"{SERVICE}:{port}"

            wait_until_serving(front, url, host_header, "v1")
            weights = {"v1": 100, "v2": 0}
            for _ in range(edits):
                weights = {"v1": 100 - weights["v1"], "v2": 100 - weights["v2"]}
                expected = "v1" if weights["v1"] else "v2"
                started = time.monotonic()
                c.update_route(meshName="api", virtualRouterName="catalog", routeName="main", spec=_route(weights))
                round_trips.append(time.monotonic() - started)
                latency = seconds_until_serving(url, host_header, expected, started)
                if latency is None:
                    failures += 1
                else:
                    latencies.append(latency)
                time.sleep(0.2 + rng.random() * 0.2)
    finally:
        for app in apps:
            app.stop()
    return latencies, round_trips, failures


def _latency_results(label: str, stores: list[str], edits: int, log) -> list[Result]:
    latencies, round_trips, failures = _latency(stores, edits, log)
    name = f"api: write -> Envoy serves it, {label}"
    if not latencies:
        return [Result(benchmark=name, measured=None, unit="ms", verdict="ERROR",
                       notes=f"no write reached the Envoy within 10 s ({failures} failures)")]
    stats, floor = summary(latencies), summary(round_trips)
    log(f"{name}: p50 {stats['p50'] * 1000:.0f} ms, p99 {stats['p99'] * 1000:.0f} ms; "
        f"update_route alone p50 {floor['p50'] * 1000:.0f} ms")
    floor_desc = "the same update_route call's HTTP round trip alone (boto3, timed in the same loop)."
    note = (f"update_route via boto3 flipping a route 100/0 <-> 0/100, clock to the first response from the newly "
            f"weighted app through the real Envoy; {len(latencies)} of {edits} writes"
            + (f", {failures} did not converge within 10 s" if failures else ""))
    details = {"latency_s": stats, "floor_s": floor, "failures": failures, "stores": [s.split("@")[-1] for s in stores]}
    return [
        Result(benchmark=f"{name}, p50 of {edits}", measured=stats["p50"] * 1000, unit="ms", floor=floor["p50"] * 1000,
               floor_desc=floor_desc, verdict="INFO", notes=note, details=details),
        Result(benchmark=f"{name}, p99 of {edits}", measured=stats["p99"] * 1000, unit="ms", floor=floor["p99"] * 1000,
               floor_desc=floor_desc, verdict="INFO"),
    ]


# ------------------------------------------------------------------ throughput


def _seed(store_url: str, nodes: int) -> list[dict]:
    """meshgen's mesh written in one all-or-nothing apply, by the API's own code
    (``ApiService`` in this process, as ``/meshplane/v1/apply`` runs it); returns the documents."""
    import json

    import yaml

    from bench.meshgen import MeshSpec, generate_texts
    from xds_server.api import ApiService
    from xds_server.store import open_store

    docs = [d for _, text in generate_texts(MeshSpec(nodes=nodes, backends=min(10, nodes - 1)))
            for d in yaml.safe_load_all(text) if d]
    with open_store(store_url) as store:
        status, _, body = ApiService(store).handle("POST", "/meshplane/v1/apply", "", {"content-type": "application/json"},
                                                   json.dumps({"documents": docs}).encode(), peer="127.0.0.1")
        if status != 200:
            raise RuntimeError(f"seeding the store failed ({status}): {body[:300]!r}")
    return docs


def _store_floor(store_url: str, writes: int) -> float:
    """Raw ``store.commit`` of one route row, version + 1 each time; commits per second."""
    from xds_server.store import open_store
    from xds_server.store.base import Put, ResourceKey, StoredResource

    key = ResourceKey("Route", "bench", "router-1", "route-1")
    with open_store(store_url) as store:
        current = store.get(key)
        assert current is not None, f"{key} not in the store"
        started = time.perf_counter()
        for i in range(writes):
            spec = _route({"node-1": 1 + i % 99, "node-2": 99 - i % 99})
            nxt = StoredResource(key, spec, current.version + 1, current.metadata, current.tags)
            store.commit([Put(nxt, expected_version=current.version)])
            current = nxt
        return writes / (time.perf_counter() - started)


def _inprocess_rate(store_url: str, nodes: int, writes: int, cached: bool) -> float:
    """update_route/s of ``ApiService.handle`` alone (this process, no server, no control plane
    reloading after each change): the API's own write path, validation included."""
    import json

    from xds_server.api import ApiService, validation
    from xds_server.store import open_store

    saved = validation.CACHE
    validation.CACHE = validation.CachesByScope() if cached else None
    try:
        with open_store(store_url) as store:
            service = ApiService(store)

            def write(i: int) -> None:
                r = i % nodes
                body = json.dumps({"spec": _route({f"node-{r}": 1 + i % 99, f"node-{(r + 1) % nodes}": 99 - i % 99})})
                status, _, out = service.handle("PUT", f"/v20190125/meshes/bench/virtualRouter/router-{r}/routes/route-{r}",
                                                "", {"content-type": "application/json"}, body.encode(), peer="127.0.0.1")
                if status != 200:
                    raise RuntimeError(f"update_route failed ({status}): {out[:300]!r}")

            for i in range(2):  # warm up (the cache's first load validates everything)
                write(i)
            started = time.perf_counter()
            for i in range(writes):
                write(i + 2)
            return writes / (time.perf_counter() - started)
    finally:
        validation.CACHE = saved


def _throughput(store_url: str, nodes: int, writes: int, cached: bool, log) -> tuple[float, float, int]:
    """(update_route/s through the API, raw store commits/s, resources in the store)."""
    from harness.processes import ProcessGroup

    with tempfile.TemporaryDirectory(prefix="meshplane-bench-tput-") as tmp, \
            ProcessGroup(log_dir=Path(tmp) / "logs") as group:
        env = {} if cached else {"MESHPLANE_API_VALIDATION_CACHE": "0"}
        docs = _seed(store_url, nodes)
        floor = _store_floor(store_url, writes)
        alone = _inprocess_rate(store_url, nodes, writes, cached)
        serve = _Serve(group, store_url, "meshplane-tput", env=env)
        c = _client(serve.url)
        for i in range(2):  # warm up: connections, caches
            c.update_route(meshName="bench", virtualRouterName="router-2", routeName="route-2",
                           spec=_route({"node-2": 50 + i, "node-3": 50 - i}))
        started = time.perf_counter()
        for i in range(writes):
            r = i % nodes
            c.update_route(meshName="bench", virtualRouterName=f"router-{r}", routeName=f"route-{r}",
                           spec=_route({f"node-{r}": 1 + i % 99, f"node-{(r + 1) % nodes}": 99 - i % 99}))
        rate = writes / (time.perf_counter() - started)
        _stop(serve)
        reloads = [float(m) for m in re.findall(r"model reloaded: .* in (\d+(?:\.\d+)?) ms", serve.proc.output())]
    return rate, floor, len(docs), reloads, alone


def _throughput_results(kind: str, new_store, nodes: int, writes: int, log) -> list[Result]:
    out = []
    for cached in (False, True):
        rate, floor, count, reloads, alone = _throughput(new_store(), nodes, writes, cached, log)
        what = "validation cache on" if cached else "validation cache off (before)"
        log(f"api throughput {kind}, {what}: {rate:.1f} update_route/s through serve, {alone:.1f}/s ApiService alone; "
            f"raw store commits {floor:.0f}/s")
        # ratio = measured / floor; for a rate, time per write / time per commit reads better: floor/rate
        out.append(Result(
            benchmark=f"api: update_route, {count:,} resources, {kind}, {what}",
            measured=1000 / rate, unit="ms/write", floor=1000 / floor,
            floor_desc="raw store.commit of the same route row (version + 1), straight into the store, no server.",
            verdict="INFO",
            notes=f"{rate:.1f} update_route/s through the API (one boto3 client, back to back, {writes} writes) vs "
                  f"{floor:.0f} raw commits/s."
                  + (f" The serve process logged \"model reloaded\" {len(reloads)} times, p50 {sorted(reloads)[len(reloads) // 2]:.0f} ms "
                     f"each (no Envoy connected): that reload after each change shares the process's CPU with the API." if reloads else ""),
            details={"updates_per_s": rate, "commits_per_s": floor, "resources": count, "cached": cached,
                     "reload_ms": reloads}))
        out.append(Result(
            benchmark=f"api: update_route, {count:,} resources, {kind}, ApiService alone, {what}",
            measured=1000 / alone, unit="ms/write", floor=1000 / floor, verdict="INFO",
            notes=f"{alone:.1f} update_route/s: the API's write path in this process (read index, validate the whole "
                  f"would-be mesh, commit), without the serve process's reload and compile after each change.",
            details={"updates_per_s": alone, "commits_per_s": floor, "cached": cached}))
    return out


def run(edits: int = 20, nodes: int = 500, writes: int = 60, log=print) -> list[Result]:
    from harness.envoy import EnvoyNotFoundError, envoy_binary
    from harness.postgres import PostgresUnavailable, TestPostgres

    results: list[Result] = []
    tmp = tempfile.TemporaryDirectory(prefix="meshplane-bench-sqlite-")
    counter = iter(range(1000))

    def new_sqlite() -> str:
        return f"sqlite:///{tmp.name}/store-{next(counter)}.db"

    try:
        pg = TestPostgres.open()
    except PostgresUnavailable as exc:
        pg, pg_reason = None, str(exc).splitlines()[0]
    try:
        try:
            envoy_binary()
            have_envoy = ""
        except EnvoyNotFoundError as exc:
            have_envoy = str(exc).splitlines()[0]
        if have_envoy:
            results.append(Result(benchmark="api: write -> Envoy serves it", measured=None, unit="ms", verdict="SKIP",
                                  notes=f"no Envoy binary: {have_envoy}"))
        else:
            results += _latency_results("one replica (SQLite)", [new_sqlite()], edits, log)
            if pg is not None:
                db = pg.new_database("meshplane_bench")
                results += _latency_results("across replicas (write on A, Envoy on B, PostgreSQL)", [db, db], edits, log)
        results += _throughput_results("SQLite", new_sqlite, nodes, writes, log)
        if pg is not None:
            results += _throughput_results("PostgreSQL", lambda: pg.new_database("meshplane_bench"), nodes, writes, log)
        if pg is None:
            results.append(Result(benchmark="api: PostgreSQL rows", measured=None, unit="", verdict="SKIP",
                                  notes=f"no PostgreSQL: {pg_reason}"))
    finally:
        if pg is not None:
            pg.close()
        tmp.cleanup()
    return results
