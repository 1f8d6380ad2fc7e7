"""`make demo-containers-replicas`: compose/docker-compose.replicas.yaml in real containers.

PostgreSQL (Debian's package, image built offline like meshplane's), two `meshplane serve
--store postgresql://...` replicas, the mesh created through replica A's App Mesh API, and
front / catalog-v1 / catalog-v2 with sidecars whose bootstraps list both replicas. With traffic
running through front it kills the replica front's sidecar is connected to, shows the sidecar
moving to the other one and how many requests failed (none), then writes a route change
through the surviving replica's API and shows it reaching the sidecar. Everything it created is
removed by its run label (also on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from demo.containers import (
    REPLICAS, ContainerError, ReplicasMesh, Run, build_image, build_postgres_image, count_upstreams,
    ensure_base_image, ensure_postgres_base_image, leftovers, podman, split_report, upstream_of, wait_for,
)


def say(text: str = "") -> None:
    print(text, flush=True)


def main() -> int:
    def _term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)
    run = Run(project="meshplane-demo")
    workdir = Path(tempfile.mkdtemp(prefix="meshplane-demo-replicas-"))
    ok = True
    started = time.monotonic()
    say("meshplane replicas demo: compose/docker-compose.replicas.yaml under podman-compose")
    say(f"  run {run.id}: everything created carries the label io.meshplane.run={run.id}")
    try:
        run.sweep_stale()
        say("\n[1/5] images: meshplane's (envoy/Dockerfile) and PostgreSQL's (compose/postgres/)")
        t = time.monotonic()
        image = build_image(run, ensure_base_image())
        pg_image = build_postgres_image(run, ensure_postgres_base_image())
        say(f"      {image}, {pg_image} ({time.monotonic() - t:.1f} s)")

        say("\n[2/5] PostgreSQL, meshplane-a + meshplane-b on it, the mesh through meshplane-a's API, the app pods")
        t = time.monotonic()
        mesh = ReplicasMesh(run, image, pg_image, workdir)
        mesh.up()
        holders = mesh.holders()
        say(f"      up in {time.monotonic() - t:.1f} s; sidecars: " + ", ".join(f"{n} -> {r}" for n, r in sorted(holders.items())))
        for replica in REPLICAS:
            say(f"      {replica}: {mesh.api_url(replica)}/status")

        victim = holders["front"]
        survivor = next(r for r in REPLICAS if r != victim)
        before = mesh.acked_versions()
        say(f"\n[3/5] traffic through front; kill {victim} (front's sidecar's replica)")
        results: list[str] = []
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    results.append(upstream_of(mesh.url()))
                except Exception as exc:  # noqa: BLE001
                    results.append(f"error:{exc}")

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        try:
            time.sleep(1)
            t = time.monotonic()
            podman("kill", mesh.container(victim))
            wait_for(f"every sidecar on {survivor}",
                     lambda: set(mesh.holders().values()) == {survivor} and len(mesh.holders()) == 3
                     and mesh.acked_versions() == before, 60, 0.1)
            took = time.monotonic() - t
            time.sleep(2)
        finally:
            stop.set()
            thread.join(10)
        failed = [r for r in results if r not in ("catalog-v1", "catalog-v2")]
        say(f"      every sidecar on {survivor} {took:.2f} s after the kill, its ACKed versions unchanged: "
            f"{mesh.acked_versions() == before}")
        say(f"      {len(results)} requests during the failover, {len(failed)} failed")
        ok &= not failed

        say(f"\n[4/5] route 90/10 -> 50/50 through {survivor}'s App Mesh API (UpdateRoute)")
        versions = mesh.route_versions()
        appmesh = mesh.appmesh(survivor)
        spec = appmesh.describe_route(meshName="shop", virtualRouterName="catalog-router", routeName="canary")["route"]["spec"]
        for target in spec["httpRoute"]["action"]["weightedTargets"]:
            target["weight"] = 50
        t = time.monotonic()
        appmesh.update_route(meshName="shop", virtualRouterName="catalog-router", routeName="canary", spec=spec)
        mesh.wait_route_change(versions)
        say(f"      the front sidecar ACKed the new routes {time.monotonic() - t:.2f} s after the call")

        say("\n[5/5] 400 requests through front")
        good, lines = split_report(count_upstreams(mesh.url(), 400), {"catalog-v1": 50, "catalog-v2": 50})
        for line in lines:
            say(f"      {line}")
        ok &= good
    except KeyboardInterrupt:
        say("\ninterrupted")
        ok = False
    except ContainerError as exc:
        say(f"\ndemo failed: {exc}")
        ok = False
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say(f"\ncleaning up by label io.meshplane.run={run.id}")
        removed = run.cleanup()
        left = {k: v for k, v in leftovers(run.filter).items() if v}
        say("      removed " + ", ".join(f"{n} {kind}" for kind, n in removed.items() if n)
            + ("; nothing left" if not left else f"; LEFT: {left}"))
        ok &= not left
        shutil.rmtree(workdir, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f} s: " + ("failover without a failed request" if ok else "with problems (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
