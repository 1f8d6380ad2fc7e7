"""``explain`` agrees with a real Envoy on public example 03 (howto-k8s ingress gateway: header
and path routers behind two gateway routes), loaded from its Kubernetes manifests. The same
check on the project's own gateway input is tests/explain/test_explain_envoy.py."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from examples_check.public_examples import example_paths
from mesh_model import load_paths
from tests.explain.live import model_documents, start_live_mesh
from tests.explain.test_explain_envoy import Observed, send_http

pytestmark = pytest.mark.usefixtures("envoy_binary")


def test_public_example_gateway_agrees_with_envoy(examples, procs, addresses, tmp_path):
    model = load_paths(example_paths(examples, "03"))
    mesh = next(iter(model.meshes.values()))
    gateway = next(iter(mesh.virtual_gateways.values()))
    port = gateway.spec.listeners[0].portMapping.port
    live = start_live_mesh(model_documents(model), f"mesh/{mesh.name}/virtualGateway/{gateway.name}", procs, addresses, tmp_path)
    rng = random.Random(3)
    obs = Observed()
    try:
        for _ in range(150):
            path = rng.choice(["/headers", "/headers/x", "/paths", "/paths/blue", "/paths/green/1", "/paths/red", "/paths/yellow",
                               "/paths/white", "/pathsblue", "/other", "/", "/headers/../paths/red"])
            headers = {"color_header": rng.choice(["blue", "Blue", "xgreenx", "green", "red", "redder", "yellow", ""])} if rng.random() < 0.7 else {}
            host = rng.choice(["gw.example.com", f"gw.example.com:{port}"])
            send_http(live, obs, port=port, host=host, method="GET", path=path, headers=headers,
                      to=live.placement.ingress_address)
        problems = obs.check(live)
        assert not problems, f"{len(problems)} of {len(obs.sent)} requests disagree:\n" + "\n".join(problems[:30])
        routes = Counter(ex.route for _, ex, _ in obs.sent if ex.outcome == "routed")
        assert {"color-route-blue", "color-route-green", "color-route-red", "color-route-white", "color-route-yellow"} <= set(routes), routes
    finally:
        live.stop()
