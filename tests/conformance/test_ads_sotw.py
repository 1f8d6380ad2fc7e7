"""SotW ADS protocol behaviour (the rules of test_xds_conformance.py), over a real in-process grpc.aio server.

Every test drives the server with the scripted client in tests/xds_client.py. Silence windows
are short (0.2-0.3 s): the server answers in-process in well under that.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, duration_pb2

from tests.xds_client import AdsClient, StreamClosed, make_node
from xds_server.server.errors import StreamError
from xds_server.server.servicer import AggregatedDiscoveryServicer, add_to_server
from xds_server.server.sotw import RequestKind, StreamState, TypeState, plan_response
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.http import start_http
from xds_server.cache.snapshot import (
    PUSH_ORDER,
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    Snapshot,
)
from xds_server.observability.status import StatusRegistry

NODE = "mesh/m/virtualNode/a"
SILENCE = 0.25


# --- resources -------------------------------------------------------------------------

def cluster(name: str, timeout: int = 1, pad: str = "") -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=timeout),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            )
        ),
    )
    if pad:
        c.metadata.filter_metadata["pad"].fields["x"].string_value = pad
    return c


def cla(name: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=p))
            ))
            for p in ports
        ])] if ports else [],
    )


def listener(name: str, port: int, route_name: str) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="ingress",
        rds=hcm_pb2.Rds(
            route_config_name=route_name,
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
            ),
        ),
    )
    typed = any_pb2.Any()
    typed.Pack(hcm, deterministic=True)
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)),
        filter_chains=[listener_components_pb2.FilterChain(filters=[
            listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager", typed_config=typed)
        ])],
    )


def route(name: str, cluster_name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[route_components_pb2.VirtualHost(
        name="vh", domains=["*"],
        routes=[route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(prefix="/"),
            route=route_components_pb2.RouteAction(cluster=cluster_name),
        )],
    )])


def build(clusters=None, endpoints=None, listeners=None, routes=None, secrets=None) -> Snapshot:
    """Default: clusters a, b (b has no endpoints), one listener -> route r -> a."""
    clusters = {"a": cluster("a"), "b": cluster("b")} if clusters is None else clusters
    endpoints = {"a": cla("a", 8080), "b": cla("b")} if endpoints is None else endpoints
    listeners = {"l": listener("l", 15000, "r")} if listeners is None else listeners
    routes = {"r": route("r", "a")} if routes is None else routes
    secrets = {} if secrets is None else secrets
    return Snapshot.from_resources({
        TYPE_CLUSTER: clusters, TYPE_ENDPOINT: endpoints, TYPE_LISTENER: listeners,
        TYPE_ROUTE: routes, TYPE_SECRET: secrets,
    })


def names_of(resp, msg_cls) -> list[str]:
    out = []
    for a in resp.resources:
        m = msg_cls()
        a.Unpack(m)
        out.append(getattr(m, "cluster_name", None) or m.name)
    return out


def cla_names(resp):
    return names_of(resp, endpoint_pb2.ClusterLoadAssignment)


def cds_names(resp):
    return names_of(resp, cluster_pb2.Cluster)


# --- server harness --------------------------------------------------------------------

def run(coro, timeout: float = 15.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


def id_resolver(cache: SnapshotCache):
    def resolve(node):
        if cache.get(node.id) is None:
            raise StreamError(grpc.StatusCode.NOT_FOUND, f"unknown virtual node {node.id}")
        return node.id
    return resolve


@asynccontextmanager
async def ads_server(cache: SnapshotCache, resolver=None, status: StatusRegistry | None = None):
    status = status if status is not None else StatusRegistry()
    server = grpc.aio.server()
    add_to_server(server, AggregatedDiscoveryServicer(cache, resolver or id_resolver(cache), status))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", status
    finally:
        await server.stop(None)


@asynccontextmanager
async def one_client(snapshot: Snapshot | None = None, node_id: str = NODE):
    cache = SnapshotCache()
    cache.set(node_id, snapshot or build())
    async with ads_server(cache) as (target, status):
        async with AdsClient(target, node=make_node(node_id)) as c:
            yield c, cache, status


async def subscribe_all(c: AdsClient):
    """Envoy-like start: wildcard CDS, EDS for a+b, wildcard LDS, RDS r; everything ACKed."""
    c.send(TYPE_CLUSTER)
    cds = await c.recv()
    c.ack(cds)
    c.send(TYPE_ENDPOINT, ["a", "b"])
    eds = await c.recv()
    c.ack(eds, ["a", "b"])
    c.send(TYPE_LISTENER)
    lds = await c.recv()
    c.ack(lds)
    c.send(TYPE_ROUTE, ["r"])
    rds = await c.recv()
    c.ack(rds, ["r"])
    await c.expect_silence(SILENCE)
    return cds, eds, lds, rds


# --- 1. node, type_url, resolver -------------------------------------------------------

def test_second_request_without_node():
    async def t():
        async with one_client() as (c, _, status):
            c.send(TYPE_CLUSTER)
            c.ack(await c.recv())
            req = c.send(TYPE_ENDPOINT, ["a"])        # no node on the 2nd request
            assert not req.HasField("node")
            eds = await c.recv()
            assert eds.type_url == TYPE_ENDPOINT and cla_names(eds) == ["a"]
            assert status.snapshot()["nodes"][NODE]["streams"] == 1
    run(t())


def test_missing_node_invalid_argument():
    async def t():
        cache = SnapshotCache()
        cache.set(NODE, build())
        async with ads_server(cache) as (target, _):
            async with AdsClient(target) as c:           # no node at all
                c.send(TYPE_CLUSTER)
                with pytest.raises(StreamClosed) as e:
                    await c.recv()
                assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    run(t())


def test_empty_type_url_invalid_argument():
    async def t():
        async with one_client() as (c, _, _):
            c.send("")                                    # first request
            with pytest.raises(StreamClosed) as e:
                await c.recv()
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        async with one_client() as (c, _, status):
            c.send(TYPE_CLUSTER)
            await c.recv()
            c.send("")                                    # a later request
            with pytest.raises(StreamClosed) as e:
                await c.recv()
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            await asyncio.sleep(0.05)
            assert status.snapshot()["nodes"] == {}
    run(t())


def test_unknown_node_rejected():
    async def t():
        cache = SnapshotCache()
        cache.set(NODE, build())
        async with ads_server(cache) as (target, status):
            async with AdsClient(target, node=make_node("mesh/m/virtualNode/nope")) as c:
                c.send(TYPE_CLUSTER)
                with pytest.raises(StreamClosed) as e:
                    await c.recv()
                assert e.value.code == grpc.StatusCode.NOT_FOUND
                assert "unknown virtual node" in e.value.details
            assert status.snapshot()["nodes"] == {}
    run(t())


def test_async_resolver_is_awaited():
    async def t():
        cache = SnapshotCache()

        async def resolve(node):
            cache.set("shared", build())                  # resolver fills the cache
            return "shared"
        async with ads_server(cache, resolver=resolve) as (target, status):
            async with AdsClient(target, node=make_node(NODE)) as c:
                c.send(TYPE_CLUSTER)
                assert cds_names(await c.recv()) == ["a", "b"]
                assert status.snapshot()["nodes"][NODE]["key"] == "shared"
    run(t())


# --- 2. subscriptions ------------------------------------------------------------------

def test_legacy_wildcard_and_unsubscribe():
    """The spec's SotW example: legacy wildcard, then names, then empty = unsubscribe, then '*'."""
    async def t():
        async with one_client() as (c, cache, _):
            c.send(TYPE_ENDPOINT)                         # never named anything: wildcard
            r = await c.recv()
            assert cla_names(r) == ["a", "b"]
            c.ack(r)                                      # ACK with empty names: still wildcard
            await c.expect_silence(SILENCE)
            cache.set(NODE, build(endpoints={"a": cla("a", 8080), "b": cla("b", 9)}))
            r = await c.recv()
            assert cla_names(r) == ["a", "b"]
            c.ack(r, ["a"])                               # names: no longer wildcard
            await c.expect_silence(SILENCE)               # 'a' unchanged and already sent
            cache.set(NODE, build(endpoints={"a": cla("a", 8080), "b": cla("b", 10)}))
            await c.expect_silence(SILENCE)               # b changed, but only a is wanted
            c.send(TYPE_ENDPOINT, [], version=r.version_info, nonce=r.nonce)  # empty: unsubscribe
            await c.expect_silence(SILENCE)
            cache.set(NODE, build(endpoints={"a": cla("a", 8081), "b": cla("b", 10)}))
            await c.expect_silence(SILENCE)               # unsubscribed: nothing pushed
            c.send(TYPE_ENDPOINT, ["*"], version=r.version_info, nonce=r.nonce)
            r = await c.recv()
            assert cla_names(r) == ["a", "b"]
    run(t())


