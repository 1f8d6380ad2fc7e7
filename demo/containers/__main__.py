"""`make demo-containers`: the compose mesh in real containers (podman), 90/10, then a live edit.

Builds (or reuses) the base image, builds meshplane's image from envoy/Dockerfile, runs
compose/docker-compose.yaml with podman-compose -- meshplane + front, catalog-v1, catalog-v2,
each an app container + App Mesh's proxyinit (envoy/iptables.sh, NET_ADMIN) + an Envoy sidecar
in the app's network namespace -- shows the split observed through front, edits the route to
50/50, shows how long the edit took to reach the sidecars and the new split, and removes every
container, network and image it created, by its run label (also on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from demo.containers import (
    ComposeMesh, ContainerError, Run, build_image, count_upstreams, ensure_base_image, leftovers,
    split_report,
)

REQUESTS = 400


def say(text: str = "") -> None:
    print(text, flush=True)


def show(counts: dict[str, int], weights: dict[str, int]) -> bool:
    ok, lines = split_report(counts, weights)
    for line in lines:
        say(f"      {line}")
    return ok


def main() -> int:
    def _term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)
    run = Run(project="meshplane-demo")
    workdir = Path(tempfile.mkdtemp(prefix="meshplane-demo-containers-"))
    ok = True
    started = time.monotonic()
    say("meshplane container demo: compose/docker-compose.yaml under podman-compose")
    say(f"  run {run.id}: everything created carries the label io.meshplane.run={run.id}")
    try:
        run.sweep_stale()
        say("\n[1/5] base image")
        t = time.monotonic()
        base = ensure_base_image()
        say(f"      {base} ({time.monotonic() - t:.1f} s)")

        say("\n[2/5] meshplane's image (envoy/Dockerfile, offline: wheelhouse in the build context)")
        t = time.monotonic()
        image = build_image(run, base)
        say(f"      {image} ({time.monotonic() - t:.1f} s)")

        say("\n[3/5] the mesh: meshplane + front, catalog-v1, catalog-v2 (app + proxyinit + Envoy sidecar each)")
        t = time.monotonic()
        mesh = ComposeMesh(run, image, workdir)
        mesh.up()
        say(f"      up and every sidecar configured in {time.monotonic() - t:.1f} s; "
            f"front on {mesh.url()}, meshplane status on http://127.0.0.1:{mesh.http_port}/status")

        say(f"\n[4/5] {REQUESTS} requests to front -> its sidecar (iptables :8080 -> 15000) -> front app -> "
            "catalog.shop.local (iptables -> 15001) -> catalog (route: 90/10)")
        ok &= show(count_upstreams(mesh.url(), REQUESTS), {"catalog-v1": 90, "catalog-v2": 10})

        say("\n[5/5] edit the route to 50/50 (the model folder meshplane watches)")
        before = mesh.route_versions()
        mesh.set_weights(50, 50)
        took = mesh.wait_route_change(before)
        say(f"      file saved -> the front sidecar ACKed the new routes in {took:.2f} s")
        ok &= show(count_upstreams(mesh.url(), REQUESTS), {"catalog-v1": 50, "catalog-v2": 50})
    except KeyboardInterrupt:
        say("\ninterrupted")
        ok = False
    except ContainerError as exc:
        say(f"\ndemo failed: {exc}")
        ok = False
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say(f"\ncleaning up by label io.meshplane.run={run.id}")
        removed = run.cleanup()
        left = {k: v for k, v in leftovers(run.filter).items() if v}
        say("      removed " + ", ".join(f"{n} {kind}" for kind, n in removed.items() if n)
            + ("; nothing left" if not left else f"; LEFT: {left}"))
        ok &= not left
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f} s: " + ("the split followed the model" if ok else "with problems (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
