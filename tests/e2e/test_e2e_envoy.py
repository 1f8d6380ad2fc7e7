"""Real Envoy end to end: `meshplane serve` -> ADS -> Envoy 1.40 sidecars -> real HTTP apps.

One mesh runs for the whole module (starting Envoys costs seconds); each test starts from
the baseline model and puts it back afterwards. Topology, all on 127.x addresses (explicit
data path):

    client -> front sidecar (egress) -> catalog-v1 sidecar (ingress) -> app v1   (weight 90)
                                     -> catalog-v2 sidecar (ingress) -> app v2   (weight 10)
                                     -> recommend (Cloud Map, EDS)   -> apps rec-a, rec-b

No Envoy behaviour is mocked: every assertion is on real responses, real Envoy stats and
meshplane's /status.
"""
from __future__ import annotations

import contextlib
import time

import pytest

from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.reload import reload_model
from harness.traffic import count_split, http_get, split_violations
from harness.model_builders import CATALOG, FRONT, shop_model, write_model


class ShopEnv:
    pass


@pytest.fixture(scope="module")
def shop(module_procs, module_addresses, tmp_path_factory, envoy_binary):
    env = ShopEnv()
    a = module_addresses
    env.front_ingress, env.front_app, env.front_egress = a(), a(), a()
    env.v1_ingress, env.v1_app = a(), a()
    env.v2_ingress, env.v2_app = a(), a()
    env.port = free_port(env.front_ingress)
    hosts = {"v1": env.v1_app, "v2": env.v2_app, "rec-a": a(), "rec-b": a()}
    with contextlib.ExitStack() as running:  # the apps stop however the fixture ends
        env.apps = {name: running.enter_context(AppServer(name, host, env.port)) for name, host in hosts.items()}
        env.apps["front"] = running.enter_context(AppServer(
            "front", env.front_app, env.port, call=(f"http://{env.front_egress}:{env.port}", f"{CATALOG}:{env.port}")))
        env.rec_a, env.rec_b = env.apps["rec-a"], env.apps["rec-b"]
        workdir = tmp_path_factory.mktemp("shop")
        env.model_file = workdir / "model" / "mesh.yaml"
        env.baseline = write_model(env.model_file, shop_model(env))
        env.runner = MeshRunner(module_procs, env.model_file.parent, workdir)
        env.runner.start_control_plane()
        env.front = env.runner.start_sidecar(FRONT, ingress=env.front_ingress, app=env.front_app, egress=env.front_egress)
        env.v1 = env.runner.start_sidecar("mesh/shop/virtualNode/catalog-v1", ingress=env.v1_ingress, app=env.v1_app, egress=a())
        env.v2 = env.runner.start_sidecar("mesh/shop/virtualNode/catalog-v2", ingress=env.v2_ingress, app=env.v2_app, egress=a())
        env.catalog_url = env.front.egress_url(env.port)
        env.catalog_host = f"{CATALOG}:{env.port}"
        yield env


@pytest.fixture
def mesh(shop):
    """The shared mesh in its baseline state; whatever a test changed is put back after it."""
    for app in shop.apps.values():
        app.reset()
    yield shop
    for app in shop.apps.values():
        app.reset()
    if shop.model_file.read_text() != shop.baseline:
        reload_model(shop.runner, shop.model_file, shop_model(shop))
        shop.runner.wait_converged(FRONT, types=("cds", "lds", "rds"), timeout=20)


def catalog_split(env, n: int, headers: dict | None = None):
    return count_split(env.catalog_url, n, host_header=env.catalog_host, headers=headers)


def test_weighted_split_follows_route_weights(mesh):
    n = 400
    counts = catalog_split(mesh, n)
    problems = split_violations(counts, {"v1": 90, "v2": 10})
    assert not problems, f"split {dict(counts)}: {problems}"


def test_request_travels_app_to_sidecars_to_app(mesh):
    """The front app calls the catalog through its own sidecar; the catalog's sidecar hands it to its app."""
    response = http_get(mesh.front.ingress_url(mesh.port, "/hello"), timeout=10)
    assert response.status == 200, response.text
    body = response.json()
    assert body["app"] == "front"
    assert body["upstream"]["app"] in ("v1", "v2")
    upstream = mesh.v1 if body["upstream"]["app"] == "v1" else mesh.v2
    assert upstream.envoy.stat("http.ingress.downstream_rq_2xx") >= 1
    assert mesh.front.envoy.stat("http.ingress.downstream_rq_2xx") >= 1
    assert mesh.front.envoy.stat("http.egress.downstream_rq_2xx") >= 1


def test_header_match_route_wins_by_priority(mesh):
    counts = catalog_split(mesh, 30, headers={"x-beta": "yes"})
    assert counts == {"v2": 30}, dict(counts)
    counts = catalog_split(mesh, 30, headers={"x-beta": "no"})
    assert set(counts) <= {"v1", "v2"} and counts["v1"] > counts["v2"], dict(counts)