def test_type_state_subscription_rules():
    ts = TypeState(TYPE_ENDPOINT)
    ts.update_subscription([])
    assert ts.wildcard and ts.force
    ts.force = False
    ts.update_subscription(["a", "b"])                   # narrowing a wildcard: nothing new
    assert not ts.wildcard and ts.names == {"a", "b"} and not ts.force
    ts.update_subscription(["a", "b", "c"])
    assert ts.force
    ts.force = False
    ts.update_subscription([])
    assert not ts.wildcard and not ts.subscribed and not ts.force
    ts.update_subscription(["*", "a"])
    assert ts.wildcard and ts.names == {"a"} and ts.force


def test_state_machine_without_grpc():
    """The decision layer alone: NACK parks the version, CDS sends arm an EDS re-answer."""
    snap = build()
    st = StreamState()

    def req(type_url, names=(), version="", nonce="", error=None):
        r = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                           version_info=version, response_nonce=nonce)
        if error:
            r.error_detail.message = error
        return r

    def push(type_url, s=snap):
        plan = plan_response(st.types[type_url], s.get(type_url))
        return plan and st.commit(plan)

    assert st.on_request(req(TYPE_CLUSTER)) == RequestKind.INITIAL
    cds = push(TYPE_CLUSTER)
    assert st.on_request(req(TYPE_CLUSTER, version=cds.version_info, nonce=cds.nonce)) == RequestKind.ACK
    assert push(TYPE_CLUSTER) is None                     # ACKed, unchanged
    assert st.on_request(req(TYPE_ENDPOINT, ["a"])) == RequestKind.INITIAL
    eds = push(TYPE_ENDPOINT)
    assert st.on_request(req(TYPE_ENDPOINT, ["a"], eds.version_info, eds.nonce)) == RequestKind.ACK
    assert push(TYPE_ENDPOINT) is None
    snap2 = build(clusters={"a": cluster("a", 4), "b": cluster("b")})
    cds2 = push(TYPE_CLUSTER, snap2)
    assert cds2 is not None and push(TYPE_ENDPOINT, snap2) is None   # endpoints unchanged
    st.on_request(req(TYPE_ENDPOINT, ["a"], eds.version_info, eds.nonce))
    assert push(TYPE_ENDPOINT, snap2) is not None         # AlwaysRespond after CDS
    assert st.on_request(req(TYPE_CLUSTER, version=cds.version_info, nonce=cds2.nonce,
                             error="no")) == RequestKind.NACK
    assert push(TYPE_CLUSTER, snap2) is None              # parked on the rejected version
    assert st.on_request(req(TYPE_CLUSTER, version=cds.version_info, nonce=cds.nonce)) == RequestKind.STALE
    assert push(TYPE_CLUSTER, build(clusters={"a": cluster("a", 5)})) is not None


