"""CSDS (envoy.service.status.v3.ClientStatusDiscoveryService) over a real grpc channel.

Scripted ADS clients connect to an in-process server (tests/test_metrics_status.py ``plane``);
a CSDS client on the same port asks what each of them holds.
"""
from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, regex_pb2, string_pb2, struct_pb2 as struct_matcher_pb2
from google.protobuf import any_pb2

from tests.conformance.test_ads_sotw import NODE, SILENCE, build, cla, cluster, listener, run
from tests.unit.test_metrics_status import CERT_PEM, KEY_PEM, plane, secret_snapshot
from tests.xds_client import AdsClient, make_node
from xds_server.server.csds import redacted_any, resource_status
from xds_server.cache.snapshot import TYPE_CLUSTER, TYPE_ENDPOINT, TYPE_LISTENER, TYPE_ROUTE, TYPE_SECRET
from xds_server.observability.status import StatusRegistry
from xds_server.server.callbacks import StreamInfo

OTHER = "mesh/m/virtualNode/b"


async def fetch(target: str, request: csds_pb2.ClientStatusRequest | None = None) -> csds_pb2.ClientStatusResponse:
    async with grpc.aio.insecure_channel(target) as ch:
        return await csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).FetchClientStatus(
            request or csds_pb2.ClientStatusRequest(), timeout=5)


def statuses(config: csds_pb2.ClientConfig) -> dict[tuple[str, str], csds_pb2.ClientConfig.GenericXdsConfig]:
    return {(x.type_url, x.name): x for x in config.generic_xds_configs}


def by_node(resp: csds_pb2.ClientStatusResponse) -> dict[str, csds_pb2.ClientConfig]:
    return {c.node.id: c for c in resp.config}


def matcher(**kw) -> node_pb2.NodeMatcher:
    return node_pb2.NodeMatcher(node_id=string_pb2.StringMatcher(**kw))


def test_fetch_synced_stale_not_sent_and_error():
    async def t():
        snap = build()
        async with plane({NODE: snap, OTHER: build(clusters={"z": cluster("z")}, endpoints={})}) as p:
            assert (await fetch(p.target)).config == []              # nobody connected
            async with AdsClient(p.target, node=make_node(NODE)) as c, \
                    AdsClient(p.target, node=make_node(OTHER)) as other:
                other.send(TYPE_CLUSTER)
                other.ack(await other.recv())
                c.send(TYPE_CLUSTER)
                c.ack(await c.recv())                                # CDS: SYNCED
                c.send(TYPE_ENDPOINT, ["a", "b"])
                eds = await c.recv()                                 # EDS: sent, no ACK yet: STALE
                c.send(TYPE_LISTENER)
                lds = await c.recv()
                c.nack(lds, "listener l: bad filter")                # LDS: ERROR
                await c.expect_silence(SILENCE)                      # RDS: never requested: NOT_SENT
                await other.expect_silence(0.01)

                resp = await fetch(p.target)
                configs = by_node(resp)
                assert set(configs) == {NODE, OTHER}
                config = configs[NODE]
                meta = config.node.metadata.fields["meshplane"].struct_value.fields
                assert meta["key"].string_value == NODE and meta["streams"].number_value == 1
                st = statuses(config)
                assert set(st) == {(TYPE_CLUSTER, "a"), (TYPE_CLUSTER, "b"), (TYPE_ENDPOINT, "a"), (TYPE_ENDPOINT, "b"),
                                   (TYPE_LISTENER, "l"), (TYPE_ROUTE, "r")}
                a = st[(TYPE_CLUSTER, "a")]
                assert a.config_status == csds_pb2.SYNCED and a.client_status == 3  # ACKED
                assert a.version_info == snap.get(TYPE_CLUSTER).version
                assert a.xds_config == snap.get(TYPE_CLUSTER).resources["a"]
                assert a.last_updated.seconds > 0
                assert st[(TYPE_ENDPOINT, "a")].config_status == csds_pb2.STALE
                err = st[(TYPE_LISTENER, "l")]
                assert err.config_status == csds_pb2.ERROR and err.client_status == 4  # NACKED
                assert err.error_state.details == "listener l: bad filter"
                assert err.error_state.version_info == lds.version_info
                assert err.error_state.last_update_attempt.seconds > 0
                assert st[(TYPE_ROUTE, "r")].config_status == csds_pb2.NOT_SENT
                assert not st[(TYPE_ROUTE, "r")].HasField("last_updated")

                # the EDS ACK and a fixed listener move them to SYNCED
                c.ack(eds, ["a", "b"])
                p.cache.set(NODE, build(listeners={"l": listener("l", 15001, "r")}))
                fixed = await c.recv()
                assert fixed.type_url == TYPE_LISTENER
                c.ack(fixed)
                await c.expect_silence(SILENCE)
                st = statuses(by_node(await fetch(p.target))[NODE])
                assert st[(TYPE_ENDPOINT, "b")].config_status == csds_pb2.SYNCED
                assert st[(TYPE_LISTENER, "l")].config_status == csds_pb2.SYNCED
                assert not st[(TYPE_LISTENER, "l")].HasField("error_state")

                # exclude_resource_contents drops the Any, keeps the status
                st = statuses(by_node(await fetch(p.target, csds_pb2.ClientStatusRequest(
                    exclude_resource_contents=True)))[NODE])
                assert not st[(TYPE_CLUSTER, "a")].HasField("xds_config")
                assert st[(TYPE_CLUSTER, "a")].config_status == csds_pb2.SYNCED
    run(t())


