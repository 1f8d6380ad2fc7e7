"""How ADS streams report what happens on them: one small interface, many subscribers.

Like go-control-plane's ``Callbacks``: the servicer calls a ``Callbacks`` at each event of a
stream and knows nothing of who listens. The status registry (``/status``, CSDS) and the
metrics subscribe; ``CallbackFanout`` hands every event to each of several subscribers.
Events arrive on the asyncio loop, in the order they happen on the stream; a subscriber must
not block.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One admitted ADS stream (SotW or Delta)."""

    id: int                 # unique among the streams of one servicer
    node_id: str
    key: str                # snapshot key the node resolved to
    peer: str
    delta: bool = False
    opened: float = field(default_factory=time.monotonic, compare=False)  # time.monotonic() at open


class Callbacks:
    """The events of a stream; every method does nothing here, subscribers override some."""

    def on_stream_open(self, stream: StreamInfo) -> None:
        """The stream was admitted (node resolved, authorized, within limits)."""

    def on_stream_close(self, stream: StreamInfo) -> None:
        """The stream ended, for any reason; called once per ``on_stream_open``."""

    def on_response_sent(self, stream: StreamInfo, type_url: str, version: str, resources: Mapping[str, str]) -> None:
        """A response of ``version`` of ``type_url`` goes out (reported just before the write,
        so its ACK never arrives first); ``resources``: name -> resource version of what it
        carries (for Delta: the additions and updates only)."""

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        """The client acknowledged ``version`` of ``type_url``."""

    def on_nack(self, stream: StreamInfo, type_url: str, version: str | None, error: str) -> None:
        """The client rejected ``version`` of ``type_url`` (it keeps what it had)."""


class CallbackFanout(Callbacks):
    """Every event to each subscriber, in the order given."""

    def __init__(self, *subscribers: Callbacks) -> None:
        self.subscribers = tuple(subscribers)

    def on_stream_open(self, stream: StreamInfo) -> None:
        for s in self.subscribers:
            s.on_stream_open(stream)

    def on_stream_close(self, stream: StreamInfo) -> None:
        for s in self.subscribers:
            s.on_stream_close(stream)

    def on_response_sent(self, stream: StreamInfo, type_url: str, version: str, resources: Mapping[str, str]) -> None:
        for s in self.subscribers:
            s.on_response_sent(stream, type_url, version, resources)

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        for s in self.subscribers:
            s.on_ack(stream, type_url, version)

    def on_nack(self, stream: StreamInfo, type_url: str, version: str | None, error: str) -> None:
        for s in self.subscribers:
            s.on_nack(stream, type_url, version, error)