# --- 3. never push an unrequested type -------------------------------------------------

def test_unrequested_type_never_pushed():
    async def t():
        async with one_client() as (c, cache, _):
            c.send(TYPE_CLUSTER)
            c.ack(await c.recv())
            cache.set(NODE, build(endpoints={"a": cla("a", 1), "b": cla("b", 2)},
                                  routes={"r": route("r", "b")}, listeners={}))
            await c.expect_silence(SILENCE)               # EDS/LDS/RDS changed, never requested
            cache.set(NODE, build(clusters={"a": cluster("a")}, listeners={}))
            r = await c.recv()  # removed b is kept until the rest of the pass is out (E26) ...
            assert r.type_url == TYPE_CLUSTER and cds_names(r) == ["a", "b"]
            r = await c.recv()  # ... then dropped; still only the requested type
            assert r.type_url == TYPE_CLUSTER and cds_names(r) == ["a"]
            await c.expect_silence(SILENCE)
    run(t())


# --- 4. ACK and newly requested names ---------------------------------------------------

def test_ack_produces_no_response():
    async def t():
        async with one_client() as (c, cache, _):
            await subscribe_all(c)                        # ends with expect_silence
            cache.set(NODE, build())                      # equal content: nothing changed
            await c.expect_silence(SILENCE)
    run(t())


