"""ADS (State-of-the-World and Delta): per-stream, per-type protocol state and the grpc.aio servicer.

Two layers, on purpose:

* ``TypeState`` / ``StreamState`` / ``plan_response`` — a pure state machine. ``on_request``
  folds a DiscoveryRequest into the per-type state (subscription, ACK, NACK, stale nonce);
  ``plan_response`` answers "what should this client get now for this type?" from that state
  and a Snapshot. No gRPC, no I/O: unit-testable, and reusable by Delta xDS, bounded queues
  and metrics later.
* ``AggregatedDiscoveryServicer`` — per stream one reader task (requests -> state) and the
  handler coroutine as the sender (state + snapshot -> responses in PUSH_ORDER). Both wake
  on one ``asyncio.Event`` that the cache also sets on a snapshot change. Nothing global is
  held while awaiting a write, so a slow Envoy only slows its own stream.

The protocol rules come from shared/reference/xds-control-planes.md §1 (A-E, H). Delta xDS
(§1 F) has its own pure state machine in ads_delta.py and shares the servicer: node/type_url
checks, resolver, status, wake-ups and cleanup are identical; only the state machine and
the send loop differ.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Union

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from xds_server.server.delta import DeltaKind, DeltaRequestInvalid, DeltaStreamState, plan_delta
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.cache.snapshot import FULL_STATE_TYPES, PUSH_ORDER, TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE
from xds_server.cache.snapshot import Snapshot, TypeSnapshot, short_type
from xds_server.server.callbacks import Callbacks, StreamInfo

LOG = logging.getLogger("meshplane.xds.ads")

# After a CDS (LDS) response Envoy re-creates clusters (listeners) that wait for a fresh
# EDS (RDS) answer, and it asks with the *same* version/nonce — which looks like an ACK
# (§1 D22/D23). Istio's AlwaysRespond: the next request of the dependent type is answered.
WARMING_DEPENDENTS = {TYPE_CLUSTER: TYPE_ENDPOINT, TYPE_LISTENER: TYPE_ROUTE}


class NodeRejected(Exception):
    """Raised by a resolver: close the stream with this status (e.g. NOT_FOUND)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# node -> snapshot key; makes sure the cache holds a snapshot for it. May be async.
Resolver = Callable[[core_pb2.Node], Union[str, Awaitable[str]]]


class StreamError(Exception):
    """A protocol violation that ends the stream with ``code``."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------
# Pure per-stream state machine
# ---------------------------------------------------------------------------------------

@dataclass
class TypeState:
    """What one stream asked for and was sent, for one type URL."""

    type_url: str
    requested: bool = False          # a request of this type was seen; never push otherwise
    ever_named: bool = False         # legacy wildcard only until the first name (or "*")
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    force: bool = False              # answer at the next opportunity even if nothing changed
    always_respond: bool = False     # answer the next non-stale request (warming dependency)
    sent_version: str | None = None
    sent_nonce: str | None = None
    sent: dict[str, str] = field(default_factory=dict)  # name -> resource version last sent
    sent_resources: dict[str, any_pb2.Any] = field(default_factory=dict)  # CDS only: what the client holds
    draining: bool = False           # CDS: removed clusters were kept for one pass; drop them now
    parked_version: str | None = None  # NACKed snapshot version: stay silent while it is current

    @property
    def subscribed(self) -> bool:
        return self.wildcard or bool(self.names)

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def update_subscription(self, resource_names) -> None:
        """Apply a request's ``resource_names`` (§1 C15/C16: legacy wildcard, unsubscribe)."""
        requested = set(resource_names)
        if not requested and not self.ever_named:
            wildcard, names = True, frozenset()      # legacy wildcard
        else:
            self.ever_named = True
            wildcard = "*" in requested
            names = frozenset(requested - {"*"})
        if not self.wildcard and (wildcard or names - self.names):
            self.force = True                        # newly requested names are sent (#16)
        self.wildcard, self.names = wildcard, names
        # forget what was sent for names no longer wanted, so a re-subscribe resends them
        self.sent = {n: v for n, v in self.sent.items() if self.wants(n)}


class RequestKind:
    INITIAL = "initial"
    ACK = "ack"
    NACK = "nack"
    REQUEST = "request"  # non-stale, but not acking the last response (e.g. after a NACK)
    STALE = "stale"


