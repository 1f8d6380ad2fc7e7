"""Connection limits, applied where a stream is admitted: around the ADS resolver.

App Mesh allowed 50 connected Envoys per virtual node and refused more with gRPC
RESOURCE_EXHAUSTED (code 8). meshplane defaults to 500 per node id
(``--max-proxies-per-node``) and 10000 streams in total (``--max-streams``); 0 disables a
limit. Envoy treats RESOURCE_EXHAUSTED as transient and retries with backoff, so a refused
replica connects once another goes away.

A reconnect storm (every Envoy of a fleet after a control-plane restart) can be smoothed with
``--max-new-streams-per-second``: a token bucket (burst = one second's worth) in front of the
resolver; a stream over the rate is refused with RESOURCE_EXHAUSTED before any compile work,
and Envoy retries it with its jittered backoff. Off by default (0), like the other limits it
is an operator's choice.

The count is the StatusRegistry's live streams. The check runs right before the resolver
returns: the servicer opens the stream in the registry without awaiting anything in
between, so concurrent connects cannot both squeeze under the limit. (For an async
resolver the check runs both before -- to skip the work -- and after its await.)
"""
from __future__ import annotations

import inspect
import logging
import time

import grpc

from xds_server.server.errors import StreamError
from xds_server.server.servicer import Resolver
from xds_server.observability.metrics import Metrics
from xds_server.observability.status import StatusRegistry
from xds_server.config import DEFAULT_MAX_PROXIES_PER_NODE, DEFAULT_MAX_STREAMS

LOG = logging.getLogger("meshplane.xds.limits")


class StreamLimiter:
    def __init__(
        self,
        registry: StatusRegistry,
        *,
        max_proxies_per_node: int = DEFAULT_MAX_PROXIES_PER_NODE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_new_streams_per_second: float = 0,
        metrics: Metrics | None = None,
        clock=time.monotonic,
    ) -> None:
        self.registry = registry
        self.max_proxies_per_node = max_proxies_per_node
        self.max_streams = max_streams
        self.rate = max_new_streams_per_second
        self.metrics = metrics
        self.clock = clock
        self._tokens = max(1.0, self.rate)  # burst: one second's worth
        self._refilled = clock()

    def admit_new_stream(self, node_id: str) -> None:
        """The new-stream rate limit (token bucket); RESOURCE_EXHAUSTED when over it."""
        if self.rate <= 0:
            return
        now = self.clock()
        self._tokens = min(max(1.0, self.rate), self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._tokens < 1:
            self._reject(
                node_id, "max_new_streams_per_second",
                f"more than {self.rate:g} new xDS streams per second (--max-new-streams-per-second); "
                f"node {node_id!r} was refused, it will retry with backoff",
            )
        self._tokens -= 1

    def check(self, node_id: str) -> None:
        """Raise StreamError(RESOURCE_EXHAUSTED) if one more stream for ``node_id`` is too many."""
        if self.max_streams > 0 and self.registry.count() >= self.max_streams:
            self._reject(
                node_id, "max_streams",
                f"meshplane is at its limit of {self.max_streams} connected Envoys (--max-streams); "
                f"node {node_id!r} was refused, retry later or raise the limit",
            )
        if self.max_proxies_per_node > 0 and self.registry.count(node_id) >= self.max_proxies_per_node:
            self._reject(
                node_id, "max_proxies_per_node",
                f"node {node_id!r} already has {self.registry.count(node_id)} connected Envoys, the limit per "
                f"virtual node is {self.max_proxies_per_node} (--max-proxies-per-node)",
            )

    def _reject(self, node_id: str, reason: str, message: str) -> None:
        LOG.warning("ADS stream refused: %s", message)
        if self.metrics is not None:
            self.metrics.stream_rejected(grpc.StatusCode.RESOURCE_EXHAUSTED.name, reason)
        raise StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def _rejected_by_resolver(self, exc: StreamError) -> None:
        if self.metrics is not None:
            self.metrics.stream_rejected(exc.code.name, "resolver")

    def wrap(self, resolver: Resolver) -> Resolver:
        """A resolver that enforces the limits, then defers to ``resolver``."""

        def limited(node):
            self.admit_new_stream(node.id)
            self.check(node.id)
            try:
                key = resolver(node)
            except StreamError as exc:
                self._rejected_by_resolver(exc)
                raise
            if inspect.isawaitable(key):
                return _after(node, key)
            return key

        async def _after(node, pending):
            try:
                key = await pending
            except StreamError as exc:
                self._rejected_by_resolver(exc)
                raise
            self.check(node.id)  # no await between this and the servicer's open_stream
            return key

        return limited