def test_newly_requested_names_sent_even_if_unchanged():
    async def t():
        async with one_client() as (c, _, _):
            c.send(TYPE_ENDPOINT, ["a"])
            r = await c.recv()
            assert cla_names(r) == ["a"]
            c.ack(r, ["a", "b"])                          # ACK that adds b
            r = await c.recv()
            assert cla_names(r) == ["a", "b"]
            c.ack(r, ["a"])                               # drop b: no response needed
            await c.expect_silence(SILENCE)
            c.ack(r, ["a", "b"])                          # b again, unchanged: resent (#16)
            r2 = await c.recv()
            assert cla_names(r2) == ["a", "b"] and r2.version_info == r.version_info
    run(t())


# --- 5. NACK ---------------------------------------------------------------------------

def test_nack_is_not_answered_with_same_version():
    async def t():
        async with one_client() as (c, cache, status):
            c.send(TYPE_CLUSTER)
            good = await c.recv()
            c.ack(good)
            await c.expect_silence(0.1)                   # let the ACK land before the next push
            cache.set(NODE, build(clusters={"a": cluster("a", timeout=5), "b": cluster("b")}))
            bad = await c.recv()
            c.nack(bad, "bad cluster a", accepted_version=good.version_info)
            await c.expect_silence(SILENCE)               # rejected version is never resent
            c.send(TYPE_CLUSTER, version=good.version_info, nonce=bad.nonce)  # follow-up request
            await c.expect_silence(SILENCE)
            cds = status.snapshot()["nodes"][NODE]["types"]["cds"]
            assert cds["nacked"] == {"version": bad.version_info, "error": "bad cluster a"}
            assert cds["acked"] == good.version_info and cds["sent"] == bad.version_info
            cache.set(NODE, build(clusters={"a": cluster("a", timeout=2), "b": cluster("b")}))
            fixed = await c.recv()                        # a new version is pushed
            assert fixed.version_info not in (good.version_info, bad.version_info)
            c.ack(fixed)
            await c.expect_silence(SILENCE)
            cds = status.snapshot()["nodes"][NODE]["types"]["cds"]
            assert cds["acked"] == fixed.version_info and cds["nacked"] is None and cds["nacks"] == 1
    run(t())


# --- 6. stale nonce --------------------------------------------------------------------

