"""Delta (incremental) ADS: the pure per-stream, per-type state machine.

Like the SotW ``StreamState`` in ``sotw.py``, this module does no I/O and knows nothing about
gRPC: ``DeltaStreamState.on_request`` folds one DeltaDiscoveryRequest into the state,
``plan_delta`` answers "what must this client get now for this type?" from that state and a
TypeSnapshot, and ``DeltaStreamState.commit`` turns a plan into a response and records it.
The servicer (``AggregatedDiscoveryServicer.DeltaAggregatedResources`` in ``servicer.py``) only moves
messages between the wire and this machine.

The server's view of a client, per type (the letter-number labels are the behaviours of
``tests/conformance/test_xds_conformance.py``, one test each):

* ``wildcard`` / ``names``: the subscription. The first request of a type with an empty
  subscribe list is the legacy wildcard (F36); ``"*"`` subscribes/unsubscribes the wildcard
  explicitly, and a wildcard can coexist with explicit names.
* ``client``: name -> version the client holds, as far as the server knows. Seeded from
  ``initial_resource_versions`` on the type's first request only (F31, F37), then updated
  when a response is *sent* (optimistically, like go-control-plane's ``returnedResources``).
  A NACKed resource is therefore never re-sent unchanged (B8): nothing differs until the
  snapshot changes it again.
* ``pending``: names that must be answered at the next push whatever ``client`` says:
  every ``resource_names_subscribe`` entry (F32, even for an unchanged resource), an
  explicit name unsubscribed under a wildcard (F33), and the CLA of every EDS cluster sent
  in a new version in a CDS response (D22: Envoy re-creates the cluster and it warms until
  a CLA arrives, but Envoy does not re-subscribe over Delta). A pending name that does not
  exist is answered in ``removed_resources`` (F34); the subscription stays, so it is pushed
  when it appears (C17).

Subscription changes are applied whatever the nonce (F30, unlike Istio): a nonce only tells
which response an ACK/NACK refers to. Responses of one pass are split in two phases
(``plan_delta(removals=...)``): first every addition/update in PUSH_ORDER (make), then the
removal of resources the client *holds* in BREAK_ORDER (break), so a route is retargeted
before the cluster it used to point at disappears (E25, E26).
"""
from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from xds_server.cache.snapshot import (
    PUSH_ORDER,
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    TypeSnapshot,
)
from xds_server.server.errors import StreamError

WILDCARD = "*"

# Removals go referrers first: a listener names its route config, a route names clusters,
# a cluster names its endpoints; secrets are referenced by clusters and listeners.
BREAK_ORDER = (TYPE_LISTENER, TYPE_ROUTE, TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_SECRET)
assert set(BREAK_ORDER) == set(PUSH_ORDER)

# Outstanding (un-ACKed) responses remembered per type; a client that never ACKs must not
# make the server grow without bound. Older nonces then read as unknown (no ACK/NACK effect).
MAX_OUTSTANDING = 64


class DeltaKind:
    ACK = "ack"
    NACK = "nack"
    REQUEST = "request"    # no nonce: initial or spontaneous subscription change
    UNKNOWN_NONCE = "unknown_nonce"  # stale, superseded or from another stream: subscription still applied