def test_retry_policy_turns_upstream_503_into_200(mesh):
    cluster = f"cluster.cds_egress_shop_catalog-v2_http_{mesh.port}"
    retries_before = mesh.front.envoy.stat(f"{cluster}.upstream_rq_retry") or 0
    v2 = mesh.apps["v2"]
    served_before = v2.requests
    v2.fail_next(1, status=503)
    response = http_get(mesh.catalog_url, host_header=mesh.catalog_host, headers={"x-beta": "yes"})
    assert response.status == 200 and response.headers.get("x-app") == "v2", (response.status, response.text)
    assert v2.requests - served_before == 2  # the failed try and the retry
    wait_until(lambda: (mesh.front.envoy.stat(f"{cluster}.upstream_rq_retry") or 0) == retries_before + 1, 5,
               message="front sidecar did not count exactly one retry")

    # maxRetries 2: an upstream that keeps failing sees 1 + 2 attempts, then the client gets the 503
    v2.set_failing(503)
    served_before = v2.requests
    response = http_get(mesh.catalog_url, host_header=mesh.catalog_host, headers={"x-beta": "yes"})
    assert response.status == 503
    assert v2.requests - served_before == 3


def test_outlier_detection_ejects_failing_endpoint(mesh):
    """recommend has two Cloud Map instances; the one answering 500s is ejected after 3 in a row."""
    url, host = mesh.front.egress_url(mesh.port), f"recommend.shop.local:{mesh.port}"
    cluster = f"cluster.cds_egress_shop_recommend_http_{mesh.port}"
    mesh.rec_b.set_failing(500)
    first = count_split(url, 20, host_header=host)
    assert first["status:500"] >= 3, dict(first)  # rec-b failed until it was ejected
    wait_until(lambda: mesh.front.envoy.stat(f"{cluster}.outlier_detection.ejections_active") == 1, 5,
               message="rec-b was not ejected")
    after = count_split(url, 20, host_header=host)
    assert after == {"rec-a": 20}, dict(after)


def test_weight_change_is_hot_reloaded_into_envoy(mesh):
    before = mesh.runner.versions(FRONT)
    started = time.monotonic()
    write_model(mesh.model_file, shop_model(mesh, main_weights=(20, 80)))
    mesh.runner.wait_converged(FRONT, changed_from=before, types=("rds",), timeout=10)
    elapsed = time.monotonic() - started
    counts = catalog_split(mesh, 400)
    problems = split_violations(counts, {"v1": 20, "v2": 80})
    assert not problems, f"split {dict(counts)}: {problems}"
    assert elapsed < 5, f"edit took {elapsed:.2f}s to reach Envoy"
    after = mesh.runner.versions(FRONT)
    assert after["cds"] == before["cds"] and after["lds"] == before["lds"], "only the routes changed"


def test_invalid_edit_keeps_serving_last_good_config(mesh):
    before = mesh.runner.versions(FRONT)
    # an over-range weight and a second backend Envoy would take for the first (host names ignore
    # case): both reported, nothing pushed
    write_model(mesh.model_file, shop_model(mesh, main_weights=(150, 10), front_backends=(CATALOG, CATALOG.upper())))
    errors = wait_until(lambda: mesh.runner.status()["model"]["lastError"], 10, message="the invalid edit was not reported")
    text = "\n".join(errors)
    assert "mesh.yaml: Route shop/catalog-router/main: spec.httpRoute.action.weightedTargets[0].weight: must be <= 100" in text
    assert "are the same host for Envoy" in text  # the colliding backend is reported too: all errors at once
    time.sleep(1.5)  # longer than the watcher's debounce: nothing may have been pushed
    assert mesh.runner.versions(FRONT) == before
    counts = catalog_split(mesh, 100)
    assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 100, dict(counts)
    assert mesh.runner.serve_proc.alive()


def test_envoy_nack_is_visible_in_status(mesh):
    """A model that is valid but that this Envoy rejects (an access log in a folder it does not have)."""
    before = mesh.runner.versions(FRONT)
    # a log file in a folder the sidecar does not have: only the Envoy can know (validation cannot)
    bad_log = {"accessLog": {"file": {"path": "/nonexistent-meshplane-dir/access.log"}}}
    write_model(mesh.model_file, shop_model(mesh, logging=bad_log))

    def nacked():
        lds = mesh.runner.node_types(FRONT).get("lds") or {}
        return lds.get("nacked")

    nack = wait_until(nacked, 10, message="Envoy's NACK did not show in /status")
    assert "unable to open file" in nack["error"], nack
    assert mesh.runner.versions(FRONT)["lds"] == before["lds"]  # Envoy kept its listeners
    assert mesh.front.envoy.stat("listener_manager.lds.update_rejected") >= 1
    rejected = mesh.front.envoy.stat("listener_manager.lds.update_rejected")
    time.sleep(1.0)  # the server must not re-send the rejected version in a loop
    assert mesh.front.envoy.stat("listener_manager.lds.update_rejected") == rejected
    counts = catalog_split(mesh, 20)
    assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 20, dict(counts)