def test_stale_nonce_is_ignored():
    async def t():
        async with one_client() as (c, cache, _):
            c.send(TYPE_ENDPOINT, ["a"])
            r1 = await c.recv()
            c.ack(r1, ["a"])
            cache.set(NODE, build(endpoints={"a": cla("a", 1), "b": cla("b")}))
            r2 = await c.recv()
            c.send(TYPE_ENDPOINT, ["a", "b"], version=r1.version_info, nonce=r1.nonce)  # stale
            await c.expect_silence(SILENCE)
            c.ack(r2, ["a", "b"])                         # current nonce carries the names again
            r3 = await c.recv()
            assert cla_names(r3) == ["a", "b"]
            c.send(TYPE_ENDPOINT, ["a", "b"], version=r3.version_info)  # empty nonce: always handled
            r4 = await c.recv()
            assert cla_names(r4) == ["a", "b"]
    run(t())


def test_nonce_from_unknown_stream_is_initial():
    st = StreamState()
    req = discovery_pb2.DiscoveryRequest(
        type_url=TYPE_CLUSTER, version_info="abc", response_nonce="old-stream-7")
    assert st.on_request(req) == RequestKind.INITIAL
    assert plan_response(st.types[TYPE_CLUSTER], build().get(TYPE_CLUSTER)) is not None


# --- 7. nonces -------------------------------------------------------------------------

def test_nonces_fresh_and_unique():
    async def t():
        async with one_client() as (c, cache, _):
            seen = [r.nonce for r in await subscribe_all(c)]
            for i in range(3):
                cache.set(NODE, build(clusters={"a": cluster("a", timeout=10 + i), "b": cluster("b")}))
                r = await c.recv()
                seen.append(r.nonce)
                c.ack(r)
            async with AdsClient(c.target, node=make_node(NODE)) as c2:
                c2.send(TYPE_CLUSTER)
                seen.append((await c2.recv()).nonce)
            assert all(seen) and len(set(seen)) == len(seen)
    run(t())


# --- 8. content per type ---------------------------------------------------------------

def test_cds_full_state_removal_and_empty():
    async def t():
        async with one_client() as (c, cache, _):
            c.send(TYPE_CLUSTER)
            r = await c.recv()
            assert cds_names(r) == ["a", "b"]
            c.ack(r)
            cache.set(NODE, build(clusters={"a": cluster("a")}))
            r = await c.recv()
            assert cds_names(r) == ["a", "b"] and r.version_info.endswith("+draining")  # b kept for the pass
            c.ack(r)
            r = await c.recv()
            assert cds_names(r) == ["a"]                  # N-1: b deleted
            c.ack(r)
            cache.set(NODE, build(clusters={}))
            r = await c.recv()
            assert cds_names(r) == ["a"] and r.version_info.endswith("+draining")
            c.ack(r)
            r = await c.recv()
            assert r.type_url == TYPE_CLUSTER and len(r.resources) == 0   # empty = delete all
            c.ack(r)
            await c.expect_silence(SILENCE)
    run(t())


def test_lds_empty_on_first_request_when_none():
    async def t():
        async with one_client(build(listeners={}, routes={})) as (c, _, _):
            c.send(TYPE_LISTENER)
            r = await c.recv()
            assert r.type_url == TYPE_LISTENER and len(r.resources) == 0
    run(t())


def test_eds_only_requested_names_and_empty_cla():
    async def t():
        async with one_client() as (c, _, _):
            c.send(TYPE_ENDPOINT, ["b"])
            r = await c.recv()
            (only,) = r.resources
            m = endpoint_pb2.ClusterLoadAssignment()
            only.Unpack(m)
            assert m.cluster_name == "b" and len(m.endpoints) == 0   # zero endpoints, still answered
    run(t())


def test_requested_missing_name_pushed_when_it_appears():
    async def t():
        async with one_client() as (c, cache, _):
            c.send(TYPE_ENDPOINT, ["a", "c"])
            r = await c.recv()
            assert cla_names(r) == ["a"]                  # c doesn't exist yet
            c.ack(r, ["a", "c"])
            await c.expect_silence(SILENCE)
            cache.set(NODE, build(clusters={"a": cluster("a"), "c": cluster("c")},
                                  endpoints={"a": cla("a", 8080), "c": cla("c", 7)}))
            r = await c.recv()
            assert cla_names(r) == ["a", "c"]
            c.ack(r, ["a", "c"])
            await c.expect_silence(SILENCE)
    run(t())


