"""compose/docker-compose.yaml under podman-compose: meshplane + front, catalog-v1, catalog-v2,
each an app container, App Mesh's proxyinit (envoy/iptables.sh with NET_ADMIN) and an Envoy
sidecar in the app's network namespace. Traffic takes the transparent data path and follows the
model's weights; a weight edit reaches the sidecars."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from demo.containers import ComposeMesh, count_upstreams, podman, podman_out
from tests.containers.conftest import TIMINGS, running_mesh
from harness.traffic import split_violations

REQUESTS = 400


@pytest.fixture(scope="module")
def mesh(container_run, meshplane_image):
    workdir = Path(tempfile.mkdtemp(prefix="meshplane-compose-test-"))
    mesh = ComposeMesh(container_run, meshplane_image, workdir)
    yield from running_mesh(mesh, workdir, "compose mesh", "")


def egress_ingress_2xx(stats: str) -> tuple[int, int]:
    values = dict(re.findall(r"^http\.(egress|ingress)\.downstream_rq_2xx: (\d+)$", stats, re.M))
    return int(values.get("egress", 0)), int(values.get("ingress", 0))


def test_every_container_carries_the_run_label(mesh, container_run):
    names = podman_out("ps", "-a", "--filter", container_run.filter, "--format", "{{.Names}}").split()
    for service in ("meshplane", "front", "catalog-v1", "catalog-v2"):
        for suffix in ("", "-proxyinit", "-envoy") if service != "meshplane" else ("",):
            assert mesh.container(service + suffix) in names
    assert podman_out("network", "ls", "--filter", container_run.filter, "--format", "{{.Name}}").split() == [f"{mesh.project}_default"]


def test_proxyinit_put_app_mesh_s_rules_in_the_app_namespace(mesh, container_run):
    status = podman_out("run", "--rm", "--no-healthcheck", *container_run.label_args(),
                        "--network", f"container:{mesh.container('front')}", "--user", "0:0", "--cap-add", "NET_ADMIN",
                        "--entrypoint", "/opt/meshplane/iptables.sh", mesh.image, "status")
    assert "-A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j APPMESH_EGRESS" in status
    assert "-A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN" in status
    assert "-A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 15001" in status
    assert "-A APPMESH_INGRESS -p tcp -m multiport --dports 8080 -j REDIRECT --to-ports 15000" in status
    for node in ("front", "catalog-v1", "catalog-v2"):
        assert podman_out("inspect", "--format", "{{.State.ExitCode}}", mesh.container(f"{node}-proxyinit")) == "0"


def test_sidecars_pass_app_mesh_s_health_check(mesh):
    for node in ("front", "catalog-v1", "catalog-v2"):
        container = mesh.container(f"{node}-envoy")
        check = podman("exec", container, "sh", "-c",
                       "curl -s http://localhost:9901/server_info | grep state | grep -q LIVE", check=False)
        assert check.returncode == 0, f"{container}: {check.stderr}"
        assert podman("healthcheck", "run", container, check=False).returncode == 0


def test_traffic_takes_the_transparent_path_with_the_model_s_weights(mesh):
    before = egress_ingress_2xx(mesh.admin("/stats"))
    counts = count_upstreams(mesh.url(), REQUESTS)
    assert not split_violations(counts, {"catalog-v1": 90, "catalog-v2": 10}), counts
    # every request entered front through its sidecar's ingress (iptables :8080 -> 15000) and
    # front's call to catalog.shop.local (an address nobody has) left through its egress
    # listener (iptables -> 15001)
    after = egress_ingress_2xx(mesh.admin("/stats"))
    assert after[0] - before[0] >= REQUESTS and after[1] - before[1] >= REQUESTS, (before, after)
    # and reached the catalog apps through their own sidecars' ingress
    for node in ("catalog-v1", "catalog-v2"):
        stats = podman_out("exec", mesh.container(f"{node}-envoy"), "curl", "-s", "http://127.0.0.1:9901/stats")
        assert egress_ingress_2xx(stats)[1] >= counts[node] > 0


def test_a_weight_edit_converges(mesh):
    before = mesh.route_versions()
    mesh.set_weights(50, 50)
    took = mesh.wait_route_change(before, timeout=30)
    TIMINGS["edit -> front sidecar ACK"] = took
    counts = count_upstreams(mesh.url(), REQUESTS)
    assert not split_violations(counts, {"catalog-v1": 50, "catalog-v2": 50}), counts
    route = podman_out("exec", mesh.container("front-envoy"), "curl", "-s",
                       "http://127.0.0.1:9901/config_dump?resource=dynamic_route_configs")
    weights = [int(w) for w in re.findall(r'"weight": (\d+)', route)]
    assert weights and set(weights) == {50}, weights
