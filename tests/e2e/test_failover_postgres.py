"""Replicas on one PostgreSQL, real Envoy under continuous traffic (issue 8, "How it is proven").

Two ``meshplane serve --store postgresql://...`` replicas share a fresh database; the mesh is
made with boto3 only; the Envoy's bootstrap lists both replicas; a thread sends requests
through the sidecar the whole time.

- SIGKILL the replica the Envoy streams from: it reconnects to the other, its acknowledged
  ``version_info`` of every type is unchanged, no listener or cluster was added, modified,
  removed or drained, and not one request failed. A write through the survivor then reaches it.
- PostgreSQL stopped and started again under the running replicas: the Envoy keeps its
  config and serves every request; writes are refused while it is away and succeed (and reach
  the Envoy) once it is back.
"""
from __future__ import annotations

import collections
import json
import http.client
import signal
import threading
import time

import pytest
from botocore.exceptions import ClientError

from mesh_model.compiler import Placement
from mesh_model.node_id import parse_node_id
from mesh_model.render import dynamic_bootstrap
from tests.api.conftest import client, start_serve
from harness.model_builders import cloud_map_service
from xds_server.api.client import call
from harness.apps import AppServer
from harness.envoy import EnvoyProcess
from harness.mesh import MeshRunner
from harness.processes import free_port as any_free_port
from harness.processes import wait_until
from harness.traffic import count_split, http_get, split_violations

SERVICE = "catalog.shop.local"
FRONT = "mesh/shop/virtualNode/front"
TYPES = ("cds", "eds", "lds", "rds")
CHURN = (r"listener_manager\.(listener_(added|modified|removed|in_place_updated)|total_filter_chains_draining"
         r"|listener_stopped)|cluster_manager\.cluster_(added|modified|removed)")


def envoy_view(envoy: EnvoyProcess) -> dict:
    """What the Envoy itself holds, from its config_dump: the version_info of its clusters,
    listeners and route configurations, each resource's version and last update time, and its
    endpoint assignments (EDS)."""
    view: dict = {}
    for config in envoy.config_dump(include_eds=True)["configs"]:
        kind = config["@type"].rsplit(".", 1)[-1]
        if kind == "ClustersConfigDump":
            view["cds"] = config.get("version_info")
            view["clusters"] = sorted((c["cluster"]["name"], c.get("version_info"), c.get("last_updated"))
                                      for c in config.get("dynamic_active_clusters", []))
            view["warming_clusters"] = len(config.get("dynamic_warming_clusters", []))
        elif kind == "ListenersConfigDump":
            view["lds"] = config.get("version_info")
            view["listeners"] = sorted((l["name"], (l.get("active_state") or {}).get("version_info"),
                                        (l.get("active_state") or {}).get("last_updated"), "draining_state" in l)
                                       for l in config.get("dynamic_listeners", []))
        elif kind == "RoutesConfigDump":
            view["rds"] = sorted((r["route_config"]["name"], r.get("version_info"), r.get("last_updated"))
                                 for r in config.get("dynamic_route_configs", []))
        elif kind == "EndpointsConfigDump":
            view["eds"] = sorted(json.dumps(e, sort_keys=True) for e in config.get("dynamic_endpoint_configs", []))
    return view


def route(weights: dict[str, int]) -> dict:
    return {"httpRoute": {"match": {"prefix": "/"}, "action": {
        "weightedTargets": [{"virtualNode": n, "weight": w} for n, w in weights.items()]}}}


class Traffic(threading.Thread):
    """GETs through the sidecar, one after the other, until stopped (or ``limit`` requests):
    every answer counted by app (``x-app``), every failure (non-200, connection error) kept."""

    def __init__(self, url: str, host_header: str, *, limit: int = 20000, pause: float = 0.005):
        super().__init__(daemon=True, name="traffic")
        self.url, self.host_header, self.limit, self.pause = url, host_header, limit, pause
        self.counts: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        for _ in range(self.limit):
            if self._stop_event.is_set():
                return
            try:
                r = http_get(self.url, host_header=self.host_header, timeout=5)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{time.monotonic():.3f} {type(exc).__name__}: {exc}")
            else:
                if r.status == 200:
                    self.counts[r.headers.get("x-app")] += 1
                else:
                    self.failures.append(f"{time.monotonic():.3f} status {r.status}: {r.body[:200]!r}")
            time.sleep(self.pause)

    @property
    def sent(self) -> int:
        return sum(self.counts.values()) + len(self.failures)

    def wait_for(self, more: int, timeout: float = 20) -> None:
        target = self.sent + more
        wait_until(lambda: self.sent >= target, timeout, message=f"traffic: {more} more requests")

    def finish(self) -> None:
        self._stop_event.set()
        self.join(timeout=15)