@dataclass(frozen=True)
class Plan:
    """One response to send: the chosen resources of one type at one snapshot version."""

    type_url: str
    version: str
    resources: tuple[any_pb2.Any, ...]
    sent: dict[str, str]  # name -> resource version
    names: tuple[str, ...] = ()  # the names of ``resources``, in order
    drain: bool = False  # clusters kept only until the rest of this pass has moved off them


def plan_response(ts: TypeState, tsnap: TypeSnapshot) -> Plan | None:
    """Decide whether (and what) this client gets now for one type. Pure.

    Rules: never for an unrequested or fully unsubscribed type (§1 B10); silent while the
    NACKed version is still current (B8); CDS/LDS carry every wanted resource, EDS/RDS/SDS
    the requested names that exist (D19-D21); send when forced (initial, new names,
    warming dependency) or when a wanted resource changed, appeared, or (full-state types
    only) disappeared.
    """
    if not ts.requested or not ts.subscribed:
        return None
    if ts.parked_version is not None and ts.parked_version == tsnap.version:
        return None
    if ts.wildcard:
        names = list(tsnap.resources)
    else:
        names = sorted(n for n in ts.names if n in tsnap.resources)
    rv = tsnap.resource_versions
    changed = ts.force or any(ts.sent.get(n) != rv[n] for n in names)
    if not changed and ts.type_url in FULL_STATE_TYPES:
        changed = any(n not in tsnap.resources for n in ts.sent if ts.wants(n))
    if not changed:
        return None
    if ts.type_url == TYPE_CLUSTER and not ts.draining:
        dropped = sorted(n for n in ts.sent if n not in tsnap.resources and ts.wants(n) and n in ts.sent_resources)
        if dropped:
            # Make-before-break for removals (§1 E26): a route may still point at a removed
            # cluster until the RDS of this same pass arrives. Keep the removed clusters in
            # this CDS response; the pass ends with a second CDS response without them.
            kept = sorted(set(names) | set(dropped))
            return Plan(
                type_url=ts.type_url,
                version=f"{tsnap.version}+draining",
                resources=tuple(tsnap.resources[n] if n in tsnap.resources else ts.sent_resources[n] for n in kept),
                sent={n: rv[n] if n in tsnap.resources else ts.sent[n] for n in kept},
                names=tuple(kept),
                drain=True,
            )
    return Plan(
        type_url=ts.type_url,
        version=tsnap.version,
        resources=tuple(tsnap.resources[n] for n in names),
        sent={n: rv[n] for n in names},
        names=tuple(names),
    )


class StreamState:
    """All per-type state of one ADS stream, plus its nonce source."""

    def __init__(self) -> None:
        self.types: dict[str, TypeState] = {}
        self._nonce_prefix = secrets.token_hex(4)  # nonces never repeat across streams either
        self._nonces = itertools.count(1)

    def type(self, type_url: str) -> TypeState:
        ts = self.types.get(type_url)
        if ts is None:
            ts = self.types[type_url] = TypeState(type_url)
        return ts

    def on_request(self, req: discovery_pb2.DiscoveryRequest) -> str:
        """Fold one request into the state; returns its RequestKind."""
        if not req.type_url:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "type_url is required for ADS")
        ts = self.type(req.type_url)
        nonce = req.response_nonce
        # A nonce only means something if we sent one for this type on this stream; otherwise
        # (e.g. a nonce from a previous connection) the request is an initial one (§1 H41).
        if nonce and ts.sent_nonce is not None and nonce != ts.sent_nonce:
            return RequestKind.STALE                  # §1 B9: superseded, drop entirely
        ts.requested = True
        ts.update_subscription(req.resource_names)
        if req.HasField("error_detail"):
            ts.parked_version = ts.sent_version       # never resend what was rejected (§1 B8)
            ts.always_respond = False
            return RequestKind.NACK
        if not nonce or ts.sent_nonce is None:
            ts.force = True                           # INIT / reconnect: always answered
            return RequestKind.INITIAL
        if ts.always_respond:
            ts.force, ts.always_respond = True, False
        if req.version_info != ts.sent_version:
            # still on an older version (a follow-up after a NACK): not an ACK, stay parked
            return RequestKind.REQUEST
        ts.parked_version = None
        return RequestKind.ACK

    def draining_types(self) -> list[str]:
        """Types whose removals wait for the end of the pass (CDS kept removed clusters)."""
        ts = self.types.get(TYPE_CLUSTER)
        return [TYPE_CLUSTER] if ts is not None and ts.draining else []

    def order(self) -> list[str]:
        """Requested types in make-before-break order; unknown types after, sorted."""
        known = [t for t in PUSH_ORDER if t in self.types and self.types[t].requested]
        extra = sorted(t for t, s in self.types.items() if s.requested and t not in PUSH_ORDER)
        return known + extra

    def commit(self, plan: Plan) -> discovery_pb2.DiscoveryResponse:
        """Record ``plan`` as sent (before the write, so replies to it are never 'stale')."""
        ts = self.types[plan.type_url]
        nonce = f"{self._nonce_prefix}-{next(self._nonces)}"
        ts.sent_version, ts.sent_nonce, ts.sent = plan.version, nonce, dict(plan.sent)
        if plan.type_url == TYPE_CLUSTER:
            ts.sent_resources = dict(zip(plan.names, plan.resources))
            ts.draining = plan.drain
        ts.force = False
        ts.always_respond = False  # this response already reaches whatever is warming
        dependent = WARMING_DEPENDENTS.get(plan.type_url)
        if dependent is not None:
            self.type(dependent).always_respond = True
        return discovery_pb2.DiscoveryResponse(
            version_info=plan.version,
            resources=list(plan.resources),
            type_url=plan.type_url,
            nonce=nonce,
        )


