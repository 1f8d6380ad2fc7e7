"""xDS conformance: one test per behaviour of the xDS protocol a control plane must honour.

The behaviours are numbered 1-44 in nine groups: A stream basics, B ACK/NACK and nonces,
C subscriptions, D per-type semantics, E ordering, F Delta xDS, G TTL, H connection
management, I node identity. Each test is named ``test_<group><number>_<behaviour>``, and
the server code cites these labels (e.g. "F30"); the test name and docstring say the rule.
Each runs against a real in-process grpc.aio server with the scripted clients of tests/xds_client.py
and real protos. A behaviour that applies to both protocols is parametrized ``[sotw]`` /
``[delta]`` through ``Driver``, which speaks either protocol with one vocabulary (watch, add,
remove, ack, nack) and keeps the resulting client view as Envoy would hold it (SotW full-state
types replace, SotW EDS/RDS merge, Delta applies adds and removals) — so most assertions are
"the client ends up with X" for both, plus protocol-specific checks where the spec differs.

Not implemented, tested as current behaviour (never skipped): G39 TTL/heartbeats; H42: the
new-stream rate limit exists but is off by default (``--max-new-streams-per-second``, tested in
tests/unit/test_limits.py), and there is no push throttle. H40 (client backoff) and C14/I44 parts that are
Envoy's side are checked from the server's side only. Silence windows are 0.2 s: in-process
answers take a few milliseconds.
"""
from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from mesh_model.render import dynamic_bootstrap
from mesh_model.node_id import parse_node_id
from tests.conformance.test_ads_sotw import ads_server, build, cla, cluster, listener, route, run
from tests.xds_client import AdsClient, DeltaAdsClient, StreamClosed, make_node
from xds_server import serve as serve_mod
from xds_server.server.delta import DeltaStreamState, DeltaTypeState, plan_delta
from xds_server.server.errors import StreamError
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane
from tests.paths import GOLDEN
from xds_server.cache.snapshot import (
    FULL_STATE_TYPES,
    PUSH_ORDER,
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    Snapshot,
)

NODE = "mesh/m/virtualNode/a"
SILENCE = 0.2
MODES = ("sotw", "delta")
both = pytest.mark.parametrize("mode", MODES)

_MSG = {
    TYPE_CLUSTER: (cluster_pb2.Cluster, "name"),
    TYPE_ENDPOINT: (endpoint_pb2.ClusterLoadAssignment, "cluster_name"),
    TYPE_LISTENER: (listener_pb2.Listener, "name"),
    TYPE_ROUTE: (route_pb2.RouteConfiguration, "name"),
    TYPE_SECRET: (secret_pb2.Secret, "name"),
}


def any_name(packed) -> str:
    cls, field = _MSG[packed.type_url]
    m = cls()
    packed.Unpack(m)
    return getattr(m, field)


def unpack(packed):
    cls, _ = _MSG[packed.type_url]
    m = cls()
    packed.Unpack(m)
    return m


# --- one vocabulary for both protocols ---------------------------------------------------

class Driver:
    """A scripted client speaking SotW or Delta; ``view[type]`` is what the client now holds."""

    def __init__(self, mode: str, client: AdsClient):
        self.mode = mode
        self.delta = mode == "delta"
        self.c = client
        self.names: dict[str, set[str] | None] = {}      # SotW subscription per type (None: wildcard)
        self.last: dict[str, object] = {}                # last response per type
        self.accepted: dict[str, str] = {}               # SotW: last ACKed version per type
        self.view: dict[str, dict[str, bytes]] = {}

    # requests
    def watch(self, type_url: str, names=None, **kw) -> None:
        """The first request of a type: ``None`` is the legacy wildcard (empty name list)."""
        self.names[type_url] = None if names is None else set(names)
        if self.delta:
            self.c.subscribe(type_url, list(names or ()), **kw)
        else:
            self.c.send(type_url, sorted(names or ()), **kw)

    def _sotw_names(self, type_url):
        names = self.names.get(type_url)
        return [] if names is None else sorted(names)

    def ack(self, resp) -> None:
        if self.delta:
            self.c.ack(resp)
        else:
            self.accepted[resp.type_url] = resp.version_info
            self.c.ack(resp, self._sotw_names(resp.type_url))

    def nack(self, resp, error: str) -> None:
        if self.delta:
            self.c.nack(resp, error)
        else:
            self.c.nack(resp, error, self._sotw_names(resp.type_url),
                        accepted_version=self.accepted.get(resp.type_url, ""))

    def _nonce(self, type_url: str, nonce):
        if nonce is not None:
            return nonce
        last = self.last.get(type_url)
        return last.nonce if last is not None else ""

    def add(self, type_url: str, names, nonce: str | None = None) -> None:
        """Subscribe to more names (SotW: the full list again, with the last nonce)."""
        if self.delta:
            self.c.subscribe(type_url, list(names), nonce=self._nonce(type_url, nonce))
        else:
            self.names[type_url] = (self.names.get(type_url) or set()) | set(names)
            self.c.send(type_url, self._sotw_names(type_url), version=self.accepted.get(type_url, ""),
                        nonce=self._nonce(type_url, nonce))

    def remove(self, type_url: str, names, nonce: str | None = None) -> None:
        if self.delta:
            self.c.unsubscribe(type_url, list(names), nonce=self._nonce(type_url, nonce))
        else:
            self.names[type_url] = (self.names.get(type_url) or set()) - set(names)
            self.c.send(type_url, self._sotw_names(type_url), version=self.accepted.get(type_url, ""),
                        nonce=self._nonce(type_url, nonce))

    # responses
    async def recv(self, type_url: str | None = None, timeout: float = 2.0):
        resp = await self.c.recv(timeout)
        if type_url is not None:
            assert resp.type_url == type_url, (resp.type_url, type_url)
        self.last[resp.type_url] = resp
        view = self.view.setdefault(resp.type_url, {})
        if self.delta:
            for r in resp.resources:
                view[r.name] = r.resource.value
            for n in resp.removed_resources:
                view.pop(n, None)
        else:
            got = {any_name(a): a.value for a in resp.resources}
            if resp.type_url in FULL_STATE_TYPES:
                view.clear()
            view.update(got)
        return resp

    async def recv_ack(self, type_url: str | None = None):
        resp = await self.recv(type_url)
        self.ack(resp)
        return resp

    async def recv_ack_settled(self, type_url: str):
        """The response a change settles on. SotW CDS removals come as two responses (E26):
        the removed clusters kept (version ``...+draining``), then without them."""
        resp = await self.recv_ack(type_url)
        while not self.delta and resp.version_info.endswith("+draining"):
            resp = await self.recv_ack(type_url)
        return resp

    async def silence(self, seconds: float = SILENCE) -> None:
        await self.c.expect_silence(seconds)

    def names_in(self, resp) -> list[str]:
        if self.delta:
            return [r.name for r in resp.resources]
        return [any_name(a) for a in resp.resources]

    @staticmethod
    def removed_in(resp) -> list[str]:
        return list(getattr(resp, "removed_resources", ()))

    def version(self, resp) -> str:
        return resp.system_version_info if self.delta else resp.version_info

    def held(self, type_url: str) -> list[str]:
        return sorted(self.view.get(type_url, {}))


