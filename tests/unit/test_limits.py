"""Connection limits: per node id and in total, refused with RESOURCE_EXHAUSTED (as App Mesh did)."""
from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from tests.conformance.test_ads_sotw import NODE, build, run
from tests.unit.test_metrics_status import plane, until
from tests.xds_client import AdsClient, StreamClosed, make_node
from xds_server.server.errors import StreamError
from xds_server.cli import build_parser
from xds_server.admission.stream_limits import StreamLimiter
from xds_server.cache.snapshot import TYPE_CLUSTER
from xds_server.observability.status import StatusRegistry
from xds_server.server.callbacks import StreamInfo

OTHER = "mesh/m/virtualNode/b"


async def connect(target: str, node_id: str) -> AdsClient:
    """A stream that got its first response (so it is admitted and counted)."""
    c = await AdsClient(target, node=make_node(node_id)).start()
    c.send(TYPE_CLUSTER)
    await c.recv()
    return c


async def refused(target: str, node_id: str) -> str:
    async with AdsClient(target, node=make_node(node_id)) as c:
        c.send(TYPE_CLUSTER)
        with pytest.raises(StreamClosed) as e:
            await c.recv()
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        return e.value.details


def test_per_node_limit(caplog):
    async def t():
        async with plane({NODE: build(), OTHER: build()}, max_per_node=2) as p:
            clients = [await connect(p.target, NODE) for _ in range(2)]
            try:
                details = await refused(p.target, NODE)            # the third for this node id
                assert NODE in details and "2" in details and "--max-proxies-per-node" in details
                others = [await connect(p.target, OTHER) for _ in range(2)]  # other nodes unaffected
                assert p.registry.count(NODE) == 2 and p.registry.count() == 4
                assert p.metrics.streams_rejected.value(code="RESOURCE_EXHAUSTED", reason="max_proxies_per_node") == 1
                # a slot frees when a replica goes away
                await clients.pop().close()
                await until(lambda: p.registry.count(NODE) == 1)
                clients.append(await connect(p.target, NODE))
                for c in others:
                    await c.close()
            finally:
                for c in clients:
                    await c.close()
            await until(lambda: p.registry.count() == 0)
    with caplog.at_level(logging.WARNING, logger="meshplane.xds.limits"):
        run(t())
    assert any("--max-proxies-per-node" in r.getMessage() and NODE in r.getMessage() for r in caplog.records)


def test_total_stream_limit():
    async def t():
        async with plane({NODE: build(), OTHER: build()}, max_per_node=0, max_streams=3) as p:
            clients = [await connect(p.target, NODE) for _ in range(2)] + [await connect(p.target, OTHER)]
            try:
                details = await refused(p.target, OTHER)
                assert "3" in details and "--max-streams" in details and OTHER in details
                assert p.metrics.streams_rejected.value(code="RESOURCE_EXHAUSTED", reason="max_streams") == 1
                async with AdsClient(p.target, node=make_node("mesh/m/virtualNode/ghost")) as ghost:
                    ghost.send(TYPE_CLUSTER)
                    with pytest.raises(StreamClosed):
                        await ghost.recv()
                # the limit is checked first: an unknown node is refused too while the server is full
                assert p.metrics.streams_rejected.value(code="RESOURCE_EXHAUSTED", reason="max_streams") == 2
                await clients.pop().close()
                await until(lambda: p.registry.count() == 2)
                async with AdsClient(p.target, node=make_node("mesh/m/virtualNode/ghost")) as ghost:
                    ghost.send(TYPE_CLUSTER)
                    with pytest.raises(StreamClosed) as e:
                        await ghost.recv()
                    assert e.value.code == grpc.StatusCode.NOT_FOUND
                assert p.metrics.streams_rejected.value(code="NOT_FOUND", reason="resolver") == 1
            finally:
                for c in clients:
                    await c.close()
    run(t())


