"""Live Cloud Map without processes: the poller's diff, its keep-last-good rule, the overlay
(documents win) and that a change of instances recompiles only EDS of the nodes that call it."""
from __future__ import annotations

import asyncio

from envoy.config.core.v3 import base_pb2

from mesh_model.compiler import Placement
from mesh_model.node_id import parse_node_id
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.cloudmap import HEALTH_STATUS, CloudMapPoller, canonical
from xds_server.controlplane.control_plane import ControlPlane, compile_snapshot
from harness.model_builders import (backend, cloud_map_service, mesh, virtual_node, virtual_service, write_model)

NS = "shop.local"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


class FakeCloudMap:
    """``discover_instances`` over a dict of services; ``down`` raises like an unreachable endpoint."""

    def __init__(self):
        self.services: dict[tuple[str, str], list[dict]] = {}
        self.down = False
        self.calls: list[dict] = []

    def register(self, service: str, instance_id: str, ip: str, port: int | None = None, **attributes):
        attrs = {"AWS_INSTANCE_IPV4": ip, **attributes}
        if port is not None:
            attrs["AWS_INSTANCE_PORT"] = str(port)
        self.services.setdefault((NS, service), []).append({"InstanceId": instance_id, "Attributes": attrs})

    def deregister(self, service: str, instance_id: str):
        self.services[(NS, service)] = [i for i in self.services[(NS, service)] if i["InstanceId"] != instance_id]

    def discover_instances(self, **params):
        self.calls.append(params)
        if self.down:
            raise ConnectionError("Could not connect to the endpoint URL")
        found = self.services.get((params["NamespaceName"], params["ServiceName"]), [])
        query = params.get("QueryParameters") or {}
        return {"Instances": [i for i in found if all(i["Attributes"].get(k) == v for k, v in query.items())]}


def model_docs(*extra):
    return [
        mesh("shop"),
        virtual_service("shop", "recommend.shop.local", node="recommend"),
        virtual_service("shop", "catalog.shop.local", node="catalog"),
        virtual_node("shop", "front", port=8080, host="front.local",
                     backends=[backend("recommend.shop.local"), backend("catalog.shop.local")]),
        virtual_node("shop", "web", port=8080, host="web.local", backends=["catalog.shop.local"]),
        virtual_node("shop", "recommend", port=8080, serviceDiscovery={"awsCloudMap": {
            "namespaceName": NS, "serviceName": "recommend", "attributes": [{"key": "stage", "value": "live"}]}}),
        virtual_node("shop", "catalog", port=8080, serviceDiscovery={"awsCloudMap": {"namespaceName": NS, "serviceName": "catalog"}}),
        cloud_map_service(NS, "catalog", {"cat-1": "10.0.0.1"}),  # a document: the live answer is not asked for
        *extra,
    ]


def endpoints(snapshot) -> dict[str, list[tuple[str, int]]]:
    from envoy.config.endpoint.v3 import endpoint_pb2

    out = {}
    for name, packed in snapshot.get(EDS).resources.items():
        cla = endpoint_pb2.ClusterLoadAssignment()
        packed.Unpack(cla)
        out[name] = sorted((e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
                           for group in cla.endpoints for e in group.lb_endpoints)
    return out


def recommend_endpoints(snapshot):
    return next(v for k, v in endpoints(snapshot).items() if "recommend" in k)


def setup(tmp_path, fake):
    model_file = tmp_path / "model" / "mesh.yaml"
    write_model(model_file, model_docs())
    poller = CloudMapPoller(fake, interval=0.01)
    cache = SnapshotCache()
    control = ControlPlane([str(model_file.parent)], cache, overlay=poller.overlay)
    return poller, control, cache


def test_canonical_skips_unusable_instances_and_ignores_order():
    a, skipped = canonical([{"InstanceId": "b", "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.2", "x": "1"}},
                            {"InstanceId": "a", "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.1"}},
                            {"InstanceId": "noip", "Attributes": {"stage": "live"}},
                            {"InstanceId": "badport", "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.3", "AWS_INSTANCE_PORT": "x"}}])
    b, _ = canonical([{"InstanceId": "a", "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.1"}},
                      {"InstanceId": "b", "Attributes": {"x": "1", "AWS_INSTANCE_IPV4": "10.0.0.2"}}])
    assert a == b and [i for i, _ in a] == ["a", "b"]
    assert len(skipped) == 2 and "noip" in skipped[0] and "badport" in skipped[1]