class Scene:
    """Two replicas on one fresh database, the mesh made with boto3, apps v1/v2, and the front
    Envoy whose bootstrap lists both replicas."""

    def __init__(self, procs, tmp_path, addresses, postgres):
        self.procs, self.tmp_path = procs, tmp_path
        self.store = postgres.new_database()
        front_ingress, front_app, front_egress, v1_host, v2_host = (addresses() for _ in range(5))
        self.port = port = any_free_port(front_ingress)
        self.apps = [AppServer("v1", v1_host, port).start(), AppServer("v2", v2_host, port).start()]
        self.replicas = [self.start_replica(i) for i in range(2)]
        c = client(self.replicas[0][0].url)
        c.create_mesh(meshName="shop")
        listener = [{"portMapping": {"port": port, "protocol": "http"}}]
        # v2 is found through the Cloud Map stand-in, so the Envoy also gets EDS (every xDS type in play);
        # CloudMapService is meshplane's own kind (no App Mesh operation): written through /meshplane/v1/apply
        call(self.replicas[0][0].url, "POST", "/meshplane/v1/apply",
             {"documents": [cloud_map_service("shop.local", "v2", {"v2-a": v2_host})]})
        discovery = {"v1": {"dns": {"hostname": v1_host}},
                     "v2": {"awsCloudMap": {"namespaceName": "shop.local", "serviceName": "v2"}}}
        for name in ("v1", "v2"):
            c.create_virtual_node(meshName="shop", virtualNodeName=name,
                                  spec={"listeners": listener, "serviceDiscovery": discovery[name]})
        c.create_virtual_router(meshName="shop", virtualRouterName="catalog", spec={"listeners": listener})
        c.create_route(meshName="shop", virtualRouterName="catalog", routeName="main", spec=route({"v1": 1, "v2": 1}))
        c.create_virtual_service(meshName="shop", virtualServiceName=SERVICE,
                                 spec={"provider": {"virtualRouter": {"virtualRouterName": "catalog"}}})
        c.create_virtual_node(meshName="shop", virtualNodeName="front", spec={
            "listeners": listener, "serviceDiscovery": {"dns": {"hostname": front_ingress}},
            "backends": [{"virtualService": {"virtualServiceName": SERVICE}}]})

        self.placement = Placement(explicit=True, ingress_address=front_ingress, app_address=front_app,
                                   egress_address=front_egress)
        admin = ("127.0.0.1", any_free_port())
        config = tmp_path / "front.yaml"
        config.write_text(dynamic_bootstrap(parse_node_id(FRONT), [r.xds for _, r in self.replicas],
                                            placement=self.placement, admin="%s:%d" % admin))
        self.envoy = EnvoyProcess.start(procs, config, name="envoy-front", admin=admin)
        self.envoy.wait_ready(timeout=30)
        self.url, self.host_header = f"http://{front_egress}:{port}/", f"{SERVICE}:{port}"

    def start_replica(self, i: int):
        api = start_serve(self.procs, lambda *a: any_free_port(*a), self.tmp_path, "--store", self.store,
                          name=f"replica-{i}")
        runner = MeshRunner(self.procs, self.tmp_path / "unused", self.tmp_path / f"replica-{i}")
        host, xds_port = api.xds.rsplit(":", 1)
        http_host, http_port = api.http.rsplit(":", 1)
        runner.xds, runner.http, runner.serve_proc = (host, int(xds_port)), (http_host, int(http_port)), api.extra["proc"]
        runner.xds = "%s:%d" % runner.xds  # bootstrap form; MeshRunner only needs http
        return api, runner

    def connected(self) -> tuple | None:
        """The one live replica the front Envoy streams from (None while it is none or two)."""
        live = []
        for api, runner in self.replicas:
            if not runner.serve_proc.alive():
                continue
            try:
                if runner.status().get("nodes", {}).get(FRONT, {}).get("streams"):
                    live.append((api, runner))
            except OSError:
                continue
        return live[0] if len(live) == 1 else None

    def converged(self, runner: MeshRunner, types=TYPES, **kwargs) -> dict:
        """The acknowledged version of every type once the node ACKed all it was sent."""
        versions = runner.wait_converged(FRONT, types=types, timeout=20, **kwargs)
        return {t: versions.get(t) for t in TYPES}

    def close(self) -> None:
        for app in self.apps:
            app.stop()


