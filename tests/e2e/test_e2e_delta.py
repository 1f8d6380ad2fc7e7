"""Real Envoy over Delta ADS: `meshplane serve` -> DELTA_GRPC -> an Envoy 1.40 sidecar -> apps.

One front sidecar with ``api_type: DELTA_GRPC`` (``MeshRunner.start_sidecar(..., delta=True)``)
routes catalog traffic straight to two app servers (catalog-v1/v2 resolve to the apps
themselves: one Envoy keeps the module fast on 2 cores).
The control plane is started with fixed ports so it can be restarted in place: that is what
makes Envoy reconnect with ``initial_resource_versions`` (§1 F31). Assertions are on real
responses, Envoy's admin API and meshplane's /status and log — nothing is mocked.
"""
from __future__ import annotations

import contextlib
import time

import pytest

from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.reload import reload_model
from harness.traffic import count_split, split_violations
from harness.model_builders import CATALOG, FRONT, shop_model, write_model


class DeltaEnv:
    pass


def start_control_plane(env: DeltaEnv) -> None:
    """Start ``meshplane serve`` on the same ports every time (restartable where Envoy expects it)."""
    env.runner.start_control_plane(xds_port=env.xds_port, http_port=env.http_port)


@pytest.fixture(scope="module")
def delta_mesh(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    env = DeltaEnv()
    a = module_addresses
    env.front_ingress, env.front_app, env.front_egress = a(), a(), a()
    env.v1_app, env.v2_app = a(), a()
    env.v1_ingress, env.v2_ingress = env.v1_app, env.v2_app       # no catalog sidecars: straight to the apps
    env.port = free_port(env.front_ingress)
    hosts = {"v1": env.v1_app, "v2": env.v2_app, "rec-a": a(), "rec-b": a()}
    with contextlib.ExitStack() as running:  # the apps stop however the fixture ends
        env.apps = {name: running.enter_context(AppServer(name, host, env.port)) for name, host in hosts.items()}
        env.rec_a, env.rec_b = env.apps["rec-a"], env.apps["rec-b"]
        env.workdir = tmp_path_factory.mktemp("delta")
        env.model_file = env.workdir / "model" / "mesh.yaml"
        env.baseline = write_model(env.model_file, shop_model(env))
        env.runner = MeshRunner(module_procs, env.model_file.parent, env.workdir)
        env.xds_port, env.http_port = free_port(), free_port()
        start_control_plane(env)
        env.front = env.runner.start_sidecar(FRONT, ingress=env.front_ingress, app=env.front_app, egress=env.front_egress,
                                             delta=True)
        env.catalog_url = env.front.egress_url(env.port)
        env.catalog_host = f"{CATALOG}:{env.port}"
        env.recommend_cluster = f"cds_egress_shop_recommend_http_{env.port}"
        env.runner.wait_converged(FRONT, types=("cds", "eds", "lds", "rds"), timeout=15)
        yield env


@pytest.fixture
def mesh(delta_mesh):
    """The shared mesh in its baseline state; a test's model edit is put back after it."""
    env = delta_mesh
    yield env
    if env.model_file.read_text() != env.baseline:
        reload_model(env.runner, env.model_file, shop_model(env), timeout=10)
        env.runner.wait_converged(FRONT, types=("cds", "eds", "lds", "rds"), timeout=15)


def split(env, n: int):
    return count_split(env.catalog_url, n, host_header=env.catalog_host)


def reload_and_converge(env, model: list[dict], types=("rds",)) -> None:
    before = env.runner.versions(FRONT)
    write_model(env.model_file, model)
    env.runner.wait_converged(FRONT, changed_from=before, types=types, timeout=10)


def test_envoy_speaks_delta_and_routes_per_weights(mesh):
    log = mesh.runner.serve_proc.output()
    assert f"delta ADS stream open node={FRONT}" in log, log[-2000:]
    dump = mesh.front.envoy.config_dump(mask="bootstrap")["configs"][0]["bootstrap"]
    assert dump["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    counts = split(mesh, 300)
    problems = split_violations(counts, {"v1": 90, "v2": 10})
    assert not problems, f"split {dict(counts)}: {problems}"


def test_weight_edit_reaches_envoy_over_delta(mesh):
    before = mesh.runner.versions(FRONT)
    modified = mesh.front.envoy.stat("cluster_manager.cluster_modified")
    reload_and_converge(mesh, shop_model(mesh, main_weights=(20, 80)))
    counts = split(mesh, 300)
    problems = split_violations(counts, {"v1": 20, "v2": 80})
    assert not problems, f"split {dict(counts)}: {problems}"
    after = mesh.runner.versions(FRONT)
    assert after["cds"] == before["cds"] and after["lds"] == before["lds"], "only the routes changed"
    assert mesh.front.envoy.stat("cluster_manager.cluster_modified") == modified


def test_removed_backend_disappears_from_envoy(mesh):
    envoy = mesh.front.envoy
    assert mesh.recommend_cluster in envoy.clusters()
    modified = envoy.stat("cluster_manager.cluster_modified")
    removed = envoy.stat("cluster_manager.cluster_removed") or 0
    reload_and_converge(mesh, shop_model(mesh, front_backends=(CATALOG,)), types=("cds",))  # recommend removed
    wait_until(lambda: mesh.recommend_cluster not in envoy.clusters(), 5,
               message="the removed backend's cluster is still in Envoy")
    assert envoy.stat("cluster_manager.cluster_removed") == removed + 1
    # Delta sent only the removal: the clusters that stayed were not re-created
    assert envoy.stat("cluster_manager.cluster_modified") == modified
    counts = split(mesh, 20)
    assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 20, dict(counts)


def test_nack_shows_in_status_and_is_not_resent(mesh):
    # a log file in a folder the sidecar does not have: only the Envoy can know (validation cannot)
    bad_log = {"accessLog": {"file": {"path": "/nonexistent-meshplane-dir/access.log"}}}
    before = mesh.runner.versions(FRONT)
    write_model(mesh.model_file, shop_model(mesh, logging=bad_log))

    def nacked():
        return (mesh.runner.node_types(FRONT).get("lds") or {}).get("nacked")

    nack = wait_until(nacked, 10, message="Envoy's delta NACK did not show in /status")
    assert "unable to open file" in nack["error"], nack
    assert mesh.runner.versions(FRONT)["lds"] == before["lds"]
    rejected = mesh.front.envoy.stat("listener_manager.lds.update_rejected")
    assert rejected >= 1
    time.sleep(1.0)                                          # never re-sent in a loop
    assert mesh.front.envoy.stat("listener_manager.lds.update_rejected") == rejected
    counts = split(mesh, 20)
    assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 20, dict(counts)


def test_control_plane_restart_resumes_with_initial_resource_versions(mesh):
    """Stop meshplane, change a route weight and one cluster meanwhile, start it again on the
    same port: Envoy reconnects declaring what it holds and gets only what differs — and the
    modified cluster's unchanged CLA too, or it would warm forever (§1 D22 after F31)."""
    envoy = mesh.front.envoy
    before = mesh.runner.versions(FRONT)
    added = envoy.stat("cluster_manager.cluster_added")
    modified = envoy.stat("cluster_manager.cluster_modified")
    mesh.runner.serve_proc.stop()
    write_model(mesh.model_file, shop_model(mesh, main_weights=(50, 50), max_server_errors=4))  # was 3
    start_control_plane(mesh)
    mesh.runner.wait_converged(FRONT, changed_from=before, types=("cds", "rds"), timeout=15)
    log = mesh.runner.serve_proc.output()
    assert "cds resumes holding" in log and "lds resumes holding" in log, log[-2000:]
    after = mesh.runner.versions(FRONT)
    assert after["cds"] != before["cds"] and after["rds"] != before["rds"] and after["lds"] == before["lds"]
    wait_until(lambda: not envoy.config_dump("dynamic_warming_clusters").get("configs"), 5,
               message="the cluster modified while meshplane was down stayed warming")
    assert envoy.stat("cluster_manager.cluster_added") == added
    assert envoy.stat("cluster_manager.cluster_modified") == modified + 1   # only recommend
    counts = split(mesh, 200)
    problems = split_violations(counts, {"v1": 50, "v2": 50})
    assert not problems, f"split {dict(counts)}: {problems}"


def test_changed_cluster_leaves_warming(mesh):
    """§1 D22 over Delta: a cluster whose config changes (endpoints unchanged) is re-created
    and warms until its ClusterLoadAssignment arrives again; it must become active."""
    envoy = mesh.front.envoy
    url, host = mesh.front.egress_url(mesh.port), f"recommend.shop.local:{mesh.port}"
    modified = envoy.stat("cluster_manager.cluster_modified")
    reload_and_converge(mesh, shop_model(mesh, max_server_errors=4), types=("cds",))  # baseline: 3
    envoy.wait_stat("cluster_manager.cluster_modified", lambda v: v == modified + 1, timeout=5)

    def active():
        dump = envoy.config_dump("dynamic_warming_clusters")
        return not dump.get("configs")

    wait_until(active, 5, message="the modified cluster stayed warming (no EDS answer)")
    counts = count_split(url, 20, host_header=host)
    assert set(counts) <= {"rec-a", "rec-b"} and sum(counts.values()) == 20, dict(counts)


def test_changed_listener_leaves_warming(mesh):
    """§1 D23 over Delta: a changed listener (routes unchanged) must not stay warming."""
    envoy = mesh.front.envoy
    good_log = {"accessLog": {"file": {"path": "/dev/null", "format": {"text": "%RESPONSE_CODE%\n"}}}}
    reload_and_converge(mesh, shop_model(mesh, logging=good_log), types=("lds",))

    def active():
        return not envoy.config_dump("dynamic_listeners").get("configs") or all(
            "warming_state" not in entry for entry in envoy.config_dump("dynamic_listeners")["configs"])

    wait_until(active, 5, message="a modified listener stayed warming (no RDS answer)")
    counts = split(mesh, 20)
    assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 20, dict(counts)