# --- 9. warming dependencies -----------------------------------------------------------

def test_eds_answered_after_cds_change_even_if_endpoints_unchanged():
    async def t():
        async with one_client() as (c, cache, _):
            cds, eds, _, _ = await subscribe_all(c)
            cache.set(NODE, build(clusters={"a": cluster("a", timeout=7), "b": cluster("b")}))
            cds2 = await c.recv()
            assert cds2.type_url == TYPE_CLUSTER
            await c.expect_silence(SILENCE)               # endpoints unchanged: no EDS push by itself
            c.ack(cds2)
            # Envoy re-requests EDS for the re-created clusters with the same version/nonce
            c.send(TYPE_ENDPOINT, ["a", "b"], version=eds.version_info, nonce=eds.nonce)
            eds2 = await c.recv()
            assert eds2.type_url == TYPE_ENDPOINT and cla_names(eds2) == ["a", "b"]
            assert eds2.version_info == eds.version_info
            c.ack(eds2, ["a", "b"])                       # the flag is one-shot
            await c.expect_silence(SILENCE)
    run(t())


def test_rds_answered_after_lds_change_even_if_routes_unchanged():
    async def t():
        async with one_client() as (c, cache, _):
            _, _, lds, rds = await subscribe_all(c)
            cache.set(NODE, build(listeners={"l": listener("l", 15001, "r")}))
            lds2 = await c.recv()
            assert lds2.type_url == TYPE_LISTENER
            c.ack(lds2)
            c.send(TYPE_ROUTE, ["r"], version=rds.version_info, nonce=rds.nonce)
            rds2 = await c.recv()
            assert rds2.type_url == TYPE_ROUTE and len(rds2.resources) == 1
    run(t())


# --- 10. order -------------------------------------------------------------------------

def test_order_cds_eds_lds_rds_on_change():
    async def t():
        async with one_client() as (c, cache, _):
            await subscribe_all(c)
            c.send(TYPE_SECRET, ["s"])
            c.ack(await c.recv(), ["s"])                  # empty SDS answer on the initial request
            sec = secret_pb2.Secret(name="s")
            cache.set(NODE, build(
                clusters={"a": cluster("a", 3), "b": cluster("b"), "c": cluster("c")},
                endpoints={"a": cla("a", 1), "b": cla("b", 2), "c": cla("c", 3)},
                listeners={"l": listener("l", 15002, "r")},
                routes={"r": route("r", "c")},
                secrets={"s": sec},
            ))
            got = [(await c.recv()).type_url for _ in range(5)]
            assert got == list(PUSH_ORDER)
    run(t())


# --- 11. reconnect ---------------------------------------------------------------------

def test_reconnect_is_initial_regardless_of_version():
    async def t():
        async with one_client() as (c, cache, _):
            cds, eds, lds, rds = await subscribe_all(c)
            async with AdsClient(c.target, node=make_node(NODE)) as c2:
                # the new stream claims the current versions (and even an old nonce)
                c2.send(TYPE_CLUSTER, version=cds.version_info)
                assert cds_names(await c2.recv()) == ["a", "b"]
                c2.send(TYPE_ENDPOINT, ["a"], version=eds.version_info, nonce=eds.nonce)
                assert cla_names(await c2.recv()) == ["a"]
                c2.send(TYPE_LISTENER, version=lds.version_info)
                assert (await c2.recv()).version_info == lds.version_info
    run(t())


# --- 12. streams: independence, cleanup ------------------------------------------------