@dataclass
class DeltaTypeState:
    """What one delta stream subscribed to, holds and must be told, for one type URL."""

    type_url: str
    requested: bool = False            # a request of this type was seen; never push otherwise
    wildcard: bool = False
    names: set[str] = field(default_factory=set)          # explicit subscriptions (never "*")
    client: dict[str, str] = field(default_factory=dict)  # name -> version the client holds
    pending: set[str] = field(default_factory=set)        # must be answered (resource or removal)
    must_answer: bool = False          # first request of the type, or a "*" subscribe: answered even if empty
    outstanding: "OrderedDict[str, str]" = field(default_factory=OrderedDict)  # nonce -> type version

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def apply(self, subscribe, unsubscribe, initial_versions) -> None:
        """Fold one request's subscription fields into the state (C15, F31-F33, F36, F37)."""
        subscribe, unsubscribe = list(subscribe), list(unsubscribe)
        first = not self.requested
        if first:
            self.requested = True
            self.must_answer = True
            if not subscribe:
                self.wildcard = True                     # legacy wildcard: first request only
        else:
            initial_versions = {}                        # F37: ignored after the first request
        for name in subscribe:
            if name == WILDCARD:
                self.wildcard = True                     # versions decide what is new to the client
                self.must_answer = True
            else:
                self.names.add(name)
                if name not in initial_versions:
                    self.pending.add(name)               # always answered (F32), even unchanged
        if initial_versions:
            # only the type's first request may seed what the client holds (F37); names it
            # holds but no longer subscribes to are its own business
            for name, version in initial_versions.items():
                if name != WILDCARD and self.wants(name):
                    self.client[name] = version
        for name in unsubscribe:
            if name == WILDCARD:
                if self.wildcard:
                    self.wildcard = False
                    # the client drops what only the wildcard gave it
                    for held in [n for n in self.client if n not in self.names]:
                        del self.client[held]
                    self.pending &= self.names
            elif name in self.names:
                self.names.discard(name)
                if self.wildcard:
                    self.pending.add(name)               # F33: tell it whether to keep the resource
                else:
                    self.client.pop(name, None)
                    self.pending.discard(name)
            # else: a phantom unsubscribe, ignored (F33)

    def on_response_nonce(self, nonce: str, has_error: bool) -> tuple[str, str | None]:
        """ACK/NACK bookkeeping; returns (DeltaKind, type version of the response referred to)."""
        if not nonce:
            return DeltaKind.REQUEST, None
        version = self.outstanding.get(nonce)
        if version is None:
            return DeltaKind.UNKNOWN_NONCE, None
        # this response and every older one are settled
        while self.outstanding:
            n, _ = self.outstanding.popitem(last=False)
            if n == nonce:
                break
        if has_error:
            return DeltaKind.NACK, version
        return DeltaKind.ACK, version


@dataclass(frozen=True)
class DeltaPlan:
    """One DeltaDiscoveryResponse to send for one type at one snapshot version."""

    type_url: str
    version: str                                   # the type's snapshot version (system_version_info)
    resources: tuple[tuple[str, str, any_pb2.Any], ...]  # (name, resource version, packed)
    removed: tuple[str, ...]


def plan_delta(ts: DeltaTypeState, tsnap: TypeSnapshot, *, removals: bool = False) -> DeltaPlan | None:
    """Decide what this client gets now for one type, for one phase. Pure.

    ``removals=False`` (make phase): resources that are new or changed for the client, every
    pending name that exists, ``removed_resources`` for pending names that exist nowhere and
    that the client does not hold (a "does not exist" answer, F34), and an empty response
    for the type's first request (or a ``"*"`` subscribe) if nothing else is due: Envoy's
    initial fetch waits for a first response, and an empty one is a no-op after a reconnect.
    ``removals=True`` (break phase): wanted resources the client holds that are gone.
    Never anything for a type the client has not requested (B10).
    """
    if not ts.requested:
        return None
    present = tsnap.resources
    rv = tsnap.resource_versions
    if removals:
        gone = sorted(n for n in ts.client if n not in present and (ts.wants(n) or n in ts.pending))
        if not gone:
            return None
        return DeltaPlan(ts.type_url, tsnap.version, (), tuple(gone))
    candidates = present.keys() if ts.wildcard else ts.names
    names = sorted({n for n in candidates if n in present} | {n for n in ts.pending if n in present})
    updates = [n for n in names if n in ts.pending or ts.client.get(n) != rv[n]]
    missing = sorted(n for n in ts.pending if n not in present and n not in ts.client)
    if not updates and not missing and not ts.must_answer:
        return None
    return DeltaPlan(
        ts.type_url,
        tsnap.version,
        tuple((n, rv[n], present[n]) for n in updates),
        tuple(missing),
    )


def _eds_service_name(packed: any_pb2.Any) -> str | None:
    """The EDS resource name an EDS cluster subscribes to; None for other cluster types."""
    c = cluster_pb2.Cluster()
    packed.Unpack(c)
    if c.type != cluster_pb2.Cluster.EDS:
        return None
    return c.eds_cluster_config.service_name or c.name