@pytest.fixture
def scene(procs, tmp_path, addresses, postgres, envoy_binary):
    s = Scene(procs, tmp_path, addresses, postgres)
    try:
        yield s
    finally:
        s.close()


def test_sigkill_connected_replica_loses_nothing(scene):
    api_a, first = wait_until(scene.connected, 20, message="Envoy connected to one replica")
    before = scene.converged(first)
    assert all(before[t] for t in TYPES), before
    stats_before = scene.envoy.stats(CHURN)
    assert stats_before, "no listener_manager/cluster_manager counters read"
    held_before = envoy_view(scene.envoy)
    assert held_before["cds"] == before["cds"] and held_before["lds"] == before["lds"] and held_before["eds"], held_before
    assert not split_violations(count_split(scene.url, 200, host_header=scene.host_header), {"v1": 1, "v2": 1})

    traffic = Traffic(scene.url, scene.host_header)
    traffic.start()
    try:
        traffic.wait_for(100)
        first.serve_proc.signal(signal.SIGKILL)
        first.serve_proc.stop()
        survivor_api, second = next(r for r in scene.replicas if r[1] is not first)
        wait_until(lambda: (scene.connected() or (None, None))[1] is second, 30, message="Envoy moved to the other replica")
        after = scene.converged(second)
        traffic.wait_for(200)
    finally:
        traffic.finish()
        assert after == before  # same version_info of every type acknowledged: nothing new was sent
    assert envoy_view(scene.envoy) == held_before  # the Envoy holds the very same resources, none re-applied
    assert scene.envoy.stats(CHURN) == stats_before  # no listener/cluster added, modified, removed, drained
    assert traffic.failures == [], traffic.failures[:10]
    assert traffic.sent >= 300 and not split_violations(traffic.counts, {"v1": 1, "v2": 1}), traffic.counts

    # a write through the survivor reaches the Envoy
    client(survivor_api.url).update_route(meshName="shop", virtualRouterName="catalog", routeName="main",
                                          spec=route({"v1": 0, "v2": 1}))
    scene.converged(second, changed_from=after)
    counts = count_split(scene.url, 200, host_header=scene.host_header)
    assert not split_violations(counts, {"v2": 1}), counts


def test_postgres_restart_under_running_replicas(scene, postgres):
    api_a, first = wait_until(scene.connected, 20, message="Envoy connected to one replica")
    before = scene.converged(first)
    stats_before = scene.envoy.stats(CHURN)
    other = next(api for api, runner in scene.replicas if runner is not first)
    c = client(other.url)  # written on the replica the Envoy is NOT connected to

    traffic = Traffic(scene.url, scene.host_header)
    traffic.start()
    try:
        traffic.wait_for(50)
        postgres.stop()
        try:
            traffic.wait_for(100)
            for _, runner in scene.replicas:  # still serving the last model
                assert runner.serve_proc.alive()
            with pytest.raises(ClientError) as refused:
                c.update_route(meshName="shop", virtualRouterName="catalog", routeName="main",
                               spec=route({"v1": 1, "v2": 0}))
            traffic.wait_for(50)
        finally:
            postgres.start()

        def write() -> dict | None:
            try:
                return c.update_route(meshName="shop", virtualRouterName="catalog", routeName="main",
                                      spec=route({"v1": 1, "v2": 0}))
            except ClientError:
                return None

        updated = wait_until(write, 30, interval=0.5, message="a write after PostgreSQL came back")
        _, connected = wait_until(scene.connected, 10, message="Envoy connected")
        scene.converged(connected, changed_from=before, types=("rds",))
        traffic.wait_for(50)
    finally:
        traffic.finish()
    assert refused.value.response["Error"]["Code"] == "ServiceUnavailableException", refused.value
    assert "store is unavailable" in str(refused.value), refused.value
    assert updated["route"]["metadata"]["version"] == 2  # the refused write changed nothing
    assert traffic.failures == [], traffic.failures[:10]
    assert scene.envoy.stats(r"cluster_manager\.cluster_(added|removed)") == {
        k: v for k, v in stats_before.items() if k.startswith("cluster_manager.cluster_") and not k.endswith("modified")}
    counts = count_split(scene.url, 200, host_header=scene.host_header)
    assert not split_violations(counts, {"v1": 1}), counts
