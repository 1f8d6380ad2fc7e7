"""One run and its labels: :class:`Run` -- one run's id and labels (``io.meshplane.project``,
``io.meshplane.run``, ``io.meshplane.pid``); everything a run creates carries them, and
:meth:`Run.cleanup` removes containers, networks, volumes and images by the run label (never by
name). Runs whose process is gone (killed -9) are swept the same way when the next run starts.
"""

from __future__ import annotations

import os
import time
import uuid

from demo.containers.podman import LOG, podman, podman_out

PROJECT_KEY = "io.meshplane.project"
RUN_KEY = "io.meshplane.run"
PID_KEY = "io.meshplane.pid"
# The caches (base and dependency images) carry this project value; a run's images override it.
CACHE_PROJECT = "meshplane-cache"


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class Run:
    """A run id, the labels that go on everything the run creates, and removal by label."""

    def __init__(self, project: str = "meshplane-test"):
        self.project = project
        self.id = f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.closed = False

    @property
    def labels(self) -> dict[str, str]:
        return {PROJECT_KEY: self.project, RUN_KEY: self.id, PID_KEY: str(os.getpid())}

    def label_args(self) -> list[str]:
        return [arg for key, value in self.labels.items() for arg in ("--label", f"{key}={value}")]

    @property
    def filter(self) -> str:
        return f"label={RUN_KEY}={self.id}"

    def name(self, what: str) -> str:
        return f"meshplane-{self.id}-{what}"

    def cleanup(self) -> dict[str, int]:
        """Remove every container, pod, network, volume and image carrying this run's label."""
        self.closed = True
        removed = remove_labelled(self.filter)
        if any(leftovers(self.filter).values()):  # something was still being created: once more
            time.sleep(1)
            for kind, n in remove_labelled(self.filter).items():
                removed[kind] = removed.get(kind, 0) + n
        return removed

    def sweep_stale(self) -> None:
        """Remove what earlier runs of this project left behind when their process died."""
        stale: set[str] = set()
        for kind in (("ps", "-a"), ("network", "ls"), ("images",)):
            out = podman(*kind, "--filter", f"label={PROJECT_KEY}={self.project}", "--format", "{{.Labels}}", check=False).stdout
            for line in out.splitlines():
                labels = _parse_labels(line)
                run, pid = labels.get(RUN_KEY), labels.get(PID_KEY)
                if run and pid and run != self.id and not _pid_alive(pid):
                    stale.add(run)
        for run in sorted(stale):
            LOG(f"removing what run {run} left behind (its process is gone)")
            remove_labelled(f"label={RUN_KEY}={run}")


def _parse_labels(text: str) -> dict[str, str]:
    """podman's {{.Labels}}: ``map[k:v k2:v2]`` (ps, images) or a JSON-ish map (network ls)."""
    text = text.strip()
    if text.startswith("map[") and text.endswith("]"):
        text = text[4:-1]
    labels = {}
    for item in text.split():
        key, sep, value = item.partition(":")
        if sep:
            labels[key] = value
        key, sep, value = item.partition("=")
        if sep and key not in labels:
            labels[key] = value
    return labels


def remove_labelled(label_filter: str) -> dict[str, int]:
    removed = {}
    ids = podman_out("ps", "-a", "--filter", label_filter, "--format", "{{.ID}}").split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False, timeout=120)
    removed["containers"] = len(ids)
    ids = podman("pod", "ps", "--filter", label_filter, "--format", "{{.ID}}", check=False).stdout.split()
    if ids:
        podman("pod", "rm", "-f", *ids, check=False)
    removed["pods"] = len(ids)
    ids = podman_out("network", "ls", "--filter", label_filter, "--format", "{{.Name}}").split()
    if ids:
        podman("network", "rm", "-f", *ids, check=False)
    removed["networks"] = len(ids)
    ids = podman_out("volume", "ls", "--filter", label_filter, "--format", "{{.Name}}").split()
    if ids:
        podman("volume", "rm", "-f", *ids, check=False)
    removed["volumes"] = len(ids)
    ids = sorted(set(podman_out("images", "--filter", label_filter, "--format", "{{.ID}}").split()))
    if ids:
        podman("rmi", "-f", *ids, check=False)
    removed["images"] = len(ids)
    return removed


def leftovers(label_filter: str) -> dict[str, list[str]]:
    """What still carries the label (a clean run leaves nothing)."""
    return {
        "containers": podman_out("ps", "-a", "--filter", label_filter, "--format", "{{.Names}}").split(),
        "networks": podman_out("network", "ls", "--filter", label_filter, "--format", "{{.Name}}").split(),
        "volumes": podman_out("volume", "ls", "--filter", label_filter, "--format", "{{.Name}}").split(),
        "images": podman_out("images", "--filter", label_filter, "--format", "{{.ID}}").split(),
    }
