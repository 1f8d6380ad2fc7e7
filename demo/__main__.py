"""`make demo`: a real mesh on this machine, a 90/10 canary, then a live weight change.

Starts `meshplane serve` on the bundled demo mesh, three Envoy sidecars and three tiny apps
on 127.x loopback addresses (the explicit data path: no iptables, no root), sends traffic
through the front service, edits the route to 50/50 and shows the split follow. Every
process it started is stopped by pid on the way out, also on Ctrl-C or an error.
"""
from __future__ import annotations

import os
import random
import string
import sys
import tempfile
import time
from pathlib import Path

from harness.apps import start_app_process
from harness.envoy import envoy_binary
from harness.mesh import MeshRunner
from harness.processes import ProcessGroup, free_port, install_sigterm_handler
from harness.traffic import binomial_tolerance, count_split

REQUESTS = 400


def say(text: str = "") -> None:
    print(text, flush=True)


def render_model(values: dict) -> str:
    template = (Path(__file__).resolve().parent / "mesh" / "demo.yaml").read_text()
    return string.Template(template).substitute(values)


def write_model(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic, like a deploy tool or a ConfigMap swap


def show_split(counts, weights: dict[str, int]) -> bool:
    n = sum(counts.values())
    total = sum(weights.values())
    ok = True
    for version, weight in weights.items():
        p = weight / total
        observed = counts.get(version, 0) / n if n else 0.0
        tolerance = binomial_tolerance(n, p)
        within = abs(observed - p) <= tolerance
        ok &= within
        say(f"      {version}: {counts.get(version, 0):4d} of {n}  ({observed:6.1%}; route says {p:.0%} +/- {tolerance:.1%}) {'ok' if within else 'OFF'}")
    errors = {k: v for k, v in counts.items() if k not in weights}
    if errors:
        ok = False
        say(f"      other answers: {errors}")
    return ok


def main() -> int:
    install_sigterm_handler()
    say("meshplane demo: App Mesh model -> meshplane serve -> Envoy sidecars -> apps")
    say(f"  Envoy binary: {envoy_binary()}")
    net = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}."
    addr = {name: net + str(i) for i, name in enumerate(
        ["front_ingress", "front_app", "front_egress", "v1_ingress", "v1_app", "v1_egress", "v2_ingress", "v2_app", "v2_egress"], start=2)}
    port = free_port(addr["front_ingress"])
    workdir = Path(tempfile.mkdtemp(prefix="meshplane-demo-"))
    model = workdir / "model" / "demo.yaml"
    model.parent.mkdir()
    values = {**addr, "port": port, "v1_weight": 90, "v2_weight": 10}
    model.write_text(render_model(values))
    ok = True
    with ProcessGroup(log_dir=workdir / "logs") as group:
        try:
            runner = MeshRunner(group, model.parent, workdir)
            say(f"\n[1/5] meshplane serve {model}")
            runner.start_control_plane()
            say(f"      xDS on {runner.xds[0]}:{runner.xds[1]}, status on {runner.http_url('/status')}")

            say("\n[2/5] apps (each on its own loopback address, port %d)" % port)
            catalog = f"http://{addr['front_egress']}:{port}"
            start_app_process(group, "front", addr["front_app"], port, log_dir=workdir / "logs",
                              extra_args=("--call", catalog, "--call-host", f"catalog.demo.local:{port}", "--quiet"))
            start_app_process(group, "v1", addr["v1_app"], port, log_dir=workdir / "logs", extra_args=("--quiet",))
            start_app_process(group, "v2", addr["v2_app"], port, log_dir=workdir / "logs", extra_args=("--quiet",))
            say(f"      front {addr['front_app']} (calls catalog.demo.local via its sidecar), v1 {addr['v1_app']}, v2 {addr['v2_app']}")

            say("\n[3/5] Envoy sidecars, bootstrapped by `meshplane bootstrap`, configured over ADS")
            front = runner.start_sidecar("mesh/demo/virtualNode/front", ingress=addr["front_ingress"], app=addr["front_app"], egress=addr["front_egress"])
            for version in ("v1", "v2"):
                runner.start_sidecar(f"mesh/demo/virtualNode/catalog-{version}", ingress=addr[f"{version}_ingress"],
                                     app=addr[f"{version}_app"], egress=addr[f"{version}_egress"])
            say("      front, catalog-v1, catalog-v2: ready")

            def upstream(response):
                if response.status != 200:
                    return f"status:{response.status}"
                return response.json().get("upstream", {}).get("app")

            url = front.ingress_url(port, "/")
            say(f"\n[4/5] {REQUESTS} requests to front ({url}) -> front app -> catalog.demo.local (route: 90/10)")
            ok &= show_split(count_split(url, REQUESTS, key=upstream), {"v1": 90, "v2": 10})

            say("\n[5/5] edit the route to 50/50 and watch Envoy follow")
            before = runner.versions("mesh/demo/virtualNode/front")
            started = time.monotonic()
            write_model(model, render_model({**values, "v1_weight": 50, "v2_weight": 50}))
            runner.wait_converged("mesh/demo/virtualNode/front", changed_from=before, types=("rds",))
            say(f"      file saved -> Envoy acknowledged the new routes in {time.monotonic() - started:.2f} s")
            ok &= show_split(count_split(url, REQUESTS, key=upstream), {"v1": 50, "v2": 50})
        except KeyboardInterrupt:
            say("\ninterrupted")
            ok = False
        except Exception as exc:  # the demo reports and cleans up rather than dumping a trace
            say(f"\ndemo failed: {type(exc).__name__}: {exc}\n  logs: {workdir / 'logs'}")
            ok = False
        finally:
            say(f"\ncleaning up {len(group.procs)} processes (by pid)")
    say("done: the split followed the model" if ok else "done, with problems (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
