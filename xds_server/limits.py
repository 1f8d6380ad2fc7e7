"""Connection limits, applied where a stream is admitted: around the ADS resolver.

App Mesh allowed 50 connected Envoys per virtual node and refused more with gRPC
RESOURCE_EXHAUSTED (code 8). meshplane defaults to 500 per node id
(``--max-proxies-per-node``) and 10000 streams in total (``--max-streams``); 0 disables a
limit. Envoy treats RESOURCE_EXHAUSTED as transient and retries with backoff, so a refused
replica connects once another goes away.

The count is the StatusRegistry's live streams. The check runs right before the resolver
returns: the servicer opens the stream in the registry without awaiting anything in
between, so concurrent connects cannot both squeeze under the limit. (For an async
resolver the check runs both before -- to skip the work -- and after its await.)
"""
from __future__ import annotations

import inspect
import logging

import grpc

from .ads import NodeRejected, Resolver
from .metrics import Metrics
from .status import StatusRegistry

LOG = logging.getLogger("meshplane.xds.limits")

DEFAULT_MAX_PROXIES_PER_NODE = 500
DEFAULT_MAX_STREAMS = 10_000


class StreamLimiter:
    def __init__(
        self,
        registry: StatusRegistry,
        *,
        max_proxies_per_node: int = DEFAULT_MAX_PROXIES_PER_NODE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.max_proxies_per_node = max_proxies_per_node
        self.max_streams = max_streams
        self.metrics = metrics

    def check(self, node_id: str) -> None:
        """Raise NodeRejected(RESOURCE_EXHAUSTED) if one more stream for ``node_id`` is too many."""
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
        raise NodeRejected(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def _rejected_by_resolver(self, exc: NodeRejected) -> None:
        if self.metrics is not None:
            self.metrics.stream_rejected(exc.code.name, "resolver")

    def wrap(self, resolver: Resolver) -> Resolver:
        """A resolver that enforces the limits, then defers to ``resolver``."""

        def limited(node):
            self.check(node.id)
            try:
                key = resolver(node)
            except NodeRejected as exc:
                self._rejected_by_resolver(exc)
                raise
            if inspect.isawaitable(key):
                return _after(node, key)
            return key

        async def _after(node, pending):
            try:
                key = await pending
            except NodeRejected as exc:
                self._rejected_by_resolver(exc)
                raise
            self.check(node.id)  # no await between this and the servicer's open_stream
            return key

        return limited
