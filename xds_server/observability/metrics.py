"""Prometheus metrics in the text exposition format 0.0.4, without prometheus_client.

Three small metric kinds (counter, gauge, histogram with fixed buckets) and ``Metrics``, the
meshplane metric set with domain methods. The ADS side is fed by ``StreamMetrics``, a
subscriber to the stream events (``server.callbacks.Callbacks``: open/close, sent/ACK/NACK),
so the servicer itself knows nothing about metrics; point-in-time gauges (connected
proxies, snapshot sizes) are computed at scrape time from the open streams and the cache by
``render``, so they can never drift.

The control plane reports compilations through the module-level hooks, which write to the
process-wide ``DEFAULT`` set (the one ``meshplane serve`` exposes on ``/metrics``)::

    from xds_server.observability import metrics
    metrics.observe_compile(seconds, nodes)   # after each (re)compilation of node snapshots
    metrics.observe_reload(ok)                # after each model reload attempt
    metrics.observe_placement_failures(n, new)  # placements whose compile failed (kept their last config)

Latency definitions (per xDS type):

* ``meshplane_xds_push_ack_seconds``: from writing a response to the ACK of that response
  (the Envoy round trip, including Envoy applying the config).
* ``meshplane_xds_convergence_seconds``: from the moment the cache got the type's version
  that was pushed (a model change) -- or the stream opened, whichever is later -- to its
  ACK. For a model edit this is "edit compiled -> Envoy acknowledged"; for a new Envoy it
  is "stream opened -> config acknowledged". Compile time is not included (see
  ``meshplane_compile_seconds``).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Protocol, Sequence

from xds_server.cache.snapshot import PUSH_ORDER, TYPE_ABBREVIATIONS, short_type
from xds_server.server.callbacks import Callbacks, StreamInfo

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.cache.snapshot_cache import SnapshotCache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMPILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_KNOWN_TYPES = frozenset(TYPE_ABBREVIATIONS.values())


def type_label(type_url: str) -> str:
    """``cds``..``sds``; anything else is ``other`` (a client may request any type URL, and
    an unbounded label set would let it blow up the metric cardinality)."""
    t = short_type(type_url)
    return t if t in _KNOWN_TYPES else "other"


# ---------------------------------------------------------------------------------------
# Text format
# ---------------------------------------------------------------------------------------

def format_value(v: float) -> str:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: tuple[str, str] | None = None) -> str:
    pairs = list(zip(names, values))
    if extra is not None:
        pairs.append(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in pairs) + "}"


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()  # compile hooks may run in a worker thread

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def _key(self, labels: dict) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)


class _Scalar(_Family):
    """A family with one number per label set (counters and gauges)."""

    def __init__(self, name, help, labelnames=()):
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def value(self, **labels) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {format_value(v)}" for k, v in items]


class Counter(_Scalar):
    kind = "counter"

    def __init__(self, name, help, labelnames=(), *, preset: Iterable[dict] = ()):
        super().__init__(name, help, labelnames)
        for labels in preset:  # series that should read 0 before the first event
            self._values[self._key(labels)] = 0

    def inc(self, amount: float = 1, **labels) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount


class Gauge(_Scalar):
    kind = "gauge"

    def set(self, value: float, **labels) -> None:
        with self._lock:
            self._values[self._key(labels)] = value


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name, help, labelnames=(), *, buckets: Sequence[float] = PUSH_BUCKETS):
        super().__init__(name, help, labelnames)
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("buckets must be sorted and non-empty")
        self.buckets = tuple(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], list] = {}  # key -> [per-bucket counts..., sum, count]

    def observe(self, value: float, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = [0] * len(self.buckets) + [0.0, 0]
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    s[i] += 1
                    break
            s[-2] += value
            s[-1] += 1

    def count(self, **labels) -> int:
        with self._lock:
            s = self._series.get(self._key(labels))
            return s[-1] if s else 0

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        out = self.header()
        for key, s in items:
            cumulative = 0
            for bound, n in zip(self.buckets, s):
                cumulative += n
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, ('le', format_value(bound)))} {cumulative}")
            out.append(f"{self.name}_bucket{_labels(self.labelnames, key, ('le', '+Inf'))} {s[-1]}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {format_value(s[-2])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {s[-1]}")
        return out


# ---------------------------------------------------------------------------------------
# meshplane's metric set
# ---------------------------------------------------------------------------------------

_CORE = [{"type": TYPE_ABBREVIATIONS[t]} for t in PUSH_ORDER]


class Metrics:
    """All of meshplane's event metrics; one instance per process in production (``DEFAULT``)."""

    def __init__(self) -> None:
        self.streams_opened = Counter("meshplane_xds_streams_opened_total", "ADS streams accepted.")
        self.streams_closed = Counter("meshplane_xds_streams_closed_total", "ADS streams ended (any reason).")
        self.streams_rejected = Counter(
            "meshplane_xds_streams_rejected_total",
            "ADS streams refused before opening, by gRPC code and reason "
            "(max_proxies_per_node, max_streams, or resolver for unknown/invalid nodes).",
            ("code", "reason"),
        )
        self.pushes = Counter("meshplane_xds_pushes_total", "xDS responses written, per type.", ("type",), preset=_CORE)
        self.acks = Counter("meshplane_xds_acks_total", "Responses acknowledged (ACK), per type.", ("type",), preset=_CORE)
        self.nacks = Counter("meshplane_xds_nacks_total", "Responses rejected by the client (NACK), per type.", ("type",), preset=_CORE)
        self.push_ack = Histogram(
            "meshplane_xds_push_ack_seconds", "Time from writing a response to its ACK, per type.", ("type",))
        self.convergence = Histogram(
            "meshplane_xds_convergence_seconds",
            "Time from the snapshot change (or stream open, if later) to the ACK of the pushed version, per type.",
            ("type",))
        self.compile_seconds = Histogram(
            "meshplane_compile_seconds", "Wall time of one compilation of node snapshots (model reload).",
            buckets=COMPILE_BUCKETS)
        self.compiled_nodes = Counter("meshplane_compiled_nodes_total", "Node snapshots compiled by reloads.")
        self.last_compile_nodes = Gauge("meshplane_last_compile_nodes", "Node snapshots compiled by the last compilation.")
        self.reloads = Counter(
            "meshplane_model_reloads_total", "Model reload attempts by result.", ("result",),
            preset=[{"result": "ok"}, {"result": "error"}])
        self.placement_failures = Gauge(
            "meshplane_placement_compile_failures",
            "Node placements whose config could not be compiled from the current model (they keep their last good config).")
        self.placement_failures_total = Counter(
            "meshplane_placement_compile_failures_total", "Compilations of one node placement that failed.", preset=[{}])
        self.placement_failures.set(0)
        self._families = [
            self.streams_opened, self.streams_closed, self.streams_rejected, self.pushes, self.acks, self.nacks,
            self.push_ack, self.convergence, self.compile_seconds, self.compiled_nodes, self.last_compile_nodes,
            self.reloads, self.placement_failures, self.placement_failures_total,
        ]

    # -- hooks for the control plane (ControlPlane.reload)
    def observe_compile(self, seconds: float, nodes: int) -> None:
        self.compile_seconds.observe(seconds)
        self.compiled_nodes.inc(nodes)
        self.last_compile_nodes.set(nodes)

    def observe_reload(self, ok: bool) -> None:
        self.reloads.inc(result="ok" if ok else "error")

    def observe_placement_failures(self, failing: int, new: int) -> None:
        self.placement_failures.set(failing)
        self.placement_failures_total.inc(new)

    # -- events from StreamMetrics / the limiter
    def stream_opened(self) -> None:
        self.streams_opened.inc()

    def stream_closed(self) -> None:
        self.streams_closed.inc()

    def stream_rejected(self, code: str, reason: str) -> None:
        self.streams_rejected.inc(code=code, reason=reason)

    def pushed(self, type_url: str) -> None:
        self.pushes.inc(type=type_label(type_url))

    def acked(self, type_url: str, push_ack: float | None, convergence: float | None) -> None:
        t = type_label(type_url)
        self.acks.inc(type=t)
        if push_ack is not None:
            self.push_ack.observe(push_ack, type=t)
        if convergence is not None:
            self.convergence.observe(convergence, type=t)

    def nacked(self, type_url: str) -> None:
        self.nacks.inc(type=type_label(type_url))

    def lines(self) -> list[str]:
        out = []
        for family in self._families:
            out.extend(family.lines())
        return out


