"""compose/docker-compose.replicas.yaml under podman-compose: a PostgreSQL container (Debian's
package, built offline like meshplane's image), two `meshplane serve --store postgresql://...`
replicas, the mesh created through replica A's App Mesh API, and the three app pods whose
sidecars' bootstraps list both replicas. Killing the replica a sidecar talks to moves it to the
other one with zero failed requests and its ACKed versions unchanged; a write through the
surviving replica's API reaches it."""

from __future__ import annotations

import re
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from demo.containers import (
    COMPOSE_DIR, NODES, REPLICAS, REPLICAS_COMPOSE_FILE, ReplicasMesh, count_upstreams, podman,
    podman_env, podman_out, run_cmd, tool, upstream_of, wait_for,
)
from tests.containers.conftest import TIMINGS, running_mesh
from harness.traffic import split_violations

# --- the file: plain Compose -----------------------------------------------------------------


def test_replicas_file_validates_against_the_compose_spec_schema():
    out = run_cmd([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(REPLICAS_COMPOSE_FILE)], check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_replicas_file_holds_no_podman_only_keys():
    config = yaml.safe_load(REPLICAS_COMPOSE_FILE.read_text())
    assert set(config) <= {"name", "services", "networks", "volumes", "configs", "secrets"} | {k for k in config if k.startswith("x-")}
    assert "x-podman" not in REPLICAS_COMPOSE_FILE.read_text()
    for name, service in config["services"].items():
        assert not str(service.get("network_mode", "")).startswith(("pod:", "ns:", "slirp4netns", "pasta")), name
        assert "userns_mode" not in service and "pod" not in service, name
    out = run_cmd([tool("podman-compose"), "-f", str(REPLICAS_COMPOSE_FILE), "config"], cwd=COMPOSE_DIR, env=podman_env())
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"postgres", *REPLICAS} | {f"{n}{s}" for n in NODES for s in ("", "-proxyinit", "-envoy")}
    for replica in REPLICAS:
        assert "postgresql://" in " ".join(services[replica]["entrypoint"])
    for node in NODES:
        assert services[f"{node}-envoy"]["environment"]["MESHPLANE_XDS_REPLICAS"] == "meshplane-a:18000,meshplane-b:18000"


# --- the running mesh ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(container_run, meshplane_image, postgres_image):
    workdir = Path(tempfile.mkdtemp(prefix="meshplane-replicas-test-"))
    mesh = ReplicasMesh(container_run, meshplane_image, postgres_image, workdir)
    yield from running_mesh(mesh, workdir, "replicas mesh", "replicas ")


class Traffic(threading.Thread):
    """Requests to front, one after another, until stopped; every answer's upstream recorded."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.results: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.results.append(upstream_of(self.url, timeout=5))
            except Exception as exc:  # noqa: BLE001 - a refused or reset request is a failure
                self.results.append(f"error:{type(exc).__name__}:{exc}")

    def stop(self) -> list[str]:
        self.stopped.set()
        self.join(10)
        return self.results


def test_the_replicas_share_the_store_and_serve_identical_config(replicas):
    # the mesh was written through A; B reads it from PostgreSQL
    for replica in REPLICAS:
        meshes = replicas.appmesh(replica).list_meshes()["meshes"]
        assert [m["meshName"] for m in meshes] == ["shop"], replica
    # every sidecar's bootstrap names both replicas
    for node in NODES:
        bootstrap = podman_out("exec", replicas.container(f"{node}-envoy"), "cat", "/tmp/envoy.yaml")
        assert 'address: "meshplane-a", port_value: 18000' in bootstrap
        assert 'address: "meshplane-b", port_value: 18000' in bootstrap
    # the sidecars are spread or not, but each is held by exactly one replica, all ACKed
    holders = replicas.holders()
    assert set(holders) == set(NODES), holders


def test_a_sidecar_fails_over_when_its_replica_is_killed(replicas):
    holders = replicas.holders()
    victim = holders["front"]
    survivor = next(r for r in REPLICAS if r != victim)
    before = replicas.acked_versions()
    assert all(v.get("cds") and v.get("lds") and v.get("rds") for v in before.values()), before

    traffic = Traffic(replicas.url())
    traffic.start()
    try:
        wait_for("traffic through front", lambda: len(traffic.results) >= 20, 30, 0.05)
        killed_at = time.monotonic()
        podman("kill", replicas.container(victim), timeout=60)

        def all_on_survivor_and_acked():
            if set(replicas.holders().values()) != {survivor} or set(replicas.holders()) != set(NODES):
                return False
            return replicas.acked_versions() == before

        wait_for(f"every sidecar to move to {survivor} with its versions ACKed", all_on_survivor_and_acked, 60, 0.1)
        TIMINGS["replica killed -> sidecars on the survivor"] = time.monotonic() - killed_at
        count = len(traffic.results)
        wait_for("more traffic after the failover", lambda: len(traffic.results) >= count + 50, 30, 0.05)
    finally:
        results = traffic.stop()
    failed = [r for r in results if r not in ("catalog-v1", "catalog-v2")]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {sorted(set(failed))[:5]}"
    assert replicas.alive_replicas() == [survivor]
    # the versions the sidecars had ACKed from the killed replica are the survivor's: nothing re-pushed
    assert replicas.acked_versions() == before
    stats = podman_out("exec", replicas.container("front-envoy"), "curl", "-s", "http://127.0.0.1:9901/stats")
    assert re.search(r"^control_plane\.connected_state: 1$", stats, re.M), "front's sidecar is not connected"


def test_a_write_through_the_surviving_replica_reaches_the_sidecar(replicas):
    alive = replicas.alive_replicas()
    assert len(alive) == 1, f"runs after the failover test: {alive} alive"
    survivor = alive[0]
    before = replicas.route_versions()
    appmesh = replicas.appmesh(survivor)
    route = appmesh.describe_route(meshName="shop", virtualRouterName="catalog-router", routeName="canary")["route"]
    spec = route["spec"]
    for target in spec["httpRoute"]["action"]["weightedTargets"]:
        target["weight"] = 50
    started = time.monotonic()
    appmesh.update_route(meshName="shop", virtualRouterName="catalog-router", routeName="canary", spec=spec)
    took = replicas.wait_route_change(before, timeout=30)
    TIMINGS["API write on the survivor -> front sidecar ACK"] = time.monotonic() - started
    assert took < 30
    dump = podman_out("exec", replicas.container("front-envoy"), "curl", "-s",
                      "http://127.0.0.1:9901/config_dump?resource=dynamic_route_configs")
    weights = [int(w) for w in re.findall(r'"weight": (\d+)', dump)]
    assert weights and set(weights) == {50}, weights
    counts = count_upstreams(replicas.url(), 200)
    assert not split_violations(counts, {"catalog-v1": 50, "catalog-v2": 50}), counts
