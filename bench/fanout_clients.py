"""Simulated Envoys for the fan-out and shared-service benchmarks (a subprocess of
``bench.fanout_bench`` / ``bench.shared_service_bench``; not for direct use).

Holds ``--streams`` ADS streams over ``--channels`` gRPC channels (each its own HTTP/2
connection: ``grpc.use_local_subchannel_pool``), stream ``i`` speaking for node id
``<prefix><i + offset>``. Each stream subscribes to CDS, EDS, LDS and RDS (wildcard, all four
sent at once, the node on the first request) and ACKs every response it reads, as Envoy does.

``--envoy-node`` sends a node the size of a real Envoy's (1.40: its build version and 516
extensions, about 60 KB in the first request; each stream's node id as above) instead of a
bare id.

``--ramp RATE`` opens the streams at RATE per second instead of all at once: grpcio's core
fails streams (INTERNAL / CANCELLED) when thousands are opened in one burst from one
process, against any server.

When every stream holds all four types it writes ``--ready``. Each stream then records the
``time.monotonic()`` at which it has written the ACK of the first ``--watch`` version (default
rds) different from its first one (the change the server makes). When all streams have it,
or after ``--timeout`` seconds, it writes ``--out`` (JSON) and exits.

``--reconnect`` makes the streams behave like Envoy's xDS client when a stream ends: it is
opened again after a jittered exponential backoff (Envoy's ``JitteredExponentialBackOffStrategy``
for its xDS gRPC stream: a delay drawn uniformly from [0, b), b = ``--backoff-base`` (Envoy:
0.5 s) doubling after every attempt up to ``--backoff-max`` (Envoy: 30 s), back to the base
once a response arrives); the new stream's requests carry the versions it last ACKed, as
Envoy's do. Then the process does not exit after ``--out``: it waits until every stream has
had its stream end at least once and holds all four types again on a new stream (the
reconnect storm after a server restart), writes ``--storm-out`` and exits (or after
``--storm-timeout``). Every stream end is recorded (time, stream, status code, whether that
stream had received a response, details), so the benchmark can tell the restart's own
disconnects and refused connections while no server listens from failures once the new
server is ready. An attempt is a connect, as for Envoy: a gRPC channel fails calls at once
while it waits out its own reconnect backoff, even when the server is back, so in this mode
the channels retry every ``CHANNEL_BACKOFF_MS`` and an attempt on a channel that is not
connected takes the outcome of a connection attempt (``connect``: refused when a TCP connect
is, or times out after ``CONNECT_TIMEOUT_S``, else through once the channel is READY).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
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
SHORT_TYPES = dict(zip(("cds", "eds", "lds", "rds"), TYPES))
ROUTE = TYPES[3]
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ENVOY_BACKOFF_BASE_S = 0.5   # Envoy's xDS gRPC stream retry: base interval ...
ENVOY_BACKOFF_MAX_S = 30.0   # ... and its cap (envoyproxy/envoy: RetryInitialDelayMs / RetryMaxDelayMs)
CHANNEL_BACKOFF_MS = 100     # --reconnect: the channel retries its connection this often (gRPC: 1 s x 1.6 up to 120 s)
CONNECT_TIMEOUT_S = 5.0      # --reconnect: an attempt's TCP connect timeout (Envoy's default connect_timeout)
STREAM_WAIT_S = 60.0         # --reconnect: longest wait for a connected channel to be READY (the HTTP/2 handshake)


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


ENVOY_EXTENSIONS = 516  # what Envoy 1.40 lists in its node (measured: 61,376 bytes of first request)


def envoy_like_node() -> core_pb2.Node:
    """A node shaped like a real Envoy's, without the id: build version, build metadata and
    ``ENVOY_EXTENSIONS`` extensions of the real ones' average size (name, category, type URL)."""
    node = core_pb2.Node(cluster="bench", user_agent_name="envoy")
    node.user_agent_build_version.version.major_number = 1
    node.user_agent_build_version.version.minor_number = 40
    for key, value in (("ssl.version", "BoringSSL"), ("revision.status", "Clean"),
                       ("revision.sha", "0" * 40), ("build.type", "RELEASE")):
        node.user_agent_build_version.metadata.fields[key].string_value = value
    for i in range(ENVOY_EXTENSIONS):
        node.extensions.add(name=f"envoy.bench.extensions.filter_{i:03d}", category=f"envoy.bench.category_{i % 37:02d}",
                            type_urls=[f"envoy.extensions.bench.filter_{i:03d}.v3.FilterConfig"])
    return node


