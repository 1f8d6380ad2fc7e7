"""What was sent to, acked and rejected by one ADS stream, per type: the records
``xds_server.observability.status.StatusRegistry`` keeps and ``csds`` reads.

``StreamRegistry`` is what CSDS needs of whoever keeps them: the open streams, of one node
id or all of them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Protocol

from xds_server.cache.snapshot import PUSH_ORDER, short_type


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


def _now() -> str:
    return _iso(time.time())


@dataclass(slots=True)  # one per type per stream: no instance dict
class TypeStatus:
    sent: str | None = None
    acked: str | None = None
    nacked: dict | None = None  # {"version", "error"} of the outstanding rejection; cleared by a later ACK
    nacks: int = 0
    # internal (not in to_dict): timing and content of the last push, for CSDS
    last_push_at: float | None = None          # time.time() of the last push (``last_push``: as text)
    nacked_at: float | None = None             # time.time() of the outstanding NACK
    awaiting_ack: bool = False                 # ``sent`` is neither ACKed nor NACKed yet
    sent_resources: Mapping[str, str] | None = None   # name -> resource version of the last push (if known)
    acked_resources: Mapping[str, str] | None = None  # same, of the last ACKed push

    @property
    def last_push(self) -> str | None:
        """When the last push went out, ISO 8601 UTC (formatted when read, not on every push)."""
        return None if self.last_push_at is None else _iso(self.last_push_at)

    def to_dict(self) -> dict:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "nacked": dict(self.nacked) if self.nacked else None,
            "nacks": self.nacks,
            "last_push": self.last_push,
        }


@dataclass(slots=True)
class StreamStatus:
    """One ADS stream, as the registry records it."""

    id: int
    node_id: str
    key: str
    peer: str
    opened: str = field(default_factory=_now)
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeStatus:
        return self.types.setdefault(type_url, TypeStatus())

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


class StreamRegistry(Protocol):
    """The open streams' records (``StatusRegistry`` is one)."""

    def streams(self, node_id: str | None = None) -> list[StreamStatus]: ...
