"""Malformed and hostile xDS clients get an error on their own stream; everyone else is served.

Runs against a real `meshplane serve` process: garbage type URLs, too many types, garbage
nonces, oversize messages, floods of streams and raw junk on the port. After each, the
server is still healthy and a well-behaved client still gets its config.
"""
from __future__ import annotations

import asyncio
import os
import socket
import textwrap

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from harness.mesh import MeshRunner
from harness.traffic import http_get

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
NODE = "mesh/m/virtualNode/n"


@pytest.fixture(scope="module")
def plane(module_procs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    model = tmp / "model" / "m.yaml"
    model.parent.mkdir()
    model.write_text(textwrap.dedent("""
        kind: Mesh
        name: m
        ---
        kind: VirtualNode
        mesh: m
        name: n
        spec:
          listeners: [{portMapping: {port: 8080, protocol: http}}]
          serviceDiscovery: {dns: {hostname: n.m.local}}
        """))
    runner = MeshRunner(module_procs, model.parent, tmp)
    runner.start_control_plane("--max-streams", "40")
    return runner


def _target(plane) -> str:
    return "%s:%d" % plane.xds


async def _stream(target: str, requests, *, delta: bool = False, wait: float = 1.0):
    """Send ``requests`` on one stream; return (responses, status code)."""
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

        async def gen():
            for r in requests:
                yield r
            await asyncio.sleep(wait)

        call = (stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources)(gen())
        got = []
        try:
            async for response in call:
                got.append(response)
            return got, grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return got, exc.code()


def _sotw(type_url=CDS, **kw):
    node = kw.pop("node", base_pb2.Node(id=NODE))
    return discovery_pb2.DiscoveryRequest(node=node, type_url=type_url, **kw)


def _healthy(plane) -> None:
    """The server is up and a well-behaved client gets its clusters."""
    assert http_get(plane.http_url("/healthz")).status == 200
    got, code = asyncio.run(_stream(_target(plane), [_sotw()], wait=0.3))
    assert code == grpc.StatusCode.OK and got and got[0].type_url == CDS, (got, code)
    assert plane.serve_proc.alive()


def test_malformed_type_url_is_invalid_argument(plane):
    for delta in (False, True):
        req = (discovery_pb2.DeltaDiscoveryRequest(node=base_pb2.Node(id=NODE), type_url="not a type\x00url")
               if delta else _sotw("not a type\x00url"))
        got, code = asyncio.run(_stream(_target(plane), [req], delta=delta))
        assert (got, code) == ([], grpc.StatusCode.INVALID_ARGUMENT), delta
    _healthy(plane)


def test_too_many_type_urls_on_one_stream(plane):
    requests = [_sotw(f"type.googleapis.com/fuzz.Type{i}") for i in range(40)]
    # the stream stays open (wait) until the server ends it: on a loaded machine the 40
    # requests may take a while to be read, and a client that half-closes first gets OK
    got, code = asyncio.run(_stream(_target(plane), requests, wait=15))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    _healthy(plane)


def test_garbage_nonces_and_versions_are_ignored(plane):
    junk = os.urandom(64).hex()
    requests = [_sotw(), _sotw(response_nonce=junk, version_info=junk), _sotw(response_nonce="\u202e\u0000x")]
    got, code = asyncio.run(_stream(_target(plane), requests, wait=0.5))
    assert code == grpc.StatusCode.OK and len(got) == 1  # only the initial request is answered
    _healthy(plane)


def test_oversize_message_fails_only_that_stream(plane):
    names = ["x" * 1000] * 17_000  # ~17 MiB, above the 16 MiB receive limit
    got, code = asyncio.run(_stream(_target(plane), [_sotw(resource_names=names)]))
    assert (got, code) == ([], grpc.StatusCode.RESOURCE_EXHAUSTED)
    _healthy(plane)


def test_too_many_or_too_long_names(plane):
    got, code = asyncio.run(_stream(_target(plane), [_sotw(resource_names=["y" * 5000])], wait=15))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    _healthy(plane)


def test_flood_of_streams_is_capped_and_the_server_recovers(plane):
    async def flood():
        return await asyncio.gather(*[_stream(_target(plane), [_sotw()], wait=1.5) for _ in range(60)])

    results = asyncio.run(flood())
    codes = [code for _, code in results]
    assert codes.count(grpc.StatusCode.OK) <= 40
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 20
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    _healthy(plane)


def test_raw_junk_on_the_port(plane):
    host, port = plane.xds
    for payload in (os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512)):
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(payload)
            conn.settimeout(2)
            try:
                conn.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    _healthy(plane)