def raise_nofile_limit() -> int:
    """Raise the soft open-files limit to the hard one (many channels, many sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Backoff:
    """Envoy's JitteredExponentialBackOffStrategy: uniform in [0, b), b doubles up to max."""

    def __init__(self, base: float, maximum: float, rng: random.Random) -> None:
        self.base, self.maximum, self.rng = base, maximum, rng
        self.interval = base

    def next(self) -> float:
        interval = self.interval
        self.interval = self.maximum if interval > self.maximum / 2 else interval * 2
        return min(self.rng.random() * interval, self.maximum)

    def reset(self) -> None:
        self.interval = self.base


class Fleet:
    def __init__(self, n: int, watch: str):
        self.n = n
        self.watch = watch
        self.ready = 0
        self.changed = 0
        self.reconfigured = 0
        self.all_ready = asyncio.Event()
        self.all_changed = asyncio.Event()
        self.all_reconfigured = asyncio.Event()
        self.first_config_at: list[float | None] = [None] * n   # all four types held, first time
        self.acked_at: list[float | None] = [None] * n          # ACK of the first changed --watch version
        self.ended_at: list[float | None] = [None] * n          # first end of a stream that had config
        self.reconfig_at: list[float | None] = [None] * n       # all four types again, on a later stream
        self.last_attempt_at: list[float | None] = [None] * n   # start of the attempt that got config again
        self.responses = 0
        self.attempts = 0
        self.errors: list[str] = []
        # every stream end in --reconnect mode: [time, stream index, code, had a response, details, attempt start]
        self.ends: list[list] = []

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


async def listening(target: str, timeout: float) -> str | None:
    """None if something accepts a TCP connection at ``target`` (host:port), else why not."""
    host, _, port = target.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except asyncio.TimeoutError:
        return f"TCP connect timed out ({timeout:g} s)"
    except OSError as exc:
        return f"TCP connect: {exc.strerror or exc}"
    writer.close()
    return None


async def connect(channel: grpc.aio.Channel, target: str, timeout: float) -> str | None:
    """The outcome of a connection attempt on ``channel``, as Envoy has it: None once the
    channel is READY, else why not. Envoy's connect timeout bounds the TCP connect only:
    refused at once when nothing listens, failed after ``timeout``; once connected it sends
    its request and waits for the server, however busy. gRPC keeps a failing channel in
    TRANSIENT_FAILURE while it retries in the background, which says nothing about now: then
    a TCP connect to the target decides; a channel that is idle or connecting is followed
    until READY or a failed connection. Waiting for READY is bounded by ``STREAM_WAIT_S``."""
    states = grpc.ChannelConnectivity
    deadline = time.monotonic() + STREAM_WAIT_S
    state = channel.get_state(try_to_connect=True)
    failing = state == states.TRANSIENT_FAILURE
    if failing:
        refused = await listening(target, timeout)
        if refused is not None:
            return refused
    while state != states.READY:
        if state == states.SHUTDOWN:
            return "channel shut down"
        if state == states.TRANSIENT_FAILURE and not failing:
            return "connection failed"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"not connected within {STREAM_WAIT_S:g} s"
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except asyncio.TimeoutError:
            return f"not connected within {STREAM_WAIT_S:g} s"
        state = channel.get_state(try_to_connect=True)
        failing = failing and state == states.TRANSIENT_FAILURE
    return None