def test_node_matchers():
    async def t():
        snaps = {NODE: build(), OTHER: build(), "mesh/n/virtualNode/c": build()}
        async with plane(snaps) as p:
            clients = [AdsClient(p.target, node=make_node(n)) for n in snaps]
            for c in clients:
                await c.start()
                c.send(TYPE_CLUSTER)
                await c.recv()
            try:
                async def ids(*matchers):
                    resp = await fetch(p.target, csds_pb2.ClientStatusRequest(node_matchers=list(matchers)))
                    return sorted(c.node.id for c in resp.config)

                assert await ids() == sorted(snaps)
                assert await ids(matcher(exact=OTHER)) == [OTHER]
                assert await ids(matcher(prefix="mesh/m/")) == [NODE, OTHER]
                assert await ids(matcher(suffix="/A", ignore_case=True)) == [NODE]
                assert await ids(matcher(contains="/n/")) == ["mesh/n/virtualNode/c"]
                assert await ids(matcher(safe_regex=regex_pb2.RegexMatcher(regex=r"mesh/m/virtualNode/[ab]"))) == [NODE, OTHER]
                assert await ids(matcher(exact="nope"), matcher(exact=NODE)) == [NODE]
                assert await ids(matcher(exact="nope")) == []
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await fetch(p.target, csds_pb2.ClientStatusRequest(node_matchers=[node_pb2.NodeMatcher(
                        node_metadatas=[struct_matcher_pb2.StructMatcher()])]))
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "node_metadatas" in e.value.details()
            finally:
                for c in clients:
                    await c.close()
    run(t())


def test_stream_client_status_and_replicas_aggregate():
    async def t():
        async with plane() as p:
            async with AdsClient(p.target, node=make_node(NODE)) as c1, AdsClient(p.target, node=make_node(NODE)) as c2:
                c1.send(TYPE_CLUSTER)
                c1.ack(await c1.recv())
                c2.send(TYPE_CLUSTER)
                r2 = await c2.recv()                       # replica 2 has not ACKed yet
                await c1.expect_silence(0.1)
                requests: asyncio.Queue = asyncio.Queue()

                async def gen():
                    while (req := await requests.get()) is not None:
                        yield req

                async with grpc.aio.insecure_channel(p.target) as ch:
                    call = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(ch).StreamClientStatus(gen())
                    requests.put_nowait(csds_pb2.ClientStatusRequest(node_matchers=[matcher(exact=NODE)]))
                    first = await asyncio.wait_for(call.read(), 5)
                    (config,) = first.config                   # one ClientConfig for both replicas
                    meta = config.node.metadata.fields["meshplane"].struct_value.fields
                    assert meta["streams"].number_value == 2 and len(meta["peers"].list_value.values) == 2
                    assert statuses(config)[(TYPE_CLUSTER, "a")].config_status == csds_pb2.STALE  # worst of the two
                    c2.ack(r2)
                    await c2.expect_silence(0.1)
                    requests.put_nowait(csds_pb2.ClientStatusRequest())
                    second = await asyncio.wait_for(call.read(), 5)
                    assert statuses(second.config[0])[(TYPE_CLUSTER, "a")].config_status == csds_pb2.SYNCED
                    requests.put_nowait(None)
                    assert await asyncio.wait_for(call.read(), 5) == grpc.aio.EOF
                    assert await call.code() == grpc.StatusCode.OK
    run(t())