class DeltaStreamState:
    """All per-type state of one delta ADS stream, plus its nonce source."""

    def __init__(self) -> None:
        self.types: dict[str, DeltaTypeState] = {}
        self._nonce_prefix = secrets.token_hex(4)  # nonces never repeat across streams either
        self._nonces = itertools.count(1)
        self._rewarm_later: set[str] = set()   # CLAs to resend once EDS is requested (D22)

    def type(self, type_url: str) -> DeltaTypeState:
        ts = self.types.get(type_url)
        if ts is None:
            ts = self.types[type_url] = DeltaTypeState(type_url)
        return ts

    def on_request(self, req: discovery_pb2.DeltaDiscoveryRequest) -> tuple[str, str | None]:
        """Fold one request into the state; returns (DeltaKind, version it ACKs/NACKs).

        The subscription change is applied first and always — even with a stale or unknown
        nonce (F30) — then the nonce settles the ACK/NACK of the response it names.
        """
        if not req.type_url:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, "type_url is required for ADS")
        ts = self.type(req.type_url)
        ts.apply(req.resource_names_subscribe, req.resource_names_unsubscribe, dict(req.initial_resource_versions))
        if req.type_url == TYPE_ENDPOINT and self._rewarm_later:
            ts.pending |= {svc for svc in self._rewarm_later if ts.wants(svc)}
            self._rewarm_later.clear()
        return ts.on_response_nonce(req.response_nonce, req.HasField("error_detail"))

    def _rewarm_endpoints(self, modified: list[tuple[str, any_pb2.Any]]) -> None:
        """Every modified EDS cluster gets its ClusterLoadAssignment again (D22).

        Envoy re-creates a changed cluster, and the new one warms until a CLA arrives. Over
        Delta, Envoy 1.40 does not re-subscribe (the name stays subscribed by the old
        cluster, so its interest does not change) — measured in tests/e2e/test_e2e_delta.py — so
        without this the cluster warms forever and the CDS update is never ACKed. Envoy
        #13009; Istio pushes EDS with CDS in delta for the same reason. The CLA follows in
        the same pass (EDS comes right after CDS in PUSH_ORDER). A new cluster needs nothing
        (Envoy subscribes to its new name) and an identical re-send is not re-created by Envoy.
        """
        services = {svc for _, packed in modified if (svc := _eds_service_name(packed)) is not None}
        eds = self.types.get(TYPE_ENDPOINT)
        if eds is None or not eds.requested:
            # after a reconnect CDS can be answered before EDS's first request arrives, and
            # that request's initial_resource_versions would call the unchanged CLA current
            self._rewarm_later |= services
            return
        eds.pending |= {svc for svc in services if eds.wants(svc)}

    def order(self, phase_removals: bool = False) -> list[str]:
        """Requested types in make (PUSH_ORDER) or break (BREAK_ORDER) order; unknown types after."""
        known = [t for t in (BREAK_ORDER if phase_removals else PUSH_ORDER) if t in self.types and self.types[t].requested]
        extra = sorted(t for t, s in self.types.items() if s.requested and t not in PUSH_ORDER)
        return known + extra

    def commit(self, plan: DeltaPlan) -> discovery_pb2.DeltaDiscoveryResponse:
        """Record ``plan`` as sent (before the write, so the client's reply always finds it)."""
        ts = self.types[plan.type_url]
        nonce = f"{self._nonce_prefix}-d{next(self._nonces)}"
        if plan.type_url == TYPE_CLUSTER:
            # clusters the client holds in another version: Envoy re-creates them
            self._rewarm_endpoints([(n, p) for n, v, p in plan.resources if ts.client.get(n, v) != v])
        for name, version, _ in plan.resources:
            ts.client[name] = version
            ts.pending.discard(name)
        for name in plan.removed:
            ts.client.pop(name, None)
            ts.pending.discard(name)
        ts.must_answer = False
        ts.outstanding[nonce] = plan.version
        while len(ts.outstanding) > MAX_OUTSTANDING:
            ts.outstanding.popitem(last=False)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=plan.version,
            type_url=plan.type_url,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(name=name, version=version, resource=packed)
                for name, version, packed in plan.resources
            ],
            removed_resources=list(plan.removed),
        )