# ---------------------------------------------------------------------------------------
# grpc.aio servicer
# ---------------------------------------------------------------------------------------

def _envoy_version(node: core_pb2.Node) -> str:
    if node.HasField("user_agent_build_version"):
        v = node.user_agent_build_version.version
        return f"{node.user_agent_name} {v.major_number}.{v.minor_number}.{v.patch}"
    return f"{node.user_agent_name} {node.user_agent_version}".strip() or "unknown"


class _Stream:
    """Runtime glue for one stream: state, wake-up event, reader outcome."""

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
    """Refuse malformed or oversized requests with a clear stream error (§ hostile input)."""
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
    ) -> None:
        self.cache = cache
        self.resolver = resolver
        self.authorize = authorize  # may raise NodeRejected (UNAUTHENTICATED / PERMISSION_DENIED)
        self.callbacks = callbacks  # every stream event goes here (status, metrics)
        self._stream_ids = itertools.count(1)
        self.log = log

    async def StreamAggregatedResources(self, request_iterator, context):
        await self._serve(request_iterator, context, delta=False)

    async def DeltaAggregatedResources(self, request_iterator, context):
        await self._serve(request_iterator, context, delta=True)

    async def _serve(self, request_iterator, context, *, delta: bool) -> None:
        """One ADS stream of either variant: identify the node, then run reader + sender.

        SotW and Delta share everything but the state machine and the send loop: node and
        type_url checks on the first request (§1 A1, A2), the resolver, status registration,
        the cache wake-up, and cleanup.
        """
        kind = "delta ADS" if delta else "ADS"
        peer = context.peer()
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
        except NodeRejected as e:
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
            self.log.info(
                "%s stream closed node=%s peer=%s after %.1fs: %s",
                kind, node.id, peer, time.monotonic() - started, reason,
            )

    async def _read(self, stream: _Stream, info: StreamInfo, first, request_iterator, handle) -> None:
        """Reader task: fold requests into state, wake the sender. Never writes."""
        try:
            handle(stream, info, first)
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
        applied whatever its nonce (§1 F30), so the sender always re-plans.
        """
        node_id = info.node_id
        check_request(
            req.type_url, stream.state.types,
            (req.resource_names_subscribe, req.resource_names_unsubscribe, req.initial_resource_versions),
        )
        known = stream.state.types.get(req.type_url)
        first = known is None or not known.requested
        try:
            kind, version = stream.state.on_request(req)
        except DeltaRequestInvalid as e:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        t = short_type(req.type_url)
        if first and req.initial_resource_versions:
            # a reconnect: only what differs from these versions will be sent (§1 F31)
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
            for phase in (stream.state.order, stream.state.draining_types):  # removals last (§1 E26)
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

        The two phases make a change make-before-break across types (§1 E25/E26): a new
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