def new_client(mode: str, target: str, node_id: str | None = NODE):
    cls = DeltaAdsClient if mode == "delta" else AdsClient
    return cls(target, node=make_node(node_id) if node_id else None)


@asynccontextmanager
async def session(mode: str, snapshot: Snapshot | None = None, node_id: str = NODE):
    """One server with one node's snapshot and one connected Driver."""
    cache = SnapshotCache()
    cache.set(node_id, snapshot or build())
    async with ads_server(cache) as (target, status):
        async with new_client(mode, target, node_id) as c:
            yield Driver(mode, c), cache, status


async def subscribe_all(d: Driver, eds=("a", "b"), rds=("r",)):
    """Envoy-like start: wildcard CDS, named EDS, wildcard LDS, named RDS; all ACKed."""
    d.watch(TYPE_CLUSTER)
    await d.recv_ack(TYPE_CLUSTER)
    d.watch(TYPE_ENDPOINT, eds)
    await d.recv_ack(TYPE_ENDPOINT)
    d.watch(TYPE_LISTENER)
    await d.recv_ack(TYPE_LISTENER)
    d.watch(TYPE_ROUTE, rds)
    await d.recv_ack(TYPE_ROUTE)


def types_of(status, node_id=NODE) -> dict:
    return status.snapshot()["nodes"][node_id]["types"]


async def closed(c) -> StreamClosed:
    with pytest.raises(StreamClosed) as e:
        await c.recv()
    return e.value


# =========================================================================================
# A. Streams, node, type URLs
# =========================================================================================

@both
def test_A1_node_only_on_first_request(mode):
    async def t():
        async with session(mode) as (d, _, status):
            d.watch(TYPE_CLUSTER)
            await d.recv_ack(TYPE_CLUSTER)
            d.watch(TYPE_ENDPOINT, ["a"])                    # no node on this request
            r = await d.recv(TYPE_ENDPOINT)
            assert d.names_in(r) == ["a"]
            assert status.snapshot()["nodes"][NODE]["streams"] == 1
    run(t())


@both
def test_A1_first_request_without_node_rejected(mode):
    async def t():
        cache = SnapshotCache()
        cache.set(NODE, build())
        async with ads_server(cache) as (target, status):
            async with new_client(mode, target, node_id=None) as c:
                c.send(TYPE_CLUSTER)
                assert (await closed(c)).code == grpc.StatusCode.INVALID_ARGUMENT
            assert status.snapshot()["nodes"] == {}
    run(t())


@both
def test_A2_type_url_required(mode):
    async def t():
        async with session(mode) as (d, _, _):
            d.c.send("")                                     # first request
            assert (await closed(d.c)).code == grpc.StatusCode.INVALID_ARGUMENT
        async with session(mode) as (d, _, status):
            d.watch(TYPE_CLUSTER)
            await d.recv()
            d.c.send("")                                     # a later request
            assert (await closed(d.c)).code == grpc.StatusCode.INVALID_ARGUMENT
            await asyncio.sleep(0.05)
            assert status.snapshot()["nodes"] == {}
    run(t())


@both
def test_A3_versions_per_type_url(mode):
    async def t():
        async with session(mode) as (d, cache, status):
            d.watch(TYPE_CLUSTER)
            cds = await d.recv_ack(TYPE_CLUSTER)
            d.watch(TYPE_ENDPOINT, ["a", "b"])
            eds = await d.recv_ack(TYPE_ENDPOINT)
            assert d.version(cds) != d.version(eds)
            cache.set(NODE, build(endpoints={"a": cla("a", 1), "b": cla("b")}))   # only EDS changes
            eds2 = await d.recv_ack(TYPE_ENDPOINT)
            await d.silence()
            assert d.version(eds2) != d.version(eds)
            snap = cache.get(NODE)
            assert d.version(eds2) == snap.get(TYPE_ENDPOINT).version
            assert types_of(status)["cds"]["acked"] == d.version(cds) == snap.get(TYPE_CLUSTER).version
            assert types_of(status)["eds"]["acked"] == d.version(eds2)
    run(t())


@both
def test_A4_nonces_fresh_and_per_type(mode):
    async def t():
        async with session(mode) as (d, cache, status):
            d.watch(TYPE_CLUSTER)
            cds = await d.recv(TYPE_CLUSTER)
            d.watch(TYPE_ENDPOINT, ["a"])
            eds = await d.recv(TYPE_ENDPOINT)
            # ACK CDS after an EDS response went out: the CDS nonce is still CDS's latest
            d.ack(cds)
            d.ack(eds)
            await d.silence()
            assert types_of(status)["cds"]["acked"] == d.version(cds)
            nonces = [cds.nonce, eds.nonce]
            for i in range(2):
                cache.set(NODE, build(clusters={"a": cluster("a"), "b": cluster("b", 10 + i)}))
                nonces.append((await d.recv_ack(TYPE_CLUSTER)).nonce)
            async with new_client(mode, d.c.target) as c2:
                c2.send(TYPE_CLUSTER)
                nonces.append((await c2.recv()).nonce)
            assert all(nonces) and len(set(nonces)) == len(nonces)
    run(t())


@both
def test_A5_versions_stable_across_restart(mode):
    """Two server instances (a restart, a replica) give the same versions for the same model;
    a Delta client resuming on the new one with its versions gets nothing resent."""
    async def t():
        seen = []
        for _ in range(2):
            async with session(mode, build()) as (d, _, _):
                d.watch(TYPE_CLUSTER)
                cds = await d.recv_ack(TYPE_CLUSTER)
                d.watch(TYPE_ENDPOINT, ["a", "b"])
                eds = await d.recv_ack(TYPE_ENDPOINT)
                per_resource = {r.name: r.version for r in cds.resources} if d.delta else {}
                seen.append((d.version(cds), d.version(eds), dict(d.view[TYPE_CLUSTER]), per_resource))
        assert seen[0] == seen[1]
        if mode == "delta":
            async with session(mode, build()) as (d, _, _):
                d.watch(TYPE_CLUSTER, initial_resource_versions=seen[0][3])
                r = await d.recv(TYPE_CLUSTER)
                assert list(r.resources) == [] and list(r.removed_resources) == []
    run(t())


