"""Make-before-break with real Envoy: retarget a route and delete its old node in ONE edit,
under continuous traffic, over SotW and over Delta — zero failed requests (§1 E26)."""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.traffic import http_get
from harness.model_builders import mesh, route, virtual_node, virtual_router, virtual_service, write_model

NODE = "mesh/m/virtualNode/client"


def api_model(port: int, target: str, hosts: dict[str, str]) -> list[dict]:
    """Node client -> api.m.local -> router api -> one route to ``target``; a node per ``hosts`` entry."""
    return [
        mesh("m"),
        virtual_service("m", "api.m.local", router="api"),
        virtual_router("m", "api", port),
        route("m", "api", "all", {target: 1}),
        virtual_node("m", "client", backends=["api.m.local"]),
        *(virtual_node("m", name, port=port, host=hosts[name]) for name in sorted(hosts)),
    ]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_retarget_and_delete_old_node_in_one_edit_drops_nothing(delta, procs, addresses, tmp_path, envoy_binary):
    old_host, new_host = addresses(), addresses()
    port = free_port(old_host)
    apps = [AppServer("old", old_host, port).start(), AppServer("new", new_host, port).start()]
    model = tmp_path / "model" / "m.yaml"
    write_model(model, api_model(port, "old", {"old": old_host}))
    runner = MeshRunner(procs, model.parent, tmp_path)
    runner.start_control_plane()
    sidecar = runner.start_sidecar(NODE, ingress=addresses(), app=addresses(), egress=addresses(), delta=delta)
    url, host = sidecar.egress_url(port), f"api.m.local:{port}"
    seen: Counter = Counter()
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                response = http_get(url, host_header=host, timeout=5)
                seen[response.headers.get("x-app") if response.status == 200 else f"status:{response.status}"] += 1
            except OSError as exc:
                seen[f"error:{type(exc).__name__}"] += 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_until(lambda: seen["old"] >= 50, 10, message="no traffic to the old node")
        write_model(model, api_model(port, "new", {"new": new_host}))  # route -> new, node old deleted
        wait_until(lambda: seen["new"] >= 200, 15, message=f"traffic never moved: {dict(seen)}")
    finally:
        stop.set()
        thread.join(10)
        for app in apps:
            app.stop()
    failures = {k: v for k, v in seen.items() if k not in ("old", "new")}
    assert not failures, f"requests failed during the switch: {dict(seen)}"
    clusters = sidecar.envoy.clusters()
    assert f"cds_egress_m_old_http_{port}" not in clusters and f"cds_egress_m_new_http_{port}" in clusters
