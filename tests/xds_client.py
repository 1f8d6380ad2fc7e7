"""Small scripted ADS clients (SotW ``AdsClient``, Delta ``DeltaAdsClient``) for protocol tests,
built on grpcio + xds-protos.

Requests are queued explicitly (``send``), responses are read by a background task into a
queue (``recv``), so a test can script exact request sequences — stale nonces, NACKs,
missing nodes — that a real Envoy would only produce by accident.

    async with AdsClient(target, node=make_node("mesh/m/virtualNode/a")) as c:
        c.send(TYPE_CLUSTER)
        r = await c.recv()
        c.ack(r)
        await c.expect_silence(0.2)

    async with DeltaAdsClient(target, node=make_node("mesh/m/virtualNode/a")) as d:
        d.subscribe(TYPE_ENDPOINT, ["a"])
        r = await d.recv()
        d.ack(r)
"""
from __future__ import annotations

import asyncio

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

_END = object()


def make_node(node_id: str, cluster: str = "") -> core_pb2.Node:
    return core_pb2.Node(id=node_id, cluster=cluster, user_agent_name="xds_client")


class StreamClosed(Exception):
    def __init__(self, code: grpc.StatusCode | None, details: str | None):
        super().__init__(f"stream closed: {code} {details}")
        self.code = code
        self.details = details


class AdsClient:
    """SotW: ``send`` a DiscoveryRequest, ``ack``/``nack`` a response, ``recv`` the next one."""

    def __init__(self, target: str, node: core_pb2.Node | None = None, *, channel: grpc.aio.Channel | None = None):
        self.target = target
        self.node = node
        self._own_channel = channel is None
        self.channel = channel
        self._requests: asyncio.Queue = asyncio.Queue()
        self._responses: asyncio.Queue = asyncio.Queue()
        self._sent_any = False
        self.call = None
        self._reader: asyncio.Task | None = None

    async def start(self) -> "AdsClient":
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.target)
        self.call = self._open(ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel))
        self._reader = asyncio.create_task(self._read())
        return self

    def _open(self, stub):
        return stub.StreamAggregatedResources(self._request_stream())

    async def __aenter__(self) -> "AdsClient":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _request_stream(self):
        while True:
            req = await self._requests.get()
            if req is _END:
                return
            yield req

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:
                    break
                await self._responses.put(msg)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            self._responses.put_nowait(_END)

    def send(self, type_url: str, names=(), version: str = "", nonce: str = "", error: str | None = None,
             node: core_pb2.Node | None = None) -> discovery_pb2.DiscoveryRequest:
        """Queue a request. The client's node rides on its first request unless ``node`` is given."""
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), version_info=version, response_nonce=nonce,
        )
        return self._queue(req, node, error)

    def _queue(self, req, node, error):
        """Queue ``req`` (either variant): the node rides on the stream's first request unless
        ``node`` is given; ``error`` makes it a NACK."""
        if node is not None:
            req.node.CopyFrom(node)
        elif not self._sent_any and self.node is not None:
            req.node.CopyFrom(self.node)
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self._sent_any = True
        self._requests.put_nowait(req)
        return req

    def ack(self, resp: discovery_pb2.DiscoveryResponse, names=()) -> None:
        self.send(resp.type_url, names, version=resp.version_info, nonce=resp.nonce)

    def nack(self, resp: discovery_pb2.DiscoveryResponse, error: str, names=(), accepted_version: str = "") -> None:
        self.send(resp.type_url, names, version=accepted_version, nonce=resp.nonce, error=error)

    async def recv(self, timeout: float = 2.0) -> discovery_pb2.DiscoveryResponse:
        try:
            msg = await asyncio.wait_for(self._responses.get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no response within {timeout}s") from None
        if msg is _END:
            self._responses.put_nowait(_END)
            raise StreamClosed(*(await self.status()))
        return msg

    async def expect_silence(self, seconds: float = 0.25) -> None:
        try:
            msg = await asyncio.wait_for(self._responses.get(), seconds)
        except asyncio.TimeoutError:
            return
        if msg is _END:
            self._responses.put_nowait(_END)
            return
        raise AssertionError(f"expected silence, got {self.describe(msg)}")

    @staticmethod
    def describe(msg) -> str:
        return f"{msg.type_url} version={msg.version_info} nonce={msg.nonce}"

    async def status(self, timeout: float = 2.0) -> tuple[grpc.StatusCode, str]:
        """The stream's final status (waits for it)."""
        code = await asyncio.wait_for(self.call.code(), timeout)
        return code, await self.call.details()

    def half_close(self) -> None:
        """End the request stream (client done sending) without cancelling the call."""
        self._requests.put_nowait(_END)

    async def close(self) -> None:
        """Half-close, cancel, and release the channel."""
        self._requests.put_nowait(_END)
        if self.call is not None:
            self.call.cancel()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._own_channel and self.channel is not None:
            await self.channel.close()


class DeltaAdsClient(AdsClient):
    """Delta: ``subscribe``/``unsubscribe`` (optionally with ``initial_resource_versions`` and a
    nonce), ``ack``/``nack`` by nonce. Responses are DeltaDiscoveryResponses; ``holds`` keeps
    the client's view (name -> version per type), as Envoy would after applying them."""

    def __init__(self, target: str, node: core_pb2.Node | None = None, *, channel: grpc.aio.Channel | None = None):
        super().__init__(target, node, channel=channel)
        self.holds: dict[str, dict[str, str]] = {}

    def _open(self, stub):
        return stub.DeltaAggregatedResources(self._request_stream())

    def send_delta(self, type_url: str, subscribe=(), unsubscribe=(), *, nonce: str = "", error: str | None = None,
                   initial_resource_versions: dict | None = None,
                   node: core_pb2.Node | None = None) -> discovery_pb2.DeltaDiscoveryRequest:
        """Queue a DeltaDiscoveryRequest; the node rides on the first request unless ``node`` is given."""
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            initial_resource_versions=dict(initial_resource_versions or {}),
            response_nonce=nonce,
        )
        return self._queue(req, node, error)

    def send(self, type_url: str, names=(), **kw):  # noqa: D102 - SotW signature, delta meaning
        return self.send_delta(type_url, names, **kw)

    def subscribe(self, type_url: str, names=(), *, nonce: str = "", initial_resource_versions: dict | None = None):
        return self.send_delta(type_url, names, nonce=nonce, initial_resource_versions=initial_resource_versions)

    def unsubscribe(self, type_url: str, names, *, nonce: str = ""):
        return self.send_delta(type_url, (), names, nonce=nonce)

    def ack(self, resp: discovery_pb2.DeltaDiscoveryResponse, subscribe=(), unsubscribe=()) -> None:
        self.send_delta(resp.type_url, subscribe, unsubscribe, nonce=resp.nonce)

    def nack(self, resp: discovery_pb2.DeltaDiscoveryResponse, error: str, subscribe=(), unsubscribe=()) -> None:
        self.send_delta(resp.type_url, subscribe, unsubscribe, nonce=resp.nonce, error=error)

    async def recv(self, timeout: float = 2.0) -> discovery_pb2.DeltaDiscoveryResponse:
        msg = await super().recv(timeout)
        held = self.holds.setdefault(msg.type_url, {})
        for r in msg.resources:
            held[r.name] = r.version
        for name in msg.removed_resources:
            held.pop(name, None)
        return msg

    @staticmethod
    def describe(msg) -> str:
        return f"{msg.type_url} nonce={msg.nonce} resources={[r.name for r in msg.resources]} removed={list(msg.removed_resources)}"