# =========================================================================================
# B. ACK / NACK, nonces, what is pushed
# =========================================================================================

@both
def test_B6_ack_produces_no_response(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            await subscribe_all(d)                           # every response ACKed
            await d.silence()
            cache.set(NODE, build())                         # equal content: not a change
            await d.silence()
    run(t())


@both
def test_B7_nack_detected_by_error_detail(mode):
    """SotW: a NACK whose version_info equals the sent version (envoy PR #14841's counter-
    example) is still a NACK. Delta: the nonce names the response, error_detail rejects it."""
    async def t():
        async with session(mode) as (d, cache, status):
            d.watch(TYPE_ENDPOINT, ["a"])
            good = await d.recv_ack(TYPE_ENDPOINT)
            await d.silence(0.05)
            cache.set(NODE, build(endpoints={"a": cla("a", 9), "b": cla("b")}))
            bad = await d.recv(TYPE_ENDPOINT)
            if d.delta:
                d.c.nack(bad, "rejected")
            else:
                d.c.send(TYPE_ENDPOINT, ["a"], version=bad.version_info, nonce=bad.nonce, error="rejected")
            await d.silence()
            eds = types_of(status)["eds"]
            assert eds["nacked"] == {"version": d.version(bad), "error": "rejected"}
            assert eds["acked"] == d.version(good) and eds["nacks"] == 1
    run(t())


@both
def test_B8_nack_not_resent(mode):
    async def t():
        async with session(mode) as (d, cache, status):
            d.watch(TYPE_CLUSTER)
            good = await d.recv_ack(TYPE_CLUSTER)
            await d.silence(0.05)
            cache.set(NODE, build(clusters={"a": cluster("a", 5), "b": cluster("b")}))
            bad = await d.recv(TYPE_CLUSTER)
            d.nack(bad, "bad cluster a")
            await d.silence()                                # the rejected version is never resent
            if not d.delta:
                d.c.send(TYPE_CLUSTER, version=good.version_info, nonce=bad.nonce)   # follow-up request
            await d.silence()
            assert types_of(status)["cds"]["nacked"]["version"] == d.version(bad)
            # another resource changes: Delta sends just that one, never the rejected 'a' again
            cache.set(NODE, build(clusters={"a": cluster("a", 5), "b": cluster("b", 3)}))
            r = await d.recv_ack(TYPE_CLUSTER)
            if d.delta:
                assert d.names_in(r) == ["b"]
            await d.silence()
            cds = types_of(status)["cds"]
            assert cds["acked"] == d.version(r) and cds["nacked"] is None and cds["nacks"] == 1
            cache.set(NODE, build(clusters={"a": cluster("a", 2), "b": cluster("b", 3)}))   # the fix
            r = await d.recv_ack(TYPE_CLUSTER)
            assert "a" in d.names_in(r)
    run(t())


def test_B9_stale_nonce_ignored():
    """SotW only (Delta honours stale-nonce requests: F30). The names carried by the stale
    request come back with the ACK of the newer response (envoy #10363's recovery)."""
    async def t():
        async with session("sotw") as (d, cache, _):
            d.watch(TYPE_ROUTE, ["r"])
            r1 = await d.recv_ack(TYPE_ROUTE)
            cache.set(NODE, build(routes={"r": route("r", "b"), "r2": route("r2", "a")}))
            r2 = await d.recv(TYPE_ROUTE)
            d.c.send(TYPE_ROUTE, ["r", "r2"], version=r1.version_info, nonce=r1.nonce)   # stale
            await d.silence()
            d.c.send(TYPE_ROUTE, ["r", "r2"], version=r2.version_info, nonce=r2.nonce)   # ACK + names
            r3 = await d.recv(TYPE_ROUTE)
            assert d.names_in(r3) == ["r", "r2"]
    run(t())


@both
def test_B10_unwatched_type_never_pushed(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            d.watch(TYPE_CLUSTER)
            await d.recv_ack(TYPE_CLUSTER)
            cache.set(NODE, build(endpoints={"a": cla("a", 1), "b": cla("b", 2)}, routes={"r": route("r", "b")},
                                  listeners={}, secrets={"s": secret_pb2.Secret(name="s")}))
            await d.silence()                                # EDS/LDS/RDS/SDS changed, never requested
            cache.set(NODE, build(clusters={"a": cluster("a")}, listeners={}))
            await d.recv_ack_settled(TYPE_CLUSTER)
            assert d.held(TYPE_CLUSTER) == ["a"]
            await d.silence()
            # a type whose every name is unsubscribed is not pushed either (Istio's shouldUnsubscribe)
            d.watch(TYPE_ENDPOINT, ["a"])
            await d.recv_ack(TYPE_ENDPOINT)
            d.remove(TYPE_ENDPOINT, ["a"])
            await d.silence()
            cache.set(NODE, build(clusters={"a": cluster("a")}, endpoints={"a": cla("a", 7)}))
            await d.silence()
    run(t())


@both
def test_B11_no_duplicate_names_in_a_response(mode):
    async def t():
        many = {f"c{i}": cluster(f"c{i}") for i in range(20)}
        async with session(mode, build(clusters=many)) as (d, cache, _):
            d.watch(TYPE_CLUSTER)
            responses = [await d.recv_ack(TYPE_CLUSTER)]
            d.watch(TYPE_ENDPOINT, ["a", "a", "b"])          # a client repeating a name
            responses.append(await d.recv_ack(TYPE_ENDPOINT))
            cache.set(NODE, build(clusters={**many, "c3": cluster("c3", 9)}))
            responses.append(await d.recv_ack(TYPE_CLUSTER))
            for r in responses:
                names = d.names_in(r) + d.removed_in(r)
                assert len(names) == len(set(names)), names
    run(t())


def test_B12_latest_request_supersedes():
    """SotW: back-to-back requests; the last one's names are the subscription."""
    async def t():
        async with session("sotw") as (d, cache, _):
            d.c.send(TYPE_ENDPOINT, ["a"])
            d.c.send(TYPE_ENDPOINT, ["b"])
            last = await d.recv(TYPE_ENDPOINT)
            try:
                while True:
                    last = await d.recv(TYPE_ENDPOINT, timeout=SILENCE)
            except AssertionError:
                pass
            assert d.names_in(last) == ["b"]
            d.c.ack(last, ["b"])
            cache.set(NODE, build(endpoints={"a": cla("a", 3), "b": cla("b")}))
            await d.silence()                                # 'a' is no longer wanted
            cache.set(NODE, build(endpoints={"a": cla("a", 3), "b": cla("b", 4)}))
            assert d.names_in(await d.recv(TYPE_ENDPOINT)) == ["b"]
    run(t())


@both
def test_B13_deterministic_serialization(mode):
    """Map fields inserted in different orders serialize to the same bytes and versions."""
    def keyed(order):
        c = cluster("a")
        for k in order:
            c.metadata.filter_metadata["meta"].fields[k].string_value = k * 3
        return build(clusters={"a": c, "b": cluster("b")})

    async def t():
        keys = [f"k{i}" for i in range(12)]
        s1, s2 = keyed(keys), keyed(list(reversed(keys)))
        assert s1.versions() == s2.versions()
        wire = []
        for snap in (s1, s2):
            async with session(mode, snap) as (d, _, _):
                d.watch(TYPE_CLUSTER)
                r = await d.recv(TYPE_CLUSTER)
                wire.append((d.version(r), d.view[TYPE_CLUSTER]))
        assert wire[0] == wire[1]
    run(t())


# =========================================================================================
# C. Subscriptions
# =========================================================================================

@both
def test_C14_wildcard_cds_and_lds(mode):
    async def t():
        snap = build(listeners={"l": listener("l", 15000, "r"), "l2": listener("l2", 15001, "r")})
        async with session(mode, snap) as (d, _, _):
            d.watch(TYPE_CLUSTER)
            await d.recv_ack(TYPE_CLUSTER)
            d.watch(TYPE_LISTENER)
            await d.recv_ack(TYPE_LISTENER)
            assert d.held(TYPE_CLUSTER) == ["a", "b"] and d.held(TYPE_LISTENER) == ["l", "l2"]
    run(t())


@both
def test_C15_legacy_wildcard(mode):
    """The spec's 4-step examples, on EDS (names a, b).

    SotW: [] = wildcard; ["*", a] = wildcard + a; [a] = only a; [] = nothing.
    Delta: subscribe [] = wildcard; +a = wildcard + a; -"*" = only a; -a = nothing."""
    async def t():
        eps = lambda pa, pb: build(endpoints={"a": cla("a", pa), "b": cla("b", pb)})
        async with session(mode, eps(1, 1)) as (d, cache, _):
            d.watch(TYPE_ENDPOINT)                           # 1: legacy wildcard
            await d.recv_ack(TYPE_ENDPOINT)
            assert d.held(TYPE_ENDPOINT) == ["a", "b"]
            if d.delta:                                      # 2: wildcard and a
                d.add(TYPE_ENDPOINT, ["a"])
                assert d.names_in(await d.recv_ack(TYPE_ENDPOINT)) == ["a"]   # a subscribe is answered
            else:
                d.c.send(TYPE_ENDPOINT, ["*", "a"], version=d.accepted[TYPE_ENDPOINT],
                         nonce=d.last[TYPE_ENDPOINT].nonce)
                d.names[TYPE_ENDPOINT] = {"*", "a"}
                await d.silence()                            # nothing new for a wildcard client
            cache.set(NODE, eps(1, 2))
            r = await d.recv_ack(TYPE_ENDPOINT)              # the wildcard still holds
            assert "b" in d.names_in(r)
            d.remove(TYPE_ENDPOINT, ["*"])                   # 3: only a (SotW resends ["a"])
            await d.silence()
            cache.set(NODE, eps(1, 3))
            await d.silence()                                # b is no longer wanted
            cache.set(NODE, eps(2, 3))
            assert "a" in d.names_in(await d.recv_ack(TYPE_ENDPOINT))
            d.remove(TYPE_ENDPOINT, ["a"])                   # 4: nothing (SotW: an empty list now)
            await d.silence()
            cache.set(NODE, eps(3, 4))
            await d.silence()
    run(t())


@both
def test_C16_newly_requested_names_resent(mode):
    async def t():
        async with session(mode) as (d, _, _):
            d.watch(TYPE_ENDPOINT, ["a"])
            await d.recv_ack(TYPE_ENDPOINT)
            d.add(TYPE_ENDPOINT, ["b"])
            r = await d.recv_ack(TYPE_ENDPOINT)
            assert "b" in d.names_in(r)
            d.remove(TYPE_ENDPOINT, ["b"])
            await d.silence()                                # dropping a name needs no answer
            d.add(TYPE_ENDPOINT, ["b"])                      # b again, unchanged: resent
            r2 = await d.recv_ack(TYPE_ENDPOINT)
            assert "b" in d.names_in(r2) and d.version(r2) == d.version(r)
    run(t())


@both
def test_C17_requested_missing_pushed_when_created(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            d.watch(TYPE_ENDPOINT, ["a", "c"])
            r = await d.recv_ack(TYPE_ENDPOINT)
            assert d.names_in(r) == ["a"]
            assert d.removed_in(r) == (["c"] if d.delta else [])   # Delta: "does not exist" (F34)
            await d.silence()
            cache.set(NODE, build(clusters={"a": cluster("a"), "c": cluster("c")},
                                  endpoints={"a": cla("a", 8080), "c": cla("c", 7)}))
            r = await d.recv_ack(TYPE_ENDPOINT)
            assert "c" in d.names_in(r) and d.held(TYPE_ENDPOINT) == ["a", "c"]
            await d.silence()
    run(t())


@both
def test_C18_multiple_names_and_streams(mode):
    async def t():
        async with session(mode) as (d, cache, status):
            d.watch(TYPE_ENDPOINT, ["a", "b"])               # several names in one request
            await d.recv_ack(TYPE_ENDPOINT)
            assert d.held(TYPE_ENDPOINT) == ["a", "b"]
            async with new_client(mode, d.c.target) as c2:   # the same node, another stream
                d2 = Driver(mode, c2)
                d2.watch(TYPE_ENDPOINT, ["b"])
                await d2.recv_ack(TYPE_ENDPOINT)
                assert d2.held(TYPE_ENDPOINT) == ["b"]
                cache.set(NODE, build(endpoints={"a": cla("a", 1), "b": cla("b")}))
                assert "a" in d.names_in(await d.recv_ack(TYPE_ENDPOINT))
                await d2.silence()                           # the other stream never asked for a
                assert status.snapshot()["nodes"][NODE]["streams"] == 2
    run(t())


# =========================================================================================
# D. Content and deletion per type
# =========================================================================================

@both
def test_D19_cds_full_state_removal(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            d.watch(TYPE_CLUSTER)
            await d.recv_ack(TYPE_CLUSTER)
            cache.set(NODE, build(clusters={"a": cluster("a")}))
            r = await d.recv_ack_settled(TYPE_CLUSTER)
            assert d.held(TYPE_CLUSTER) == ["a"]             # SotW: N-1 listed; Delta: b removed
            assert (d.removed_in(r) == ["b"]) if d.delta else (d.names_in(r) == ["a"])
            cache.set(NODE, build(clusters={}))
            r = await d.recv_ack_settled(TYPE_CLUSTER)
            assert d.held(TYPE_CLUSTER) == []                # SotW: an empty response deletes all
            assert (d.removed_in(r) == ["a"]) if d.delta else (len(r.resources) == 0)
            await d.silence()
    run(t())


@both
def test_D20_eds_rds_deletion_signal(mode):
    """SotW EDS/RDS carry no deletion: a vanished CLA is not pushed (the cluster going away is
    the signal). Delta lists it in removed_resources."""
    async def t():
        async with session(mode) as (d, cache, _):
            d.watch(TYPE_ENDPOINT, ["a", "b"])
            await d.recv_ack(TYPE_ENDPOINT)
            d.watch(TYPE_ROUTE, ["r"])
            await d.recv_ack(TYPE_ROUTE)
            cache.set(NODE, build(endpoints={"a": cla("a", 8080)}, routes={}))
            if d.delta:
                got = {}
                for _ in range(2):
                    r = await d.recv_ack()
                    got[r.type_url] = d.removed_in(r)
                assert got == {TYPE_ENDPOINT: ["b"], TYPE_ROUTE: ["r"]}
            await d.silence()
    run(t())


@both
def test_D21_eds_answered_for_empty_cluster(mode):
    async def t():
        async with session(mode) as (d, _, _):
            d.watch(TYPE_ENDPOINT, ["b"])
            r = await d.recv(TYPE_ENDPOINT)
            (only,) = [res.resource for res in r.resources] if d.delta else list(r.resources)
            m = unpack(only)
            assert m.cluster_name == "b" and len(m.endpoints) == 0
    run(t())


@both
def test_D22_eds_resent_after_cds_change(mode):
    """A changed cluster is re-created and warms until a CLA arrives, even an unchanged one.
    SotW: Envoy re-requests EDS with the same version/nonce and is answered. Delta: Envoy
    1.40 does not re-subscribe (see test_e2e_delta), so the server follows the CDS response
    with the CLA of every EDS cluster in it, by itself; only subscribed CLAs."""
    async def t():
        async with session(mode) as (d, cache, _):
            await subscribe_all(d, eds=("a",))
            eds = d.last[TYPE_ENDPOINT]
            cache.set(NODE, build(clusters={"a": cluster("a", timeout=7), "b": cluster("b", timeout=8)}))
            await d.recv_ack(TYPE_CLUSTER)
            if not d.delta:
                await d.silence()                            # endpoints unchanged: nothing by itself
                d.c.send(TYPE_ENDPOINT, ["a"], version=eds.version_info, nonce=eds.nonce)
            eds2 = await d.recv_ack(TYPE_ENDPOINT)
            assert d.names_in(eds2) == ["a"] and d.version(eds2) == d.version(eds)   # b: not subscribed
            await d.silence()                                # one-shot
    run(t())


@both
def test_D23_rds_resent_after_lds_change(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            await subscribe_all(d)
            rds = d.last[TYPE_ROUTE]
            cache.set(NODE, build(listeners={"l": listener("l", 15001, "r")}))
            await d.recv_ack(TYPE_LISTENER)
            if d.delta:
                d.add(TYPE_ROUTE, ["r"])
            else:
                d.c.send(TYPE_ROUTE, ["r"], version=rds.version_info, nonce=rds.nonce)
            rds2 = await d.recv_ack(TYPE_ROUTE)
            assert d.names_in(rds2) == ["r"]
    run(t())


@both
def test_D24_cluster_before_route_referencing_it(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            await subscribe_all(d)
            cache.set(NODE, build(clusters={"a": cluster("a"), "b": cluster("b"), "c": cluster("c")},
                                  endpoints={"a": cla("a", 8080), "b": cla("b"), "c": cla("c", 1)},
                                  routes={"r": route("r", "c")}))
            got = [(await d.recv_ack()).type_url for _ in range(2)]
            assert got == [TYPE_CLUSTER, TYPE_ROUTE]
    run(t())


# =========================================================================================
# E. Ordering
# =========================================================================================

@both
def test_E25_push_order(mode):
    async def t():
        async with session(mode) as (d, cache, _):
            await subscribe_all(d)
            d.watch(TYPE_SECRET, ["s"])
            await d.recv_ack(TYPE_SECRET)
            cache.set(NODE, build(
                clusters={"a": cluster("a", 3), "b": cluster("b"), "c": cluster("c")},
                endpoints={"a": cla("a", 1), "b": cla("b", 2), "c": cla("c", 3)},
                listeners={"l": listener("l", 15002, "r")},
                routes={"r": route("r", "c")},
                secrets={"s": secret_pb2.Secret(name="s")},
            ))
            got = [(await d.recv_ack()).type_url for _ in range(5)]
            assert got == list(PUSH_ORDER)
            await d.silence()
    run(t())


def test_E26_two_phase_removal_delta():
    """Retarget r from a to c and delete a in one model change. Delta makes it two-phase by
    itself: CDS +c, RDS r->c, and only then CDS -a and EDS -a (referrers before referees)."""
    async def t():
        async with session("delta") as (d, cache, _):
            await subscribe_all(d)
            cache.set(NODE, build(clusters={"b": cluster("b"), "c": cluster("c")},
                                  endpoints={"b": cla("b"), "c": cla("c", 1)},
                                  routes={"r": route("r", "c")}))
            seq = []
            for _ in range(4):
                r = await d.recv_ack()
                seq.append((r.type_url, d.names_in(r), d.removed_in(r)))
            assert seq == [
                (TYPE_CLUSTER, ["c"], []),
                (TYPE_ROUTE, ["r"], []),
                (TYPE_CLUSTER, [], ["a"]),
                (TYPE_ENDPOINT, [], ["a"]),
            ]
            await d.silence()
    run(t())


def test_E26_two_phase_removal_sotw():
    """Retarget r from a to c and delete a in one model change. SotW CDS is full state, so
    the server keeps a in the first CDS response (with c added), sends the routes, and only
    then a CDS response without a: no moment where r points at a missing cluster."""
    async def t():
        async with session("sotw") as (d, cache, _):
            await subscribe_all(d)
            cache.set(NODE, build(clusters={"b": cluster("b"), "c": cluster("c")},
                                  endpoints={"b": cla("b"), "c": cla("c", 1)},
                                  routes={"r": route("r", "c")}))
            seq = []
            while not seq or seq[-1][0] != TYPE_CLUSTER or len(seq) == 1:
                r = await d.recv_ack()
                seq.append((r.type_url, d.names_in(r), r.version_info.endswith("+draining")))
            assert seq[0] == (TYPE_CLUSTER, ["a", "b", "c"], True)    # c added, a still there
            assert seq[-1] == (TYPE_CLUSTER, ["b", "c"], False)       # a gone, after ...
            assert (TYPE_ROUTE, ["r"], False) in seq[1:-1]             # ... the route moved to c
            assert d.held(TYPE_CLUSTER) == ["b", "c"]
            await d.silence()
    run(t())


@both
def test_E27_batched_requests_answered(mode):
    """After a CDS update Envoy sends its paused EDS requests in one batch: answer it all."""
    async def t():
        three = build(clusters={n: cluster(n) for n in "abc"}, endpoints={n: cla(n, 1) for n in "abc"})
        async with session(mode, three) as (d, _, _):
            d.watch(TYPE_CLUSTER)
            await d.recv_ack(TYPE_CLUSTER)
            d.watch(TYPE_ENDPOINT, ["a", "b", "c"])
            r = await d.recv_ack(TYPE_ENDPOINT)
            assert d.names_in(r) == ["a", "b", "c"]
    run(t())


@both
def test_E28_eds_not_held_for_complete_set(mode):
    async def t():
        three = build(clusters={n: cluster(n) for n in "abc"}, endpoints={n: cla(n, 1) for n in "abc"})
        async with session(mode, three) as (d, _, _):
            d.watch(TYPE_ENDPOINT, ["b"])                    # one of three: answered at once
            assert d.names_in(await d.recv(TYPE_ENDPOINT, timeout=1)) == ["b"]
    run(t())


# =========================================================================================
# F. Delta only
# =========================================================================================

def test_F29_nonce_on_every_response_ack_nack_by_nonce():
    async def t():
        async with session("delta") as (d, cache, status):
            d.watch(TYPE_CLUSTER)
            r1 = await d.recv(TYPE_CLUSTER)
            d.watch(TYPE_ENDPOINT, ["a", "zz"])
            r2 = await d.recv(TYPE_ENDPOINT)
            cache.set(NODE, build(clusters={"a": cluster("a"), "b": cluster("b", 4)}))
            r3 = await d.recv(TYPE_CLUSTER)
            nonces = [r.nonce for r in (r1, r2, r3)]
            assert all(nonces) and len(set(nonces)) == 3
            d.c.ack(r1)                                      # ACK of the older CDS response
            await d.silence(0.05)
            assert types_of(status)["cds"]["acked"] == r1.system_version_info
            d.c.subscribe(TYPE_ENDPOINT, ["b"])              # spontaneous: no nonce, no ACK meaning
            assert [x.name for x in (await d.recv(TYPE_ENDPOINT)).resources] == ["b"]
            assert types_of(status)["eds"]["acked"] is None
            d.c.nack(r3, "nope")
            await d.silence()
            cds = types_of(status)["cds"]
            assert cds["nacked"] == {"version": r3.system_version_info, "error": "nope"}
            assert cds["acked"] == r1.system_version_info
    run(t())


def test_F30_subscription_honoured_with_stale_nonce():
    async def t():
        async with session("delta") as (d, cache, _):
            d.watch(TYPE_ENDPOINT, ["a"])
            r1 = await d.recv(TYPE_ENDPOINT)
            cache.set(NODE, build(endpoints={"a": cla("a", 2), "b": cla("b")}))
            r2 = await d.recv(TYPE_ENDPOINT)
            assert r2.nonce != r1.nonce
            d.c.subscribe(TYPE_ENDPOINT, ["b"], nonce=r1.nonce)              # stale nonce
            assert [x.name for x in (await d.recv(TYPE_ENDPOINT)).resources] == ["b"]
            d.c.unsubscribe(TYPE_ENDPOINT, ["b"], nonce="not-a-nonce-of-ours")
            await d.silence()
            cache.set(NODE, build(endpoints={"a": cla("a", 2), "b": cla("b", 5)}))
            await d.silence()                                # the unsubscribe was honoured too
    run(t())


def test_F31_initial_resource_versions():
    async def t():
        async with session("delta") as (d, cache, _):
            cache.set(NODE, build(clusters={n: cluster(n) for n in "abd"}))
            d.watch(TYPE_CLUSTER)
            await d.recv_ack(TYPE_CLUSTER)
            d.watch(TYPE_ENDPOINT, ["a", "b"])
            await d.recv_ack(TYPE_ENDPOINT)
            held = {t: dict(v) for t, v in d.c.holds.items()}
        # while disconnected: d changes, b goes away, c appears, a is unchanged
        snap = build(clusters={"a": cluster("a"), "c": cluster("c"), "d": cluster("d", 6)})
        async with session("delta", snap) as (d, _, _):
            d.watch(TYPE_CLUSTER, initial_resource_versions=held[TYPE_CLUSTER])
            upd = await d.recv(TYPE_CLUSTER)
            assert d.names_in(upd) == ["c", "d"] and d.removed_in(upd) == []
            rem = await d.recv(TYPE_CLUSTER)                 # removals come after the additions
            assert d.names_in(rem) == [] and d.removed_in(rem) == ["b"]
            d.watch(TYPE_ENDPOINT, ["a", "b"], initial_resource_versions={"a": held[TYPE_ENDPOINT]["a"]})
            r = await d.recv(TYPE_ENDPOINT)
            assert d.names_in(r) == ["b"]                    # a is current, b was never held
    run(t())


def test_F32_resubscribe_answered():
    async def t():
        async with session("delta") as (d, _, _):
            d.watch(TYPE_ENDPOINT, ["a", "b"])
            r = await d.recv_ack(TYPE_ENDPOINT)
            d.c.subscribe(TYPE_ENDPOINT, ["a"], nonce=r.nonce)   # already subscribed, unchanged
            again = await d.recv_ack(TYPE_ENDPOINT)
            assert d.names_in(again) == ["a"]
            assert again.resources[0].version == r.resources[0].version
            await d.silence()
    run(t())


def test_F33_phantom_unsubscribe_ignored_except_wildcard_name():
    async def t():
        async with session("delta") as (d, _, _):
            d.watch(TYPE_ENDPOINT, ["a"])
            await d.recv_ack(TYPE_ENDPOINT)
            d.c.unsubscribe(TYPE_ENDPOINT, ["b", "zz"])      # never subscribed: ignored
            await d.silence()
            d.watch(TYPE_CLUSTER)                            # wildcard ...
            await d.recv_ack(TYPE_CLUSTER)
            d.c.subscribe(TYPE_CLUSTER, ["a", "zz"])         # ... plus explicit names
            r = await d.recv_ack(TYPE_CLUSTER)
            assert d.names_in(r) == ["a"] and d.removed_in(r) == ["zz"]
            d.c.unsubscribe(TYPE_CLUSTER, ["a", "zz"])       # still under the wildcard: must answer
            r = await d.recv_ack(TYPE_CLUSTER)
            assert d.names_in(r) == ["a"] and d.removed_in(r) == ["zz"]
            d.c.unsubscribe(TYPE_CLUSTER, ["a"])             # now a phantom
            await d.silence()
    run(t())


def test_F34_missing_resource_removed_then_pushed():
    async def t():
        async with session("delta") as (d, cache, _):
            d.watch(TYPE_ENDPOINT, ["a", "zz"])
            r = await d.recv_ack(TYPE_ENDPOINT)
            assert d.names_in(r) == ["a"] and d.removed_in(r) == ["zz"]
            cache.set(NODE, build(endpoints={"a": cla("a", 8080), "zz": cla("zz", 1)}))
            assert d.names_in(await d.recv_ack(TYPE_ENDPOINT)) == ["zz"]
            cache.set(NODE, build())
            assert d.removed_in(await d.recv_ack(TYPE_ENDPOINT)) == ["zz"]
            cache.set(NODE, build(endpoints={"a": cla("a", 8080), "zz": cla("zz", 2)}))
            assert d.names_in(await d.recv_ack(TYPE_ENDPOINT)) == ["zz"]   # subscription kept
    run(t())


def test_F35_per_resource_versions():
    async def t():
        async with session("delta") as (d, cache, _):
            d.watch(TYPE_CLUSTER)
            r = await d.recv_ack(TYPE_CLUSTER)
            tsnap = cache.get(NODE).get(TYPE_CLUSTER)
            assert r.system_version_info == tsnap.version
            for res in r.resources:
                assert res.version == tsnap.resource_versions[res.name]
                assert res.version == hashlib.sha256(res.resource.value).hexdigest()[:16]
            old = {res.name: res.version for res in r.resources}
            cache.set(NODE, build(clusters={"a": cluster("a"), "b": cluster("b", 8)}))
            r2 = await d.recv_ack(TYPE_CLUSTER)
            assert d.names_in(r2) == ["b"] and r2.resources[0].version != old["b"]
    run(t())


def test_F36_explicit_wildcard_and_legacy_only_first():
    async def t():
        async with session("delta") as (d, cache, _):
            d.c.subscribe(TYPE_CLUSTER, ["*"])
            assert d.names_in(await d.recv_ack(TYPE_CLUSTER)) == ["a", "b"]
            d.watch(TYPE_ENDPOINT, ["a"])                    # named first request: not wildcard
            await d.recv_ack(TYPE_ENDPOINT)                  # (and a later empty ACK is no wildcard)
            cache.set(NODE, build(endpoints={"a": cla("a", 8080), "b": cla("b", 9)}))
            await d.silence()
            d.c.subscribe(TYPE_ENDPOINT, ["*"])              # explicit wildcard later
            r = await d.recv_ack(TYPE_ENDPOINT)
            assert d.names_in(r) == ["b"]                    # a is already current
    run(t())


def test_F37_walled_off_per_type():
    async def t():
        async with session("delta") as (d, _, _):
            d.watch(TYPE_CLUSTER)
            cds = await d.recv_ack(TYPE_CLUSTER)
            held = {r.name: r.version for r in cds.resources}
            # CDS versions offered on the EDS stream-type say nothing about EDS
            d.watch(TYPE_ENDPOINT, ["a", "b"], initial_resource_versions=held)
            assert d.names_in(await d.recv_ack(TYPE_ENDPOINT)) == ["a", "b"]
            # initial_resource_versions after a type's first request are ignored
            d.c.send_delta(TYPE_CLUSTER, initial_resource_versions={"a": "bogus"})
            await d.silence()
    run(t())


def test_F38_reconnect_first_request_always_answered():
    """envoy #36951 shows a client stuck after a delta reconnect; the server's part: the first
    request of each type on a new stream gets a response even when nothing differs."""
    async def t():
        async with session("delta") as (d, _, _):
            d.watch(TYPE_CLUSTER)
            cds = await d.recv_ack(TYPE_CLUSTER)
            async with new_client("delta", d.c.target) as c2:
                d2 = Driver("delta", c2)
                d2.watch(TYPE_CLUSTER, initial_resource_versions={r.name: r.version for r in cds.resources},
                         nonce=cds.nonce)
                r = await d2.recv_ack(TYPE_CLUSTER)
                assert r.nonce and list(r.resources) == [] and list(r.removed_resources) == []
                await d2.silence()
    run(t())


def test_F_delta_state_machine_without_grpc():
    """The decision layer alone: subscribe, wildcard, removal phases, NACK stays parked."""
    snap = build()
    st = DeltaStreamState()

    def req(type_url, sub=(), unsub=(), nonce="", error=None, initial=None):
        r = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, resource_names_subscribe=list(sub),
                                                resource_names_unsubscribe=list(unsub), response_nonce=nonce,
                                                initial_resource_versions=initial or {})
        if error:
            r.error_detail.message = error
        return r

    def push_on(state, type_url, s, removals=False):
        plan = plan_delta(state.types[type_url], s.get(type_url), removals=removals)
        return plan and state.commit(plan)

    def push(type_url, s=snap, removals=False):
        return push_on(st, type_url, s, removals)

    st.on_request(req(TYPE_CLUSTER))
    assert st.types[TYPE_CLUSTER].wildcard
    cds = push(TYPE_CLUSTER)
    assert [r.name for r in cds.resources] == ["a", "b"]
    assert st.on_request(req(TYPE_CLUSTER, nonce=cds.nonce)) == ("ack", cds.system_version_info)
    assert push(TYPE_CLUSTER) is None and push(TYPE_CLUSTER, removals=True) is None
    snap2 = build(clusters={"a": cluster("a", 3)})
    assert [r.name for r in push(TYPE_CLUSTER, snap2).resources] == ["a"]
    assert list(push(TYPE_CLUSTER, snap2, removals=True).removed_resources) == ["b"]
    last = st.types[TYPE_CLUSTER].outstanding
    nonce = next(reversed(last))
    assert st.on_request(req(TYPE_CLUSTER, nonce=nonce, error="no"))[0] == "nack"
    assert push(TYPE_CLUSTER, snap2) is None                # never resent unchanged
    assert plan_delta(DeltaTypeState(TYPE_ROUTE), snap.get(TYPE_ROUTE)) is None   # never requested
    # reconnect race (D22): a cluster modified while disconnected is answered before EDS's
    # first request, which claims the unchanged CLA is current: it is re-sent anyway
    st2 = DeltaStreamState()
    st2.on_request(req(TYPE_CLUSTER, initial={"a": "old-a", "b": snap.get(TYPE_CLUSTER).resource_versions["b"]}))
    assert [r.name for r in push_on(st2, TYPE_CLUSTER, snap).resources] == ["a"]
    eds_versions = dict(snap.get(TYPE_ENDPOINT).resource_versions)
    st2.on_request(req(TYPE_ENDPOINT, ["a", "b"], initial=eds_versions))
    assert [r.name for r in push_on(st2, TYPE_ENDPOINT, snap).resources] == ["a"]
    with pytest.raises(StreamError) as err:
        st.on_request(req(""))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


# =========================================================================================
# G. TTL / heartbeats — not implemented
# =========================================================================================

@both
def test_G39_ttl_not_implemented(mode):
    """No TTLs, no Resource wrapper in SotW, no heartbeats: an ACKed stream stays silent."""
    async def t():
        async with session(mode) as (d, _, _):
            d.watch(TYPE_CLUSTER)
            r = await d.recv_ack(TYPE_CLUSTER)
            if d.delta:
                assert all(not res.HasField("ttl") for res in r.resources)
            else:
                assert all(a.type_url == TYPE_CLUSTER for a in r.resources)   # bare resources
            await d.silence(0.3)
    run(t())


# =========================================================================================
# H. Reconnect, keepalive, overload
# =========================================================================================

@both
def test_H40_streams_closed_with_retriable_status(mode):
    """Envoy retries any closed stream, but warns on non-transient codes: a removed node and
    a stopping server both end streams UNAVAILABLE. (Backoff itself is Envoy's.)"""
    async def t():
        async with session(mode) as (d, cache, _):
            d.watch(TYPE_CLUSTER)
            await d.recv(TYPE_CLUSTER)
            cache.delete(NODE)
            assert (await closed(d.c)).code == grpc.StatusCode.UNAVAILABLE
        cache = SnapshotCache()
        cache.set(NODE, build())
        async with ads_server(cache) as (target, _):
            c = new_client(mode, target)
            await c.start()
            c.send(TYPE_CLUSTER)
            await c.recv()
        assert (await closed(c)).code == grpc.StatusCode.UNAVAILABLE
        await c.close()
    run(t())


@both
def test_H41_new_stream_is_initial(mode):
    """A new stream is answered in full whatever version/nonce it claims from an old one."""
    async def t():
        async with session(mode) as (d, _, _):
            d.watch(TYPE_ENDPOINT, ["a"])
            eds = await d.recv_ack(TYPE_ENDPOINT)
            async with new_client(mode, d.c.target) as c2:
                if mode == "delta":
                    c2.subscribe(TYPE_ENDPOINT, ["a"], nonce=eds.nonce)
                    assert [r.name for r in (await c2.recv()).resources] == ["a"]
                else:
                    c2.send(TYPE_ENDPOINT, ["a"], version=eds.version_info, nonce=eds.nonce)
                    assert (await c2.recv()).version_info == eds.version_info
    run(t())


@both
def test_H42_no_stream_rate_limit(mode):
    """By default no new-stream rate limit (``--max-new-streams-per-second`` turns one on) and no
    push throttle: a burst of streams is served at once (2-core budget: 20 streams)."""
    async def t():
        cache = SnapshotCache()
        cache.set(NODE, build())
        async with ads_server(cache) as (target, status):
            async with grpc.aio.insecure_channel(target) as channel:
                clients = [(DeltaAdsClient if mode == "delta" else AdsClient)(target, make_node(NODE), channel=channel)
                           for _ in range(20)]
                for c in clients:
                    await c.start()
                    c.send(TYPE_CLUSTER)
                got = await asyncio.gather(*[c.recv(timeout=5) for c in clients])
                assert all(r.type_url == TYPE_CLUSTER for r in got)
                assert status.snapshot()["nodes"][NODE]["streams"] == 20
                for c in clients:
                    await c.close()
    run(t())


def test_H43_keepalive_configured():
    """Server keepalive 30 s / 10 s (Istio's values) and Envoy-side HTTP/2 keepalive in the
    bootstrap, for both API types. Not implemented: MaxConnectionAge rebalancing."""
    opts = dict(serve_mod.GRPC_OPTIONS)
    assert opts["grpc.keepalive_time_ms"] == 30_000 and opts["grpc.keepalive_timeout_ms"] == 10_000
    for delta in (False, True):
        text = dynamic_bootstrap(parse_node_id(NODE), "127.0.0.1:18000", delta=delta)
        assert "connection_keepalive: { interval: 30s, timeout: 5s }" in text
        assert ("DELTA_GRPC" in text) == delta
        assert "set_node_on_first_message_only: true" in text


# =========================================================================================
# I. Node identification
# =========================================================================================

@both
def test_I44_config_keyed_by_node_identity(mode):
    """With the real ControlPlane: config follows node.id; two nodes get their own listeners.
    meshplane's choice for an unknown virtual node is NOT_FOUND (loud), not an empty set."""
    async def t():
        cache = SnapshotCache()
        control = ControlPlane([str(GOLDEN / "retail" / "model")], cache)
        async with ads_server(cache, resolver=control.resolve) as (target, status):
            listeners = {}
            for name in ("front", "cart"):
                node_id = f"mesh/retail/virtualNode/{name}"
                async with new_client(mode, target, node_id) as c:
                    d = Driver(mode, c)
                    d.watch(TYPE_LISTENER)
                    await d.recv(TYPE_LISTENER)
                    listeners[name] = d.view[TYPE_LISTENER]
                    assert node_id in status.snapshot()["nodes"]
            assert listeners["front"] != listeners["cart"]
            async with new_client(mode, target, "mesh/retail/virtualNode/nope") as c:
                c.send(TYPE_LISTENER)
                assert (await closed(c)).code == grpc.StatusCode.NOT_FOUND
    run(t())