@dataclass(slots=True)  # one per type per stream: no instance dict
class _Push:
    """Per stream and type: the last response and whether its ACK is awaited."""

    sent: str | None = None
    acked: str | None = None
    pending_since: float | None = None   # time.monotonic() of a push not yet ACKed/NACKed
    origin: float | None = None          # monotonic start of the pending push's convergence


class StreamMetrics(Callbacks):
    """Subscriber to the stream events: counts them into ``metrics`` and times each push to
    its ACK. ``cache``: when the pushed version entered the cache (convergence starts there,
    or at the stream's open if later)."""

    def __init__(self, metrics: Metrics, cache: "SnapshotCache | None" = None) -> None:
        self.metrics = metrics
        self.cache = cache
        self._streams: dict[int, dict[str, _Push]] = {}

    def on_stream_open(self, stream: StreamInfo) -> None:
        self._streams[stream.id] = {}
        self.metrics.stream_opened()

    def on_stream_close(self, stream: StreamInfo) -> None:
        if self._streams.pop(stream.id, None) is not None:
            self.metrics.stream_closed()

    def on_response_sent(self, stream: StreamInfo, type_url: str, version: str, resources: Mapping[str, str]) -> None:
        self.metrics.pushed(type_url)
        types = self._streams.get(stream.id)
        if types is None:
            return
        p = types.setdefault(type_url, _Push())
        if p.pending_since is not None and version == p.sent:
            # another response of the version still awaiting its ACK (Delta: additions, then
            # removals, of one pass): one push as far as latency and ACK counting go
            return
        now = time.monotonic()
        # a re-send of a version this stream already had (e.g. EDS answered again while
        # clusters warm) converges from now, not from when the cache first held it
        resend = version in (p.sent, p.acked)
        p.sent, p.pending_since, p.origin = version, now, now
        if not resend and self.cache is not None:
            changed = self.cache.changed_at(stream.key, type_url)
            if changed is not None and changed[0] == version:
                p.origin = min(now, max(changed[1], stream.opened))

    def on_ack(self, stream: StreamInfo, type_url: str, version: str) -> None:
        p = self._streams.get(stream.id, {}).get(type_url)
        if p is None:
            return  # nothing of this type was sent on this stream
        p.acked = version
        if version != p.sent or p.pending_since is None:
            return  # not the last response, or a repeated ACK (e.g. Envoy's warming request): counted once
        now = time.monotonic()
        push_ack, convergence = now - p.pending_since, now - (p.origin if p.origin is not None else p.pending_since)
        p.pending_since = None
        self.metrics.acked(type_url, push_ack, convergence)

    def on_nack(self, stream: StreamInfo, type_url: str, version: str | None, error: str) -> None:
        p = self._streams.get(stream.id, {}).get(type_url)
        if p is not None:
            p.pending_since = None
        self.metrics.nacked(type_url)