def test_slow_stream_does_not_block_others():
    """A client that never reads fills its HTTP/2 window; the server's write to it blocks,
    yet snapshot changes keep flowing to another stream (no global lock across a send)."""
    async def t():
        cache = SnapshotCache()
        pad = "x" * 256 * 1024
        big = lambda i: build(clusters={f"c{j}": cluster(f"c{j}", timeout=i + 1, pad=pad) for j in range(4)})
        cache.set("slow", big(0))
        cache.set(NODE, build())
        async with ads_server(cache) as (target, status):
            slow_channel = grpc.aio.insecure_channel(target)
            slow_q: asyncio.Queue = asyncio.Queue()

            async def slow_requests():
                while True:
                    yield await slow_q.get()
            slow_call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(slow_channel).StreamAggregatedResources(
                slow_requests())
            slow_q.put_nowait(discovery_pb2.DiscoveryRequest(type_url=TYPE_CLUSTER, node=make_node("slow")))
            async with AdsClient(target, node=make_node(NODE)) as fast:
                fast.send(TYPE_CLUSTER)
                fast.ack(await fast.recv())
                for i in range(1, 11):
                    cache.set("slow", big(i))             # the slow stream never reads these
                    cache.set(NODE, build(clusters={"a": cluster("a", timeout=i + 1)}))
                    r = await fast.recv(timeout=1.0)
                    fast.ack(r)
                slow = status.snapshot()["nodes"]["slow"]["per_stream"][0]["types"]["cds"]
                # the last pushes to the slow stream are still queued behind the blocked write
                assert slow["sent"] != cache.get("slow").get(TYPE_CLUSTER).version
            slow_call.cancel()
            await slow_channel.close()
    run(t())


def test_stream_end_cleans_up_status_and_tasks():
    async def t():
        cache = SnapshotCache()
        cache.set(NODE, build())
        async with ads_server(cache) as (target, status):
            before = len(asyncio.all_tasks())
            for closer in ("cancel", "halfclose"):
                c = AdsClient(target, node=make_node(NODE))
                await c.start()
                c.send(TYPE_CLUSTER)
                await c.recv()
                assert status.snapshot()["nodes"][NODE]["streams"] == 1
                assert cache.listener_count(NODE) == 1
                if closer == "cancel":
                    await c.close()
                else:
                    c.half_close()
                    code, _ = await c.status()
                    assert code == grpc.StatusCode.OK
                    await c.close()
                for _ in range(50):
                    if not status.snapshot()["nodes"] and cache.listener_count() == 0:
                        break
                    await asyncio.sleep(0.02)
                assert status.snapshot()["nodes"] == {}
                assert cache.listener_count() == 0
            await asyncio.sleep(0.05)
            assert len(asyncio.all_tasks()) <= before
    run(t())


def test_snapshot_removed_closes_stream():
    async def t():
        async with one_client() as (c, cache, _):
            c.send(TYPE_CLUSTER)
            await c.recv()
            cache.delete(NODE)
            with pytest.raises(StreamClosed) as e:
                await c.recv()
            assert e.value.code == grpc.StatusCode.UNAVAILABLE
    run(t())


# --- snapshots and versions ------------------------------------------------------------

_VERSION_SCRIPT = """
import json
from tests.conformance.test_ads_sotw import build
print(json.dumps(build().versions()))
"""


def test_versions_stable_across_restart():
    s1, s2 = build(), build()
    assert s1.versions() == s2.versions()
    assert all(s1.get(t).resources[n].value == s2.get(t).resources[n].value
               for t in PUSH_ORDER for n in s1.get(t).resources)
    assert build(clusters={"a": cluster("a", 9)}).get(TYPE_CLUSTER).version != s1.get(TYPE_CLUSTER).version
    # another process (different hash seed) computes the same versions
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", _VERSION_SCRIPT], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == s1.versions()

    async def t():                                        # two server instances agree on the wire
        versions = []
        for _ in range(2):
            async with one_client(build()) as (c, _, _):
                c.send(TYPE_CLUSTER)
                r = await c.recv()
                versions.append((r.version_info, [a.value for a in r.resources]))
        assert versions[0] == versions[1]
    run(t())