async def one_attempt(channel: grpc.aio.Channel, node: core_pb2.Node, index: int, fleet: Fleet,
                      versions: dict[str, str], st: dict) -> bool:
    """One ADS stream until it ends; True if it received a response. ``versions``: what this
    simulated Envoy last ACKed per type (sent again on a new stream, as Envoy does)."""
    attempt_at = time.monotonic()
    if st["reconnect"] and channel.get_state() != grpc.ChannelConnectivity.READY:
        # Envoy's attempt is a connect: refused at once while no server listens, through once
        # one does. A gRPC channel instead fails calls fast while it waits out its own
        # reconnect backoff, even after the server is back: so wait for the channel's next
        # real connection attempt and take its outcome as this attempt's.
        fleet.attempts += 1
        why = await connect(channel, st["target"], CONNECT_TIMEOUT_S)
        if why is not None:
            fleet.ends.append([round(time.monotonic(), 6), index, "UNAVAILABLE", False, f"not connected: {why}",
                               round(attempt_at, 6)])
            return False
        fleet.attempts -= 1
    call = channel.stream_stream(
        METHOD,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )()
    fleet.attempts += 1
    got_response = False
    code, details = "OK", ""
    try:
        for i, type_url in enumerate(TYPES):
            req = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=versions.get(type_url, ""))
            if i == 0:
                req.node.CopyFrom(node)
            await call.write(req)
        seen: set[str] = set()
        while True:
            resp = await call.read()
            if resp is grpc.aio.EOF:
                code = "EOF"
                return got_response
            got_response = True
            fleet.responses += 1
            await call.write(discovery_pb2.DiscoveryRequest(
                type_url=resp.type_url, version_info=resp.version_info, response_nonce=resp.nonce))
            versions[resp.type_url] = resp.version_info
            if resp.type_url == fleet.watch:
                if st["first_watch"] is None:
                    st["first_watch"] = resp.version_info
                elif resp.version_info != st["first_watch"] and fleet.acked_at[index] is None:
                    fleet.acked_at[index] = time.monotonic()
                    fleet.changed += 1
                    if fleet.changed == fleet.n:
                        fleet.all_changed.set()
            if len(seen) < len(TYPES):
                seen.add(resp.type_url)
                if len(seen) == len(TYPES):
                    now = time.monotonic()
                    if fleet.first_config_at[index] is None:
                        fleet.first_config_at[index] = now
                        fleet.ready += 1
                        if fleet.ready == fleet.n:
                            fleet.all_ready.set()
                    elif fleet.ended_at[index] is not None and fleet.reconfig_at[index] is None:
                        fleet.reconfig_at[index] = now
                        fleet.last_attempt_at[index] = attempt_at
                        fleet.reconfigured += 1
                        if fleet.reconfigured == fleet.n:
                            fleet.all_reconfigured.set()
    except asyncio.CancelledError:
        code = None
        raise
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code().name, str(exc.details())
        fleet.error(f"{node.id}: {code} {details}")
    except Exception as exc:  # e.g. a write to a call the transport already ended
        code, details = f"client:{type(exc).__name__}", str(exc)
        fleet.error(f"{node.id}: {code} {details}")
    finally:
        call.cancel()
        if code is not None and st["reconnect"]:
            now = time.monotonic()
            fleet.ends.append([round(now, 6), index, code, got_response, details[:100], round(attempt_at, 6)])
            if fleet.first_config_at[index] is not None and fleet.ended_at[index] is None:
                fleet.ended_at[index] = now
    return got_response


async def one_stream(channel: grpc.aio.Channel, node_id: str, index: int, fleet: Fleet, args, rng: random.Random) -> None:
    if args.envoy_node:
        node = core_pb2.Node()
        node.CopyFrom(args.node_template)
        node.id = node_id
    else:
        node = core_pb2.Node(id=node_id, cluster="bench", user_agent_name="bench-fanout")
    versions: dict[str, str] = {}
    st = {"first_watch": None, "reconnect": args.reconnect, "target": args.target}
    backoff = Backoff(args.backoff_base, args.backoff_max, rng)
    while True:
        got_response = await one_attempt(channel, node, index, fleet, versions, st)
        if not args.reconnect:
            return
        if got_response:
            backoff.reset()
        await asyncio.sleep(backoff.next())


