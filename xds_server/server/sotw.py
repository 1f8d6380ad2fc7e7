"""State-of-the-World ADS: the pure per-stream, per-type protocol state machine.

``TypeState`` / ``StreamState`` / ``plan_response``: ``StreamState.on_request`` folds a
DiscoveryRequest into the per-type state (subscription, ACK, NACK, stale nonce);
``plan_response`` answers "what should this client get now for this type?" from that state
and a Snapshot; ``StreamState.commit`` turns a plan into a response and records it. No gRPC
calls, no I/O: unit-testable. The servicer (``servicer.py``) moves messages between the wire
and this machine; Delta xDS has its own machine in ``delta.py``.
"""
from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from xds_server.cache.snapshot import FULL_STATE_TYPES, PUSH_ORDER, TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE
from xds_server.cache.snapshot import TypeSnapshot
from xds_server.server.errors import StreamError

# After a CDS (LDS) response Envoy re-creates the changed clusters (listeners), which warm
# until a fresh EDS (RDS) answer arrives, and it asks for them with the *same* version/nonce,
# which looks like an ACK. Istio's AlwaysRespond: the next request of the dependent type is
# answered even if nothing changed.
WARMING_DEPENDENTS = {TYPE_CLUSTER: TYPE_ENDPOINT, TYPE_LISTENER: TYPE_ROUTE}


@dataclass(slots=True)  # one per type per stream: no instance dict (10,000 streams x 4 types)
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
        """Apply a request's ``resource_names``: an empty list before any name is the legacy
        wildcard, ``"*"`` the explicit one; a name left out is unsubscribed; new names are sent."""
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

    Rules: never for an unrequested or fully unsubscribed type; silent while the
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
            # Make-before-break for removals: a route may still point at a removed
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

    __slots__ = ("types", "_nonce_prefix", "_nonces")

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
        # (e.g. a nonce from a previous connection) the request is an initial one.
        if nonce and ts.sent_nonce is not None and nonce != ts.sent_nonce:
            return RequestKind.STALE                  # superseded by a later response: drop entirely
        ts.requested = True
        ts.update_subscription(req.resource_names)
        if req.HasField("error_detail"):
            ts.parked_version = ts.sent_version       # never resend what was rejected
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
        # the plan's own dict: a plan is made for this commit alone, and ``sent`` is only ever replaced, never changed
        ts.sent_version, ts.sent_nonce, ts.sent = plan.version, nonce, plan.sent
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
