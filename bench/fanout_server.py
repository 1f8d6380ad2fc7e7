"""Fan-out benchmark server (a subprocess of ``bench.fanout_bench``; not for direct use).

``--mode ads``: the real ADS servicer (``xds_server.server.servicer.AggregatedDiscoveryServicer``)
with a real ``SnapshotCache`` and ``StatusRegistry`` (with metrics, wired as ``meshplane
serve`` wires them), one snapshot key per node id. Snapshots come precompiled from
``--data`` (the compile is measured by the compile benchmark, not here).

``--mode raw``: the floor. A generic grpcio stream handler on the same method path that
sends pre-serialized ``DiscoveryResponse`` bytes (the same resources) and only counts what
it reads: no protocol state, no per-stream message building.

Both write ``--ready`` (JSON with the bound port) when serving. On SIGUSR1 they switch
every node to its "after" configuration; the ``time.monotonic()`` of that moment (the
clock is system-wide on Linux, so the client process can compare) and how long the switch
took go to ``--t0``. SIGTERM/SIGINT stop the server.

For the raw floor, ``--changed-type`` (cds, eds, lds, rds; default rds) is the one type the
switch pushes again (its "after" bytes, version v2); ``--port`` binds a fixed port (a restart
on the same address) and ``--start-changed`` starts in the switched state (the restarted
floor of the shared-service benchmark's reconnect storm serves what the clients last had).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import signal
import sys
import time

import grpc


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _packed(resources: dict) -> dict:
    """``{type_url: [(name, type_url_of_any, bytes)]}`` -> ``{type_url: {name: Any}}``."""
    from google.protobuf import any_pb2

    return {t: {name: any_pb2.Any(type_url=tu, value=value) for name, tu, value in items} for t, items in resources.items()}


def _options():
    try:
        from xds_server.serve import GRPC_OPTIONS
        return list(GRPC_OPTIONS)
    except ImportError:  # pragma: no cover
        return []


async def _serve_ads(data: dict, args) -> None:
    from xds_server.server import servicer as ads
    from xds_server.server.errors import StreamError
    from xds_server.cache.snapshot_cache import SnapshotCache
    from xds_server.cache.snapshot import Snapshot
    from xds_server.observability import metrics
    from xds_server.observability.status import StatusRegistry
    from xds_server.server.callbacks import CallbackFanout

    cache = SnapshotCache()
    # the stream subscribers of `meshplane serve`: status and metrics
    stream_events = CallbackFanout(StatusRegistry(cache=cache), metrics.StreamMetrics(metrics.DEFAULT, cache))
    for node_id, resources in data["before"].items():
        cache.set(node_id, Snapshot.from_resources(_packed(resources)))
    after = {node_id: Snapshot.from_resources(_packed(r)) for node_id, r in data["after"].items()}
    del data

    def resolver(node) -> str:
        if cache.get(node.id) is None:
            raise StreamError(grpc.StatusCode.NOT_FOUND, f"unknown node {node.id}")
        return node.id

    server = grpc.aio.server(options=_options())
    ads.add_to_server(server, ads.AggregatedDiscoveryServicer(cache, resolver, stream_events))

    def change() -> dict:
        t0 = time.monotonic()
        for node_id, snapshot in after.items():
            cache.set(node_id, snapshot)
        return {"t0": t0, "set_s": time.monotonic() - t0}

    await _run(server, change, args)


TYPE_ORDER = ("type.googleapis.com/envoy.config.cluster.v3.Cluster",
              "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
              "type.googleapis.com/envoy.config.listener.v3.Listener",
              "type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
SHORT_TYPES = dict(zip(("cds", "eds", "lds", "rds"), TYPE_ORDER))


async def _serve_raw(data: dict, args) -> None:
    from envoy.service.discovery.v3 import discovery_pb2
    from google.protobuf import any_pb2

    changed_type = SHORT_TYPES[args.changed_type]
    changed_index = TYPE_ORDER.index(changed_type)

    def response(type_url: str, items, version: str, nonce: str) -> bytes:
        resources = [any_pb2.Any(type_url=tu, value=value) for _, tu, value in sorted(items)]
        return discovery_pb2.DiscoveryResponse(version_info=version, resources=resources, type_url=type_url,
                                               nonce=nonce).SerializeToString()

    initial = {n: [response(t, r.get(t, []), "v1", f"raw-{i}") for i, t in enumerate(TYPE_ORDER)] for n, r in data["before"].items()}
    final = {n: response(changed_type, r.get(changed_type, []), "v2", "raw-9") for n, r in data["after"].items()}
    del data
    waiting: list[asyncio.Event] = []
    state = {"changed": False, "reads": 0}

    def start_changed() -> None:
        for node_id, payloads in initial.items():
            payloads[changed_index] = final[node_id]
        state["changed"] = True

    if args.start_changed:
        start_changed()

    async def drain(request_iterator) -> None:
        async for _ in request_iterator:
            state["reads"] += 1

    async def handler(request_iterator, context):
        first = await request_iterator.__anext__()
        node_id = discovery_pb2.DiscoveryRequest.FromString(first).node.id
        del first  # not kept for the stream's life (an Envoy-sized node is ~60 KB)
        already = state["changed"]
        for payload in initial[node_id]:
            await context.write(payload)
        reader = asyncio.ensure_future(drain(request_iterator))
        if already:  # opened after the switch: it already has the "after" bytes
            try:
                await reader
            finally:
                reader.cancel()
            return
        if not state["changed"]:
            event = asyncio.Event()
            waiting.append(event)
            done, _ = await asyncio.wait([reader, asyncio.ensure_future(event.wait())], return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                return
        await context.write(final[node_id])
        try:
            await reader
        finally:
            reader.cancel()

    method = grpc.stream_stream_rpc_method_handler(handler)  # no (de)serializers: bytes in, bytes out
    generic = grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService", {"StreamAggregatedResources": method})
    server = grpc.aio.server(options=_options())
    server.add_generic_rpc_handlers((generic,))

    def change() -> dict:
        t0 = time.monotonic()
        state["changed"] = True
        for event in waiting:
            event.set()
        start_changed()  # streams opened from now on get the "after" bytes at once
        return {"t0": t0, "set_s": time.monotonic() - t0}

    await _run(server, change, args)


async def _run(server, change, args) -> None:
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_usr1() -> None:
        _write_json(args.t0, change())

    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    _write_json(args.ready, {"port": port, "pid": os.getpid(), "at": time.monotonic()})
    try:
        await asyncio.wait_for(stop.wait(), args.max_runtime)
    except asyncio.TimeoutError:
        print("fanout_server: max runtime reached, stopping", file=sys.stderr)
    await server.stop(grace=0.2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("ads", "raw"), required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--t0", required=True)
    parser.add_argument("--max-runtime", type=float, default=300.0, help="stop by itself after this many seconds")
    parser.add_argument("--changed-type", choices=tuple(SHORT_TYPES), default="rds",
                        help="raw: the type the switch pushes again (default rds)")
    parser.add_argument("--port", type=int, default=0, help="listen on 127.0.0.1:PORT (default: any free port)")
    parser.add_argument("--start-changed", action="store_true", help="raw: start in the switched state")
    args = parser.parse_args(argv)
    with open(args.data, "rb") as f:
        data = pickle.load(f)
    serve = _serve_ads if args.mode == "ads" else _serve_raw
    asyncio.run(serve(data, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
