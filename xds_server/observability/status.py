"""Registry of connected ADS streams and what each was sent / acked / rejected, per type.

This is the operator's answer to "is my Envoy in sync, and if not, why?" (Istio's syncz,
``istioctl proxy-status``). Many Envoys commonly share one virtual node id (replicas of one
deployment), so status is kept per stream and summarised per node.

``StatusRegistry`` subscribes to the ADS stream events (``server.callbacks.Callbacks``).
Besides what ``snapshot()`` shows, each type keeps the push/NACK times and the resource
versions that were sent and acked, which CSDS reads. The records themselves (``StreamStatus``,
``TypeStatus``) are the protocol core's, in ``xds_server.server.stream_status``.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Mapping

from xds_server.cache.snapshot import PUSH_ORDER, short_type
from xds_server.server.callbacks import Callbacks, StreamInfo
from xds_server.server.stream_status import StreamStatus, TypeStatus

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.cache.snapshot_cache import SnapshotCache


def _aggregate(streams: list[StreamStatus]) -> dict:
    """Per type over a node's streams.

    sent/last_push: the most recent push to any stream; acked: that version if every stream
    acked it, else the most recent ack; nacked: the most recent outstanding rejection;
    acked_streams: how many streams have acked what they were last sent.
    """
    urls = list(PUSH_ORDER) + sorted({u for s in streams for u in s.types if u not in PUSH_ORDER})
    out = {}
    for url in urls:
        ts = [s.types.get(url, TypeStatus()) for s in streams]
        pushed = [t for t in ts if t.last_push_at is not None]
        latest = max(pushed, key=lambda t: t.last_push_at) if pushed else TypeStatus()
        acked_versions = {t.acked for t in ts}
        acked = latest.acked if len(acked_versions) == 1 else next(
            (t.acked for t in sorted(pushed, key=lambda t: t.last_push_at, reverse=True) if t.acked), None
        )
        nacked = next((t.nacked for t in sorted(pushed, key=lambda t: t.last_push_at, reverse=True) if t.nacked), None)
        out[short_type(url)] = {
            "sent": latest.sent,
            "acked": acked,
            "nacked": dict(nacked) if nacked else None,
            "nacks": sum(t.nacks for t in ts),
            "last_push": latest.last_push,
            "acked_streams": sum(1 for t in ts if t.sent is not None and t.acked == t.sent),
        }
    return out


class StatusRegistry(Callbacks):
    """Single-threaded (asyncio loop) bookkeeping; snapshot() is JSON-able.

    ``cache``: lets the registry record which resource versions each push carried (for CSDS).
    """

    def __init__(self, cache: "SnapshotCache | None" = None) -> None:
        self._streams: dict[int, StreamStatus] = {}
        self._per_node: dict[str, int] = {}
        self.cache = cache

    # -- stream events (Callbacks)
    def on_stream_open(self, stream: StreamInfo) -> None:
        self._streams[stream.id] = StreamStatus(id=stream.id, node_id=stream.node_id, key=stream.key, peer=stream.peer)
        self._per_node[stream.node_id] = self._per_node.get(stream.node_id, 0) + 1

    def on_stream_close(self, stream: StreamInfo) -> None:
        if self._streams.pop(stream.id, None) is None:
            return
        left = self._per_node.get(stream.node_id, 1) - 1
        if left > 0:
            self._per_node[stream.node_id] = left
        else:
            self._per_node.pop(stream.node_id, None)

    def on_response_sent(self, stream: StreamInfo, type_url: str, version: str, resources: Mapping[str, str]) -> None:
        s = self._streams.get(stream.id)
        if s is None:
            return
        t = s.type(type_url)
        t.last_push_at = time.time()
        if t.awaiting_ack and version == t.sent:
            return  # another response of the version awaiting its ACK (Delta: additions, then removals)
        t.sent = version
        t.awaiting_ack = True
        t.sent_resources = None
        if self.cache is not None:
            # what the client holds after this push: the cache's resources of that version
            snapshot = self.cache.get(s.key)
            tsnap = snapshot.get(type_url) if snapshot is not None else None
            if tsnap is not None and tsnap.version == version:
                t.sent_resources = tsnap.resource_versions

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        s = self._streams.get(stream.id)
        if s is None:
            return
        t = s.type(type_url)
        t.acked = version
        t.nacked = None  # an ACK of a newer response ends the rejection
        t.nacked_at = None
        if version == t.sent:
            t.acked_resources = t.sent_resources
            t.awaiting_ack = False

    def on_nack(self, stream: StreamInfo, type_url: str, version: str | None, error: str) -> None:
        s = self._streams.get(stream.id)
        if s is None:
            return
        t = s.type(type_url)
        t.nacked = {"version": version, "error": error}
        t.nacks += 1
        t.nacked_at = time.time()
        t.awaiting_ack = False

    # -- reading
    def count(self, node_id: str | None = None) -> int:
        """Open streams, in total or of one node id (O(1): used on every stream open)."""
        if node_id is None:
            return len(self._streams)
        return self._per_node.get(node_id, 0)

    def node_ids(self) -> list[str]:
        return sorted(self._per_node)

    def streams(self, node_id: str | None = None) -> list[StreamStatus]:
        if node_id is None:
            return list(self._streams.values())
        return [s for s in self._streams.values() if s.node_id == node_id]

    def keys_in_use(self) -> set[str]:
        """Snapshot keys with at least one stream (the cache may drop the others)."""
        return {s.key for s in self._streams.values()}

    def snapshot(self) -> dict:
        by_node: dict[str, list[StreamStatus]] = {}
        for s in self._streams.values():
            by_node.setdefault(s.node_id, []).append(s)
        nodes = {}
        for node_id in sorted(by_node):
            streams = sorted(by_node[node_id], key=lambda s: s.id)
            nodes[node_id] = {
                "streams": len(streams),
                "key": streams[-1].key,
                "types": _aggregate(streams),
                "per_stream": [s.to_dict() for s in streams],
            }
        return {"nodes": nodes}
