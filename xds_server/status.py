"""Registry of connected ADS streams and what each was sent / acked / rejected, per type.

This is the operator's answer to "is my Envoy in sync, and if not, why?" (Istio's syncz,
``istioctl proxy-status``). Many Envoys commonly share one virtual node id (replicas of one
deployment), so status is kept per stream and summarised per node.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .snapshot import PUSH_ORDER, short_type


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class TypeStatus:
    sent: str | None = None
    acked: str | None = None
    nacked: dict | None = None  # {"version", "error"} of the outstanding rejection; cleared by a later ACK
    nacks: int = 0
    last_push: str | None = None

    def to_dict(self) -> dict:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "nacked": dict(self.nacked) if self.nacked else None,
            "nacks": self.nacks,
            "last_push": self.last_push,
        }


@dataclass
class StreamStatus:
    """One ADS stream; the servicer reports into it, the registry reads it."""

    id: int
    node_id: str
    key: str
    peer: str
    opened: str = field(default_factory=_now)
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def _t(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())

    def on_sent(self, type_url: str, version: str) -> None:
        t = self._t(type_url)
        t.sent = version
        t.last_push = _now()

    def on_ack(self, type_url: str, version: str) -> None:
        t = self._t(type_url)
        t.acked = version
        t.nacked = None  # an ACK of a newer response ends the rejection

    def on_nack(self, type_url: str, version: str | None, error: str) -> None:
        t = self._t(type_url)
        t.nacked = {"version": version, "error": error}
        t.nacks += 1

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "peer": self.peer,
            "key": self.key,
            "opened": self.opened,
            "types": _types_dict(self.types),
        }


def _types_dict(types: dict[str, TypeStatus]) -> dict:
    """Always list the five core types (null when never requested), then any others."""
    urls = list(PUSH_ORDER) + sorted(t for t in types if t not in PUSH_ORDER)
    return {short_type(u): types.get(u, TypeStatus()).to_dict() for u in urls}


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
        pushed = [t for t in ts if t.last_push]
        latest = max(pushed, key=lambda t: t.last_push) if pushed else TypeStatus()
        acked_versions = {t.acked for t in ts}
        acked = latest.acked if len(acked_versions) == 1 else next(
            (t.acked for t in sorted(pushed, key=lambda t: t.last_push, reverse=True) if t.acked), None
        )
        nacked = next((t.nacked for t in sorted(pushed, key=lambda t: t.last_push, reverse=True) if t.nacked), None)
        out[short_type(url)] = {
            "sent": latest.sent,
            "acked": acked,
            "nacked": dict(nacked) if nacked else None,
            "nacks": sum(t.nacks for t in ts),
            "last_push": latest.last_push,
            "acked_streams": sum(1 for t in ts if t.sent is not None and t.acked == t.sent),
        }
    return out


class StatusRegistry:
    """Single-threaded (asyncio loop) bookkeeping; snapshot() is JSON-able."""

    def __init__(self) -> None:
        self._streams: dict[int, StreamStatus] = {}
        self._ids = itertools.count(1)

    def open_stream(self, node_id: str, key: str, peer: str) -> StreamStatus:
        s = StreamStatus(id=next(self._ids), node_id=node_id, key=key, peer=peer)
        self._streams[s.id] = s
        return s

    def close_stream(self, stream: StreamStatus) -> None:
        self._streams.pop(stream.id, None)

    def streams(self) -> list[StreamStatus]:
        return list(self._streams.values())

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