class OpenStreams(Protocol):
    """What the live gauges read about the open streams (``StatusRegistry`` has it)."""

    def count(self, node_id: str | None = None) -> int: ...

    def node_ids(self) -> list[str]: ...


def live_gauges(streams: OpenStreams | None, cache: "SnapshotCache | None") -> list[str]:
    """Point-in-time gauges read at scrape time from the open streams and the cache."""
    out: list[str] = []
    if streams is not None:
        g = Gauge("meshplane_xds_connected_proxies", "Open ADS streams (one per connected Envoy).")
        g.set(streams.count())
        out += g.lines()
        g = Gauge("meshplane_xds_connected_nodes", "Distinct node ids with at least one open ADS stream.")
        g.set(len(streams.node_ids()))
        out += g.lines()
    if cache is not None:
        sizes = cache.sizes()
        g = Gauge("meshplane_snapshot_bytes", "Serialized size of the cached snapshots, per type, summed over keys.", ("type",))
        totals: dict[str, int] = {TYPE_ABBREVIATIONS[t]: 0 for t in PUSH_ORDER}
        for type_url, size in sizes.items():
            label = type_label(type_url)
            totals[label] = totals.get(label, 0) + size
        for label, size in totals.items():
            g.set(size, type=label)
        out += g.lines()
        g = Gauge("meshplane_snapshot_keys", "Snapshots held in the cache (node placements).")
        g.set(len(cache.keys()))
        out += g.lines()
    return out


def render(metrics: Metrics | None, streams: OpenStreams | None = None, cache: "SnapshotCache | None" = None) -> str:
    lines = (metrics.lines() if metrics is not None else []) + live_gauges(streams, cache)
    return "\n".join(lines) + "\n"


DEFAULT = Metrics()


def observe_compile(seconds: float, nodes: int) -> None:
    """Hook for ControlPlane: one compilation of ``nodes`` snapshots took ``seconds``."""
    DEFAULT.observe_compile(seconds, nodes)


def observe_reload(ok: bool) -> None:
    """Hook for ControlPlane: a model reload attempt finished (``ok=False``: model rejected)."""
    DEFAULT.observe_reload(ok)


def observe_placement_failures(failing: int, new: int) -> None:
    """Hook for ControlPlane: ``failing`` node placements cannot be compiled now, ``new`` failed just now."""
    DEFAULT.observe_placement_failures(failing, new)