def test_targets_are_the_nodes_services_without_a_document(tmp_path):
    fake = FakeCloudMap()
    poller, control, _ = setup(tmp_path, fake)
    assert poller.targets() == {(NS, "recommend"): frozenset({(("stage", "live"),)})}
    fake.register("recommend", "r1", "10.1.0.1", 9000, stage="live")
    assert poller.poll_once() is True
    (call,) = fake.calls
    assert call == {"NamespaceName": NS, "ServiceName": "recommend", "HealthStatus": HEALTH_STATUS, "MaxResults": 1000,
                    "QueryParameters": {"stage": "live"}}
    assert HEALTH_STATUS == "HEALTHY"
    status = poller.status()
    assert status["fromDocuments"] == [f"{NS}/catalog"]
    assert status["services"][f"{NS}/recommend"]["instances"] == 1


def test_poll_diff_keep_last_good_and_only_eds_changes(tmp_path, caplog):
    fake = FakeCloudMap()
    poller, control, cache = setup(tmp_path, fake)
    keys = {n: control.resolve(base_pb2.Node(id=f"mesh/shop/virtualNode/{n}")) for n in ("front", "web", "recommend")}
    assert recommend_endpoints(cache.get(keys["front"])) == []  # nothing asked yet: an empty assignment

    fake.register("recommend", "r1", "10.1.0.1", 9000, stage="live")
    fake.register("recommend", "r2", "10.1.0.2", 9000, stage="dark")  # filtered out by the node's attributes
    assert poller.poll_once() is True
    before = {n: cache.get(k) for n, k in keys.items()}
    assert asyncio.run(control.reload())
    front = cache.get(keys["front"])
    assert recommend_endpoints(front) == [("10.1.0.1", 9000)]
    changed = {t for t, v in front.versions().items() if before["front"].versions().get(t) != v}
    assert changed == {EDS}, "a change of instances changes only EDS"
    assert cache.get(keys["web"]) is before["web"], "web does not call recommend: not even recompiled"
    catalog = next(v for k, v in endpoints(front).items() if "catalog" in k)
    assert catalog == [("10.0.0.1", 8080)], "the document, not Cloud Map, gives catalog"

    assert poller.poll_once() is False, "the same answer is no change"

    fake.register("recommend", "r3", "10.1.0.3", 9000, stage="live")
    assert poller.poll_once() is True
    asyncio.run(control.reload())
    assert recommend_endpoints(cache.get(keys["front"])) == [("10.1.0.1", 9000), ("10.1.0.3", 9000)]

    # Cloud Map unreachable: the last good answer stays, logged once, in the status
    fake.down = True
    caplog.clear()
    with caplog.at_level("WARNING", logger="meshplane.cloudmap"):
        assert poller.poll_once() is False
        assert poller.poll_once() is False
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1
    assert "keeping its last good 2 instance(s)" in caplog.records[0].getMessage()
    asyncio.run(control.reload())
    assert recommend_endpoints(cache.get(keys["front"])) == [("10.1.0.1", 9000), ("10.1.0.3", 9000)]
    service = poller.status()["services"][f"{NS}/recommend"]
    assert service["instances"] == 2 and "Could not connect" in service["lastError"] and not service["healthy"]
    assert service["lastSuccess"] is not None

    # back: a deregistration is seen
    fake.down = False
    fake.deregister("recommend", "r1")
    with caplog.at_level("INFO", logger="meshplane.cloudmap"):
        assert poller.poll_once() is True
    assert any("answers again" in r.getMessage() for r in caplog.records)
    asyncio.run(control.reload())
    assert recommend_endpoints(cache.get(keys["front"])) == [("10.1.0.3", 9000)]
    assert poller.status()["services"][f"{NS}/recommend"]["healthy"]

    # everything deregistered: an empty assignment (no hosts), not the last answer
    fake.deregister("recommend", "r3")
    assert poller.poll_once() is True
    asyncio.run(control.reload())
    assert recommend_endpoints(cache.get(keys["front"])) == []


def test_a_document_wins_over_the_live_answer(tmp_path):
    fake = FakeCloudMap()
    poller, control, cache = setup(tmp_path, fake)
    fake.register("recommend", "r1", "10.1.0.1", 9000, stage="live")
    poller.poll_once()
    asyncio.run(control.reload())
    model_file = tmp_path / "model" / "mesh.yaml"
    doc = cloud_map_service(NS, "recommend", {"pinned": "10.9.9.9"})
    doc["spec"]["instances"][0]["attributes"]["stage"] = "live"
    write_model(model_file, model_docs(doc))
    asyncio.run(control.reload())
    snapshot = compile_snapshot(control.model, parse_node_id("mesh/shop/virtualNode/front"), Placement())
    assert recommend_endpoints(snapshot) == [("10.9.9.9", 8080)]
    assert poller.targets() == {}
    assert poller.poll_once() is True  # the live answer is dropped
    assert poller.results == {}