def test_concurrent_connects_cannot_overshoot():
    async def t():
        async with plane(max_per_node=3) as p:
            clients = [AdsClient(p.target, node=make_node(NODE)) for _ in range(8)]
            for c in clients:
                await c.start()
                c.send(TYPE_CLUSTER)
            outcomes = await asyncio.gather(*[c.recv() for c in clients], return_exceptions=True)
            try:
                ok = [o for o in outcomes if not isinstance(o, Exception)]
                bad = [o for o in outcomes if isinstance(o, StreamClosed)]
                assert len(ok) == 3 and len(bad) == 5, outcomes
                assert all(b.code == grpc.StatusCode.RESOURCE_EXHAUSTED for b in bad)
                assert p.registry.count(NODE) == 3
            finally:
                for c in clients:
                    await c.close()
    run(t())


def test_wrap_async_resolver_and_resolver_rejections():
    async def t():
        registry = StatusRegistry()
        limiter = StreamLimiter(registry, max_proxies_per_node=1, max_streams=0)

        async def resolve(node):
            await asyncio.sleep(0)
            if node.id == "bad":
                raise StreamError(grpc.StatusCode.NOT_FOUND, "unknown")
            return "key-" + node.id

        wrapped = limiter.wrap(resolve)
        assert await wrapped(make_node("x")) == "key-x"
        pending = wrapped(make_node("x"))            # admitted before its await ...
        registry.on_stream_open(StreamInfo(1, "x", "key-x", "peer"))   # ... someone else took the slot meanwhile
        with pytest.raises(StreamError) as e:
            await pending
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(StreamError) as e:
            await wrapped(make_node("bad"))
        assert e.value.code == grpc.StatusCode.NOT_FOUND
        assert limiter.wrap(lambda node: "sync")(make_node("y")) == "sync"
    run(t())


def test_cli_flags():
    args = build_parser().parse_args(["serve", "m.yaml", "--max-proxies-per-node", "50", "--max-streams", "0"])
    assert (args.max_proxies_per_node, args.max_streams) == (50, 0)
    args = build_parser().parse_args(["serve", "m.yaml"])
    assert (args.max_proxies_per_node, args.max_streams) == (500, 10_000)


def test_new_stream_rate_limit_token_bucket():
    """--max-new-streams-per-second: a burst of one second's worth, then the rate; off by default."""
    now = [100.0]
    limiter = StreamLimiter(StatusRegistry(), max_new_streams_per_second=5, clock=lambda: now[0])
    for _ in range(5):
        limiter.admit_new_stream(NODE)               # the burst
    with pytest.raises(StreamError) as err:
        limiter.admit_new_stream(NODE)
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-new-streams-per-second" in err.value.message
    now[0] += 0.2                                     # 0.2 s at 5/s: one more token
    limiter.admit_new_stream(NODE)
    with pytest.raises(StreamError):
        limiter.admit_new_stream(NODE)
    unlimited = StreamLimiter(StatusRegistry(), clock=lambda: now[0])
    for _ in range(1000):
        unlimited.admit_new_stream(NODE)
    assert build_parser().parse_args(["serve", "m.yaml"]).max_new_streams_per_second == 0
    assert build_parser().parse_args(["serve", "m.yaml", "--max-new-streams-per-second", "50"]).max_new_streams_per_second == 50


def test_new_stream_rate_limit_over_grpc():
    """A burst of connects over the rate: the excess is refused with RESOURCE_EXHAUSTED, the rest served."""
    from xds_server.server.servicer import AggregatedDiscoveryServicer, add_to_server
    from xds_server.cache.snapshot_cache import SnapshotCache

    async def t():
        cache = SnapshotCache()
        cache.set(NODE, build())
        registry = StatusRegistry()
        limiter = StreamLimiter(registry, max_new_streams_per_second=3, clock=lambda: 0.0)  # time stands still: 3 tokens
        server = grpc.aio.server()
        add_to_server(server, AggregatedDiscoveryServicer(cache, limiter.wrap(lambda node: NODE), registry))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            target = f"127.0.0.1:{port}"
            admitted = [await connect(target, NODE) for _ in range(3)]
            details = await refused(target, NODE)
            assert "new xDS streams per second" in details
            for c in admitted:
                await c.close()
        finally:
            await server.stop(0)
    run(t())