def test_secrets_are_redacted_in_csds():
    async def t():
        tls = tls_pb2.DownstreamTlsContext(common_tls_context=tls_pb2.CommonTlsContext(tls_certificates=[
            common_pb2.TlsCertificate(certificate_chain=core_pb2.DataSource(inline_string=CERT_PEM),
                                      private_key=core_pb2.DataSource(inline_bytes=KEY_PEM.encode()),
                                      password=core_pb2.DataSource(environment_variable="KEY_PASS"))]),
            session_ticket_keys=common_pb2.TlsSessionTicketKeys(keys=[core_pb2.DataSource(inline_bytes=b"k" * 80)]))
        typed = any_pb2.Any()
        typed.Pack(tls, deterministic=True)
        lst = listener("l", 15000, "r")
        lst.filter_chains[0].transport_socket.name = "envoy.transport_sockets.tls"
        lst.filter_chains[0].transport_socket.typed_config.CopyFrom(typed)
        snap = secret_snapshot(listeners={"l": lst})
        async with plane({NODE: snap}) as p:
            async with AdsClient(p.target, node=make_node(NODE)) as c:
                c.send(TYPE_SECRET, ["cert", "ondisk"])
                await c.recv()
                st = statuses((await fetch(p.target)).config[0])
        secret = secret_pb2.Secret()
        st[(TYPE_SECRET, "cert")].xds_config.Unpack(secret)
        assert secret.tls_certificate.private_key.inline_string == "[redacted]"
        assert secret.tls_certificate.certificate_chain.inline_string == CERT_PEM
        st[(TYPE_SECRET, "ondisk")].xds_config.Unpack(secret)
        assert secret.tls_certificate.private_key.filename == "/etc/certs/key.pem"   # a path is no secret
        got = listener_pb2.Listener()
        st[(TYPE_LISTENER, "l")].xds_config.Unpack(got)
        inner = tls_pb2.DownstreamTlsContext()
        got.filter_chains[0].transport_socket.typed_config.Unpack(inner)
        cert = inner.common_tls_context.tls_certificates[0]
        assert cert.private_key.inline_string == "[redacted]" and not cert.private_key.inline_bytes
        assert cert.password.inline_string == "[redacted]"
        assert cert.certificate_chain.inline_string == CERT_PEM
        assert [k.inline_string for k in inner.session_ticket_keys.keys] == ["[redacted]"]
        for x in st.values():
            assert KEY_PEM.encode() not in x.xds_config.value
        # the cached resources are untouched, and key-free ones are passed through as they are
        assert KEY_PEM.encode() in snap.get(TYPE_SECRET).resources["cert"].value
        eds = snap.get(TYPE_ENDPOINT).resources["a"]
        assert redacted_any(eds) is eds
    run(t())


def test_resource_status_per_resource_when_type_version_moves():
    """EDS: a resource the Envoy never asked for changes the type version; the others stay SYNCED."""
    registry = StatusRegistry()
    snap1 = build(endpoints={"a": cla("a", 1), "b": cla("b", 2)})
    snap2 = build(endpoints={"a": cla("a", 1), "b": cla("b", 2), "c": cla("c", 3)})
    snap3 = build(endpoints={"a": cla("a", 9), "b": cla("b", 2), "c": cla("c", 3)})
    stream = StreamInfo(1, NODE, NODE, "peer")
    registry.on_stream_open(stream)
    st = registry.streams()[0]
    t1 = snap1.get(TYPE_ENDPOINT)
    registry.on_response_sent(stream, TYPE_ENDPOINT, t1.version, {})
    st.types[TYPE_ENDPOINT].sent_resources = t1.resource_versions  # what the cache lookup records
    t = st.types[TYPE_ENDPOINT]
    assert resource_status(t, t1, "a") == csds_pb2.STALE
    registry.on_ack(stream, TYPE_ENDPOINT, t1.version)
    t2, t3 = snap2.get(TYPE_ENDPOINT), snap3.get(TYPE_ENDPOINT)
    assert resource_status(t, t2, "a") == csds_pb2.SYNCED        # same content as acked
    assert resource_status(t, t2, "c") == csds_pb2.NOT_SENT
    assert resource_status(t, t3, "a") == csds_pb2.NOT_SENT       # changed, push due
    assert resource_status(None, t3, "a") == csds_pb2.NOT_SENT
    registry.on_response_sent(stream, TYPE_ENDPOINT, t3.version, {})
    t.sent_resources = t3.resource_versions
    registry.on_nack(stream, TYPE_ENDPOINT, t3.version, "bad")
    assert resource_status(t, t3, "a") == csds_pb2.ERROR
    assert resource_status(t, t1, "a") == csds_pb2.SYNCED         # model reverted to what it acked
