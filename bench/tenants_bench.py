"""Meshes don't slow each other: writes to a one-node mesh while another client writes to a
10,000-resource mesh of the same ``meshplane serve``.

Two ``meshplane serve --store sqlite:///...`` processes, each holding a one-node mesh ``tiny``:

* **floor** ("empty server"): the server holds only ``tiny``; one boto3 client calls
  ``update_virtual_node`` on ``tiny``'s node ``writes`` times, back to back;
* **measured**: the server also holds ``meshgen``'s mesh ``bench`` (``nodes`` nodes with their
  services, routers and routes: ~10,000 resources at 2,500 nodes, seeded by the API's own apply
  before the server starts); a second client, in a process of its own, calls ``update_route``
  on ``bench`` back to back for the whole time while the first makes the same ``tiny`` writes.

Both p50 and p99 of the ``tiny`` writes are reported against the floor's; the target is
p99 <= 1.5x the floor's p99. Each write is validated, committed and then reloaded and compiled
by the server (no Envoy connected), as in production.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench.api_bench import _client, _route, _seed, _Serve
from bench.common import Result, summary

REPO = Path(__file__).resolve().parent.parent

TINY_NODE = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
             "serviceDiscovery": {"dns": {"hostname": "tiny.local"}}}


def _tiny_writes(url: str, writes: int) -> list[float]:
    c = _client(url)
    c.create_mesh(meshName="tiny")
    c.create_virtual_node(meshName="tiny", virtualNodeName="only", spec=TINY_NODE)
    for i in range(3):  # warm up: connections, caches
        c.update_virtual_node(meshName="tiny", virtualNodeName="only",
                              spec={**TINY_NODE, "serviceDiscovery": {"dns": {"hostname": f"warm{i}.local"}}})
    times = []
    for i in range(writes):
        spec = {**TINY_NODE, "serviceDiscovery": {"dns": {"hostname": f"tiny-{i}.local"}}}
        started = time.perf_counter()
        c.update_virtual_node(meshName="tiny", virtualNodeName="only", spec=spec)
        times.append(time.perf_counter() - started)
    return times


def _measure(nodes: int, writes: int, log) -> tuple[list[float], list[float], int, int, list[float]]:
    from harness.processes import ProcessGroup

    with tempfile.TemporaryDirectory(prefix="meshplane-bench-tenants-") as tmp, \
            ProcessGroup(log_dir=Path(tmp) / "logs") as group:
        empty = _Serve(group, f"sqlite:///{tmp}/empty.db", "meshplane-empty")
        floor = _tiny_writes(empty.url, writes)
        empty.proc.stop()

        big_store = f"sqlite:///{tmp}/big.db"
        docs = _seed(big_store, nodes)
        log(f"tenants: seeded {len(docs):,} resources")
        busy = _Serve(group, big_store, "meshplane-busy")
        # the big mesh's client is a process of its own: in this one it would share the
        # interpreter (boto3's signing and parsing) with the client being measured
        writer = group.start("big-mesh-writer", [sys.executable, "-m", "bench.tenants_bench", "write-big", busy.url,
                                                 str(nodes)], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
        time.sleep(2.0)  # the big mesh's writes (and the reloads after them) are under way
        try:
            measured = _tiny_writes(busy.url, writes)
        finally:
            writer.stop()
        big_writes = len(re.findall(r"^wrote$", writer.output(), flags=re.M))
        busy.proc.stop()
        reloads = [float(ms) for ms in re.findall(r"recompiled in (\d+(?:\.\d+)?) ms", busy.proc.output())]
    return measured, floor, len(docs), big_writes, reloads


def _write_big(url: str, nodes: int) -> None:
    """``python -m bench.tenants_bench write-big URL NODES``: update_route on the big mesh back
    to back until killed, a line per write."""
    c = _client(url)
    i = 0
    while True:
        r = i % nodes
        c.update_route(meshName="bench", virtualRouterName=f"router-{r}", routeName=f"route-{r}",
                       spec=_route({f"node-{r}": 1 + i % 99, f"node-{(r + 1) % nodes}": 99 - i % 99}))
        print("wrote", flush=True)
        i += 1


def run(nodes: int = 2500, writes: int = 200, log=print) -> list[Result]:
    measured, floor, resources, big_writes, reloads = _measure(nodes, writes, log)
    m, f = summary(measured), summary(floor)
    ratio = m["p99"] / f["p99"]
    log(f"tenants: tiny writes p50 {m['p50'] * 1000:.1f} ms, p99 {m['p99'] * 1000:.1f} ms while the big mesh "
        f"took {big_writes} writes; on an empty server p50 {f['p50'] * 1000:.1f} ms, p99 {f['p99'] * 1000:.1f} ms; "
        f"the busy server reloaded {len(reloads)} times, p50 {summary(reloads)['p50'] if reloads else 0:.0f} ms")
    floor_desc = "the same update_virtual_node writes to the one-node mesh on a server holding nothing else."
    note = (f"{writes} update_virtual_node calls to a one-node mesh while another boto3 client made {big_writes} "
            f"update_route calls back to back to a {resources:,}-resource mesh of the same server (SQLite store, "
            "each write reloaded and compiled by the server)")
    return [
        Result(benchmark=f"tenants: one-node mesh write beside a {resources:,}-resource mesh's writes, p50",
               measured=m["p50"] * 1000, unit="ms", floor=f["p50"] * 1000, floor_desc=floor_desc, verdict="INFO",
               notes=note, details={"measured_s": m, "floor_s": f, "big_writes": big_writes, "resources": resources,
                        "reload_ms": reloads}),
        Result(benchmark=f"tenants: one-node mesh write beside a {resources:,}-resource mesh's writes, p99",
               measured=m["p99"] * 1000, unit="ms", floor=f["p99"] * 1000, floor_desc=floor_desc,
               target="p99 <= 1.5x the empty server's", verdict="PASS" if ratio <= 1.5 else "MISS"),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["write-big"]:
    _write_big(sys.argv[2], int(sys.argv[3]))