async def run(args) -> dict:
    fleet = Fleet(args.streams, SHORT_TYPES[args.watch])
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if args.reconnect:
        # the channel's own reconnect backoff is not Envoy's: keep it short, so that the
        # per-stream backoff above is what spaces the attempts
        options += [("grpc.initial_reconnect_backoff_ms", CHANNEL_BACKOFF_MS),
                    ("grpc.max_reconnect_backoff_ms", CHANNEL_BACKOFF_MS)]
    channels = [grpc.aio.insecure_channel(args.target, options=options + [("bench.channel", i)]) for i in range(args.channels)]
    rng = random.Random(args.seed)
    started = time.monotonic()
    tasks: list[asyncio.Task] = []

    async def launch() -> None:
        for i in range(args.streams):
            if args.ramp > 0:
                delay = started + i / args.ramp - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_stream(
                channels[i % args.channels], f"{args.prefix}{i + args.offset}", i, fleet, args, random.Random(rng.random()))))

    launcher = asyncio.create_task(launch())
    result: dict = {"streams": args.streams, "channels": args.channels, "ramp": args.ramp, "started": started}
    try:
        await asyncio.wait_for(fleet.all_ready.wait(), args.timeout)
        result["connect_s"] = time.monotonic() - started
        _write_json(args.ready, {"ready": fleet.ready, "connect_s": result["connect_s"], "started": started,
                                 "first_config_at": fleet.first_config_at})
        try:
            await asyncio.wait_for(fleet.all_changed.wait(), args.timeout)
        except asyncio.TimeoutError:
            result["timeout"] = "change"
    except asyncio.TimeoutError:
        result["timeout"] = "ready"
    result.update(ready=fleet.ready, changed=fleet.changed, acked_at=fleet.acked_at, first_config_at=fleet.first_config_at,
                  responses=fleet.responses, attempts=fleet.attempts, errors=list(fleet.errors),
                  ends=list(fleet.ends))
    if args.reconnect and "timeout" not in result:
        _write_json(args.out, result)
        storm: dict = {"streams": args.streams}
        try:
            await asyncio.wait_for(fleet.all_reconfigured.wait(), args.storm_timeout)
        except asyncio.TimeoutError:
            storm["timeout"] = "storm"
        storm.update(reconfigured=fleet.reconfigured, ended_at=fleet.ended_at, reconfig_at=fleet.reconfig_at,
                     last_attempt_at=fleet.last_attempt_at, ends=fleet.ends, attempts=fleet.attempts,
                     responses=fleet.responses, errors=fleet.errors)
        result = {"storm": storm}
    launcher.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(launcher, *tasks, return_exceptions=True)
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
    parser.add_argument("--watch", choices=tuple(SHORT_TYPES), default="rds", help="the type whose change is timed")
    parser.add_argument("--ramp", type=float, default=0.0, help="open at most this many streams per second (0: all at once)")
    parser.add_argument("--reconnect", action="store_true", help="re-open ended streams with Envoy's jittered backoff")
    parser.add_argument("--backoff-base", type=float, default=ENVOY_BACKOFF_BASE_S)
    parser.add_argument("--backoff-max", type=float, default=ENVOY_BACKOFF_MAX_S)
    parser.add_argument("--storm-out", help="--reconnect: written when every stream has its config again after an end")
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--envoy-node", action="store_true", help="a node the size of a real Envoy's (516 extensions)")
    args = parser.parse_args(argv)
    args.node_template = envoy_like_node() if args.envoy_node else None
    if args.reconnect and not args.storm_out:
        parser.error("--reconnect needs --storm-out")
    raise_nofile_limit()
    result = asyncio.run(run(args))
    if "storm" in result:
        _write_json(args.storm_out, result["storm"])
        return 0 if "timeout" not in result["storm"] else 1
    _write_json(args.out, result)
    return 0 if "timeout" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
