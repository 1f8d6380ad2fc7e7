"""Shared pieces of the benchmarks: result rows, statistics, RSS, the results table.

Every benchmark reports its measurement next to a *floor* measured in the same run on the
same machine (2 cores, shared with other work), so noise that slows both cancels in the
ratio. A verdict compares the measurement with the issue's target:

* PASS / MISS - the target holds / does not;
* INFO        - no target (a breakdown or a comparison kept for the record);
* SKIP        - could not run here (e.g. an optional package is unavailable); says why;
* ERROR       - the benchmark itself failed; the message says where.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Result:
    benchmark: str                  # e.g. "compile: cold, 2000 nodes"
    measured: float | None          # in ``unit``
    unit: str                       # "s", "ms", "KB", ...
    floor: float | None = None      # same unit; measured in the same run
    floor_desc: str = ""            # what the floor is
    target: str = ""                # human text, e.g. "<= 5 s"
    verdict: str = "INFO"           # PASS | MISS | INFO | SKIP | ERROR
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.floor:
            return None
        return self.measured / self.floor

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` from /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stable_rss_kb(pid: int, *, settle: float = 0.5, samples: int = 5, interval: float = 0.1) -> int:
    """RSS after a short settle: the median of a few samples (allocators return memory late)."""
    time.sleep(settle)
    values = []
    for _ in range(samples):
        values.append(rss_kb(pid))
        time.sleep(interval)
    return int(statistics.median(values))


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.start


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(results: Iterable[Result]) -> str:
    rows = ["| benchmark | measured | floor | ratio | target | verdict |", "|---|---|---|---|---|---|"]
    for r in results:
        ratio = f"{r.ratio:.1f}x" if r.ratio is not None else "-"
        rows.append(f"| {r.benchmark} | {fmt(r.measured, r.unit)} | {fmt(r.floor, r.unit)} | {ratio} | {r.target or '-'} | {r.verdict} |")
    return "\n".join(rows)


def notes_section(results: Iterable[Result]) -> str:
    lines = []
    said: set[str] = set()
    for r in results:
        parts = []
        if r.floor_desc and r.floor_desc not in said:
            said.add(r.floor_desc)
            parts.append(f"floor: {r.floor_desc}")
        if r.notes:
            parts.append(r.notes)
        if parts:
            lines.append(f"- **{r.benchmark}**: " + " ".join(parts))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_end": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(results: list[Result], *, directory: Path = RESULTS_DIR, header: str = "") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    info = machine()
    md = directory / "latest.md"
    js = directory / "latest.json"
    body = [
        "# meshplane benchmarks",
        "",
        f"{info['time']}, Python {info['python']}, {info['cpus']} CPUs, load average at end {info['loadavg_at_end']}",
        "",
    ]
    if header:
        body += [header, ""]
    body += [table(results), "", notes_section(results), ""]
    md.write_text("\n".join(body))
    js.write_text(json.dumps({"machine": info, "results": [r.to_json() for r in results]}, indent=2, default=str))
    return md, js


def app_serving(url: str, host_header: str) -> str | None:
    """Which test app answers ``url`` through a sidecar (its ``x-app`` header), or None."""
    from harness.traffic import http_get

    try:
        response = http_get(url, host_header=host_header, timeout=1)
    except OSError:
        return None
    return response.headers.get("x-app") if response.status == 200 else None


def wait_until_serving(sidecar, url: str, host_header: str, app: str, timeout: float = 30) -> None:
    """Block until ``app`` answers through ``sidecar`` (its Envoy has its first config)."""
    deadline = time.monotonic() + timeout
    while app_serving(url, host_header) != app:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sidecar's Envoy never served {app}:\n{sidecar.envoy.log_tail(20)}")
        time.sleep(0.05)


def seconds_until_serving(url: str, host_header: str, app: str, started: float, timeout: float = 10) -> float | None:
    """Seconds from ``started`` (time.monotonic) until ``app`` answers ``url``; None after ``timeout``."""
    deadline = started + timeout
    while True:
        if app_serving(url, host_header) == app:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (/proc/<pid>/stat); 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
