"""The grpc.aio ADS servicer, shared by State-of-the-World and Delta xDS.

Per stream one reader task (requests -> state machine) and the handler coroutine as the
sender (state + snapshot -> responses in PUSH_ORDER). Both wake on one ``asyncio.Event``
that the cache also sets on a snapshot change. Nothing global is held while awaiting a
write, so a slow Envoy only slows its own stream.

SotW (``sotw.py``) and Delta (``delta.py``) share everything here but the state machine and
the send loop: the node and type_url checks on the first request, ``check_request`` on
every request, authorization, the resolver, the cache wake-up, the stream events
(``callbacks.Callbacks``) and cleanup. Any ``StreamError`` ends the stream with its status.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from typing import Awaitable, Callable, Union

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc

from xds_server.cache.snapshot import Snapshot, short_type
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.server.callbacks import Callbacks, StreamInfo
from xds_server.server.delta import DeltaKind, DeltaStreamState, plan_delta
from xds_server.server.errors import StreamError
from xds_server.server.sotw import RequestKind, StreamState, plan_response

LOG = logging.getLogger("meshplane.xds.ads")

# node -> snapshot key; makes sure the cache holds a snapshot for it. May be async. Raises
# StreamError to refuse the node (e.g. NOT_FOUND).
Resolver = Callable[[core_pb2.Node], Union[str, Awaitable[str]]]


def _envoy_version(node: core_pb2.Node) -> str:
    if node.HasField("user_agent_build_version"):
        v = node.user_agent_build_version.version
        return f"{node.user_agent_name} {v.major_number}.{v.minor_number}.{v.patch}"
    return f"{node.user_agent_name} {node.user_agent_version}".strip() or "unknown"


class _Stream:
    """Runtime glue for one stream: state, wake-up event, reader outcome."""

    __slots__ = ("state", "wake", "ended", "error")

    def __init__(self, delta: bool = False) -> None:
        self.state = DeltaStreamState() if delta else StreamState()
        self.wake = asyncio.Event()
        self.ended = False                 # client half-closed or went away
        self.error: StreamError | None = None


# Hostile or broken clients: what one request and one stream may hold. Generous for Envoy
# (it uses ~6 types and names a few thousand resources at most), small enough that one
# stream cannot grow the server without bound. Beyond them: an error for that stream only.
MAX_TYPES_PER_STREAM = 32
MAX_NAMES_PER_REQUEST = 100_000
MAX_NAME_LENGTH = 2048
TYPE_URL_PREFIX = "type.googleapis.com/"


def check_request(type_url: str, known_types, name_lists) -> None:
    """Refuse malformed or oversized requests with a clear stream error, so one hostile or
    broken client cannot grow the server without bound."""
    if not type_url:
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "type_url is required for ADS")
    if not type_url.startswith(TYPE_URL_PREFIX) or len(type_url) > 256:
        raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed type_url {type_url[:80]!r}")
    if type_url not in known_types and len(known_types) >= MAX_TYPES_PER_STREAM:
        raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {MAX_TYPES_PER_STREAM} type URLs on one stream")
    count = 0
    for names in name_lists:
        count += len(names)
        if count > MAX_NAMES_PER_REQUEST:
            raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"more than {MAX_NAMES_PER_REQUEST} resource names in one request")
        if any(len(name) > MAX_NAME_LENGTH for name in names):
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"a resource name longer than {MAX_NAME_LENGTH} characters")


class AggregatedDiscoveryServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(
        self,
        cache: SnapshotCache,
        resolver: Resolver,
        callbacks: Callbacks,
        *,
        log: logging.Logger = LOG,
        authorize: Callable[[core_pb2.Node, grpc.aio.ServicerContext], object] | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        self.cache = cache
        self.resolver = resolver
        # set once the resolver can answer (``serve``: the model is loaded): a stream taken
        # before waits for it with its first request unread, costing no CPU meanwhile
        self.ready = ready
        # ``serve`` sets this when it stops: every stream then ends at once, and one line says
        # so instead of one per stream (10,000 lines took ~2 s of a 12 s stop)
        self.stopping = False
        self.authorize = authorize  # may raise StreamError (UNAUTHENTICATED / PERMISSION_DENIED)
        self.callbacks = callbacks  # every stream event goes here (status, metrics)
        self._stream_ids = itertools.count(1)
        self.log = log

    async def StreamAggregatedResources(self, request_iterator, context):
        await self._serve(request_iterator, context, delta=False)

    async def DeltaAggregatedResources(self, request_iterator, context):
        await self._serve(request_iterator, context, delta=True)

    async def _serve(self, request_iterator, context, *, delta: bool) -> None:
        """One ADS stream of either variant: identify the node, then run reader + sender.

        SotW and Delta share everything but the state machine and the send loop: the first
        request must carry the node (with an id; later ones may omit it) and a type_url, then
        authorization, the resolver, the stream events, the cache wake-up, and cleanup.
        """
        kind = "delta ADS" if delta else "ADS"
        peer = context.peer()
        if self.ready is not None and not self.ready.is_set():
            await self.ready.wait()
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if not first.HasField("node") or not first.node.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node with an id is required on the first request")
        if not first.type_url:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "type_url is required for ADS")
        node = first.node
        try:
            if self.authorize is not None:
                self.authorize(node, context)  # before anything about the node is computed or sent
            key = self.resolver(node)
            if inspect.isawaitable(key):
                key = await key
        except StreamError as e:
            self.log.warning("%s stream rejected node=%s peer=%s: %s %s", kind, node.id, peer, e.code.name, e.message)
            await context.abort(e.code, e.message)
        except Exception:
            self.log.exception("%s resolver failed for node=%s peer=%s", kind, node.id, peer)
            await context.abort(grpc.StatusCode.INTERNAL, "could not resolve configuration for this node")
        if self.cache.get(key) is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"no configuration for node {node.id!r}")

        stream = _Stream(delta=delta)
        info = StreamInfo(id=next(self._stream_ids), node_id=node.id, key=key, peer=peer, delta=delta)
        self.callbacks.on_stream_open(info)
        self.cache.add_listener(key, stream.wake)
        started = time.monotonic()
        self.log.info(
            "%s stream open node=%s key=%s peer=%s envoy=%s",
            kind, node.id, key, peer, _envoy_version(node),
        )
        handle = self._handle_delta if delta else self._handle
        reader = asyncio.create_task(self._read(stream, info, first, request_iterator, handle))
        # a stream lives for hours: its first request is not kept (a real Envoy's Node carries
        # its build, metadata and extension list, kilobytes per stream)
        del first, node
        reason = "client closed"
        try:
            if delta:
                await self._send_loop_delta(stream, info, context)
            else:
                await self._send_loop(stream, info, context)
            if stream.error is not None:
                reason = f"{stream.error.code.name}: {stream.error.message}"
                await context.abort(stream.error.code, stream.error.message)
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception as e:
            if stream.error is None:
                reason = f"error: {e!r}"
            raise
        finally:
            reader.cancel()
            self.cache.remove_listener(key, stream.wake)
            self.callbacks.on_stream_close(info)
            self.log.log(
                logging.DEBUG if self.stopping else logging.INFO,
                "%s stream closed node=%s peer=%s after %.1fs: %s",
                kind, info.node_id, peer, time.monotonic() - started, reason,
            )

    async def _read(self, stream: _Stream, info: StreamInfo, first, request_iterator, handle) -> None:
        """Reader task: fold requests into state, wake the sender. Never writes."""
        try:
            handle(stream, info, first)
            first = None  # not kept for the stream's life (see _serve)
            async for req in request_iterator:
                handle(stream, info, req)
        except StreamError as e:
            stream.error = e
        except asyncio.CancelledError:
            raise
        except Exception as e:  # transport errors: the client is gone
            self.log.debug("ADS read ended node=%s: %r", info.node_id, e)
        finally:
            stream.ended = True
            stream.wake.set()

    def _handle(self, stream: _Stream, info: StreamInfo, req) -> None:
        node_id = info.node_id
        check_request(req.type_url, stream.state.types, (req.resource_names,))
        kind = stream.state.on_request(req)
        ts = stream.state.types[req.type_url]
        t = short_type(req.type_url)
        if kind == RequestKind.STALE:
            self.log.debug("ADS %s %s stale nonce %s ignored", node_id, t, req.response_nonce)
            return
        if kind == RequestKind.NACK:
            self.callbacks.on_nack(info, req.type_url, ts.sent_version, req.error_detail.message)
            self.log.warning(
                "ADS NACK node=%s type=%s rejected version=%s (keeps %s): %s",
                node_id, t, ts.sent_version, req.version_info or "none", req.error_detail.message,
            )
            return
        if kind == RequestKind.ACK:
            self.callbacks.on_ack(info, req.type_url, req.version_info)
        stream.wake.set()

    def _handle_delta(self, stream: _Stream, info: StreamInfo, req) -> None:
        """Fold one DeltaDiscoveryRequest; report ACK/NACK to status; always wake the sender.

        Unlike SotW there is no "stale, drop it": the subscription change in a request is
        applied whatever its nonce (a nonce only says which response an ACK/NACK is about), so
        the sender always re-plans.
        """
        node_id = info.node_id
        check_request(
            req.type_url, stream.state.types,
            (req.resource_names_subscribe, req.resource_names_unsubscribe, req.initial_resource_versions),
        )
        known = stream.state.types.get(req.type_url)
        first = known is None or not known.requested
        kind, version = stream.state.on_request(req)
        t = short_type(req.type_url)
        if first and req.initial_resource_versions:
            # a reconnect: only what differs from the versions the client says it holds is sent
            self.log.info(
                "delta ADS %s %s resumes holding %d resources", node_id, t, len(req.initial_resource_versions),
            )
        if kind == DeltaKind.NACK:
            self.callbacks.on_nack(info, req.type_url, version, req.error_detail.message)
            self.log.warning(
                "delta ADS NACK node=%s type=%s rejected version=%s: %s",
                node_id, t, version, req.error_detail.message,
            )
        elif kind == DeltaKind.ACK:
            self.callbacks.on_ack(info, req.type_url, version)
        elif kind == DeltaKind.UNKNOWN_NONCE:
            self.log.debug("delta ADS %s %s unknown nonce %s (subscription applied)", node_id, t, req.response_nonce)
        stream.wake.set()

    async def _next_snapshot(self, stream: _Stream, key: str) -> Snapshot | None:
        """Wait for a wake-up (a request or a snapshot change); the snapshot to plan from, or
        None when the stream is over (client gone, or its configuration removed)."""
        await stream.wake.wait()
        stream.wake.clear()
        if stream.ended:
            return None
        snapshot = self.cache.get(key)
        if snapshot is None:
            stream.error = StreamError(grpc.StatusCode.UNAVAILABLE, "configuration for this node was removed")
        return snapshot

    async def _send_loop(self, stream: _Stream, info: StreamInfo, context) -> None:
        """Sender: on each wake, push every type that needs it, in PUSH_ORDER."""
        while (snapshot := await self._next_snapshot(stream, info.key)) is not None:
            # one snapshot per pass keeps CDS/EDS/LDS/RDS of a push consistent; re-plan each
            # type just before its write so requests read meanwhile are taken into account
            for phase in (stream.state.order, stream.state.draining_types):  # removals last: CDS drops a cluster only after the routes moved off it
                for type_url in phase():
                    plan = plan_response(stream.state.types[type_url], snapshot.get(type_url))
                    if plan is None:
                        continue
                    resp = stream.state.commit(plan)
                    self.callbacks.on_response_sent(info, type_url, plan.version, plan.sent)
                    self.log.debug(
                        "ADS push node=%s type=%s version=%s nonce=%s resources=%d",
                        info.node_id, short_type(type_url), plan.version, resp.nonce, len(plan.resources),
                    )
                    await context.write(resp)
                    if stream.ended:
                        return


    async def _send_loop_delta(self, stream: _Stream, info: StreamInfo, context) -> None:
        """Delta sender: per wake, additions/updates in PUSH_ORDER, then removals in BREAK_ORDER.

        The two phases make a change make-before-break across types: a new
        cluster and its endpoints arrive before the route that uses it, and a cluster the
        client holds is removed only after the route update that stopped using it. One
        snapshot per pass keeps the phases consistent; each plan is made just before its
        write, so requests read meanwhile are taken into account.
        """
        state: DeltaStreamState = stream.state
        while (snapshot := await self._next_snapshot(stream, info.key)) is not None:
            for removals in (False, True):
                for type_url in state.order(phase_removals=removals):
                    plan = plan_delta(state.types[type_url], snapshot.get(type_url), removals=removals)
                    if plan is None:
                        continue
                    resp = state.commit(plan)
                    self.callbacks.on_response_sent(info, type_url, plan.version, {name: v for name, v, _ in plan.resources})
                    self.log.debug(
                        "delta ADS push node=%s type=%s version=%s nonce=%s resources=%d removed=%d",
                        info.node_id, short_type(type_url), plan.version, resp.nonce,
                        len(plan.resources), len(plan.removed),
                    )
                    await context.write(resp)
                    if stream.ended:
                        return


def add_to_server(server: grpc.aio.Server, servicer: AggregatedDiscoveryServicer) -> None:
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
