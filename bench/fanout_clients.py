"""Simulated Envoys for the fan-out benchmark (a subprocess of ``bench.fanout_bench``).

Holds ``--streams`` ADS streams over ``--channels`` gRPC channels (each its own HTTP/2
connection: ``grpc.use_local_subchannel_pool``), stream ``i`` speaking for node id
``<prefix><i>``. Each stream subscribes to CDS, EDS, LDS and RDS (wildcard, all four sent
at once) and ACKs every response it reads, as Envoy does.

When every stream holds all four types it writes ``--ready``. Each stream then records the
``time.monotonic()`` at which it has written the ACK of the first RDS version different from
its first one (the change the server makes on SIGUSR1). When all streams have it, or after
``--timeout`` seconds, it writes ``--out`` (JSON) and exits.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.service.discovery.v3 import discovery_pb2

TYPES = (
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
)
ROUTE = TYPES[3]
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


class Fleet:
    def __init__(self, n: int):
        self.n = n
        self.ready = 0
        self.changed = 0
        self.all_ready = asyncio.Event()
        self.all_changed = asyncio.Event()
        self.acked_at: list[float | None] = [None] * n
        self.responses = 0
        self.errors: list[str] = []


async def one_stream(channel: grpc.aio.Channel, node_id: str, index: int, fleet: Fleet) -> None:
    call = channel.stream_stream(
        METHOD,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )()
    try:
        node = core_pb2.Node(id=node_id, cluster="bench", user_agent_name="bench-fanout")
        for i, type_url in enumerate(TYPES):
            req = discovery_pb2.DiscoveryRequest(type_url=type_url)
            if i == 0:
                req.node.CopyFrom(node)
            await call.write(req)
        seen: set[str] = set()
        first_route: str | None = None
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                return
            fleet.responses += 1
            await call.write(discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url, version_info=resp.version_info, response_nonce=resp.nonce))
            if resp.type_url == ROUTE:
                if first_route is None:
                    first_route = resp.version_info
                elif resp.version_info != first_route and fleet.acked_at[index] is None:
                    fleet.acked_at[index] = time.monotonic()
                    fleet.changed += 1
                    if fleet.changed == fleet.n:
                        fleet.all_changed.set()
            if len(seen) < len(TYPES):
                seen.add(resp.type_url)
                if len(seen) == len(TYPES):
                    fleet.ready += 1
                    if fleet.ready == fleet.n:
                        fleet.all_ready.set()
    except asyncio.CancelledError:
        raise
    except grpc.aio.AioRpcError as exc:
        if len(fleet.errors) < 20:
            fleet.errors.append(f"{node_id}: {exc.code().name} {exc.details()}")
    finally:
        call.cancel()


async def run(args) -> dict:
    fleet = Fleet(args.streams)
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    channels = [grpc.aio.insecure_channel(args.target, options=options + [("bench.channel", i)]) for i in range(args.channels)]
    started = time.monotonic()
    tasks = [asyncio.create_task(one_stream(channels[i % args.channels], f"{args.prefix}{i + args.offset}", i, fleet))
             for i in range(args.streams)]
    result: dict = {"streams": args.streams, "channels": args.channels}
    try:
        await asyncio.wait_for(fleet.all_ready.wait(), args.timeout)
        result["connect_s"] = time.monotonic() - started
        _write_json(args.ready, {"ready": fleet.ready, "connect_s": result["connect_s"]})
        try:
            await asyncio.wait_for(fleet.all_changed.wait(), args.timeout)
        except asyncio.TimeoutError:
            result["timeout"] = "change"
    except asyncio.TimeoutError:
        result["timeout"] = "ready"
    result.update(ready=fleet.ready, changed=fleet.changed, acked_at=fleet.acked_at,
                  responses=fleet.responses, errors=fleet.errors)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--channels", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="node id prefix; stream i is <prefix><i>")
    parser.add_argument("--offset", type=int, default=0, help="stream i is <prefix><i + offset>")
    parser.add_argument("--ready", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    _write_json(args.out, result)
    return 0 if "timeout" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