def test_snapshot_rejects_misnamed_resource():
    with pytest.raises(ValueError):
        Snapshot.from_resources({TYPE_CLUSTER: {"x": cluster("y")}})
    with pytest.raises(ValueError):
        Snapshot.from_resources({TYPE_ENDPOINT: {"a": cluster("a")}})


def test_cache_set_wakes_only_on_change():
    async def t():
        cache = SnapshotCache()
        cache.set("k", build())
        gen = cache.generation("k")
        waiter = asyncio.ensure_future(cache.wait_for_change("k", gen))
        await asyncio.sleep(0.01)
        cache.set("k", build())                           # equal content
        await asyncio.sleep(0.01)
        assert not waiter.done()
        cache.set("k", build(clusters={}))
        assert await asyncio.wait_for(waiter, 1) == gen + 1
        assert cache.listener_count() == 0 and cache.keys() == ["k"]
    run(t())


# --- 13/14. status and HTTP ------------------------------------------------------------

def test_status_snapshot_per_node_and_stream():
    async def t():
        async with one_client() as (c, cache, status):
            cds, _, _, _ = await subscribe_all(c)
            async with AdsClient(c.target, node=make_node(NODE)) as c2:
                c2.send(TYPE_CLUSTER)
                r = await c2.recv()
                snap = status.snapshot()
                json.dumps(snap)
                node = snap["nodes"][NODE]
                assert node["streams"] == 2 and node["key"] == NODE and len(node["per_stream"]) == 2
                assert set(node["types"]) == {"cds", "eds", "lds", "rds", "sds"}
                cds_agg = node["types"]["cds"]
                assert cds_agg["sent"] == cds.version_info and cds_agg["acked_streams"] == 1
                assert cds_agg["last_push"].endswith("+00:00")
                first = node["per_stream"][0]["types"]
                assert first["eds"]["acked"] == first["eds"]["sent"] is not None
                assert first["sds"] == {"sent": None, "acked": None, "nacked": None, "nacks": 0, "last_push": None}
                c2.ack(r)
                await c2.expect_silence(0.1)
                assert status.snapshot()["nodes"][NODE]["types"]["cds"]["acked_streams"] == 2
    run(t())


async def _http(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 2)       # server closes the connection
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_http_status_healthz_404_and_concurrency():
    async def t():
        async with one_client() as (c, _, status):
            c.send(TYPE_CLUSTER)
            await c.recv()
            server = await start_http("127.0.0.1", 0, status, extra=lambda: {"last_reload_error": None})
            port = server.sockets[0].getsockname()[1]
            try:
                code, body = await _http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (code, body) == (200, b"ok\n")
                code, body = await _http(port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                doc = json.loads(body)
                assert code == 200 and doc["model"] == {"last_reload_error": None}
                assert doc["nodes"][NODE]["types"]["cds"]["sent"]
                assert (await _http(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
                assert (await _http(port, b"POST /status HTTP/1.1\r\n\r\n"))[0] == 405
                # a silent client doesn't hold up others
                idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
                results = await asyncio.gather(*[
                    _http(port, b"GET /status HTTP/1.1\r\n\r\n") for _ in range(10)])
                assert all(code == 200 for code, _ in results)
                idle_w.close()
            finally:
                server.close()
                await server.wait_closed()
    run(t())


def test_http_status_extra_failure_is_500():
    async def t():
        def boom():
            raise RuntimeError("x")
        server = await start_http("127.0.0.1", 0, StatusRegistry(), extra=boom)
        port = server.sockets[0].getsockname()[1]
        try:
            assert (await _http(port, b"GET /status HTTP/1.1\r\n\r\n"))[0] == 500
            assert (await _http(port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200
        finally:
            server.close()
            await server.wait_closed()
    run(t())
