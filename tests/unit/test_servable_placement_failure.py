"""Defence in depth (issue 17): one node placement that cannot be compiled stops nobody else.

Validation should make every accepted model compilable; if a placement's compile still
fails (here: injected for one node id), that placement keeps its last good snapshot and is
reported (log line, ``placementFailures`` in the control plane's /status block, the
``meshplane_placement_compile_failures`` metrics), while every other node, of the same
mesh and of another, gets the new model over its real ADS stream. Once it compiles again,
it catches up at the next reload and the report clears.
"""
from __future__ import annotations

import logging

import grpc

from harness import model_builders as mb
from tests.conformance.test_ads_sotw import ads_server, run
from tests.xds_client import AdsClient, StreamClosed, make_node
from xds_server.cache.snapshot import TYPE_CLUSTER
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane import control_plane as control_plane_module
from xds_server.controlplane.control_plane import ControlPlane
from xds_server.observability import metrics

BROKEN = "mesh/m/virtualNode/a"


def _model(target: str, other_backends: list[str]) -> list[dict]:
    return mb.documents(
        mb.mesh("m"),
        mb.virtual_service("m", "svc.m", router="r"),
        mb.virtual_router("m", "r", 8080),
        mb.route("m", "r", "main", {target: 100}),
        mb.virtual_node("m", "b1", port=8080, host="b1.m.local"),
        mb.virtual_node("m", "b2", port=8080, host="b2.m.local"),
        mb.virtual_node("m", "a", backends=["svc.m"]),
        mb.virtual_node("m", "c", backends=["svc.m"]),
        mb.mesh("o"),
        mb.service_with_node("o", "one.o", "one", host="one.o.local", port=80),
        mb.service_with_node("o", "two.o", "two", host="two.o.local", port=80),
        mb.virtual_node("o", "x", backends=other_backends),
    )


def _clusters(resp) -> set[str]:
    from envoy.config.cluster.v3 import cluster_pb2

    names = set()
    for packed in resp.resources:
        message = cluster_pb2.Cluster()
        packed.Unpack(message)
        names.add(message.name)
    return names


async def _cds(client: AdsClient, timeout: float = 5.0) -> set[str]:
    resp = await client.recv(timeout)
    client.ack(resp)
    while resp.version_info.endswith("+draining"):  # SotW removals come last
        resp = await client.recv(timeout)
        client.ack(resp)
    return _clusters(resp)


def test_one_failing_placement_keeps_its_config_and_the_others_converge(tmp_path, monkeypatch, caplog):
    model = tmp_path / "model" / "mesh.yaml"
    mb.write_model(model, _model("b1", ["one.o"]))
    real_compile = control_plane_module.compile_snapshot_and_dependencies
    broken = {"on": False}

    def compile_or_fail(model_, node, placement, cache=None, previous=None):
        if broken["on"] and node.node_id == BROKEN:
            raise RuntimeError("injected: this placement cannot be compiled")
        return real_compile(model_, node, placement, cache, previous)

    monkeypatch.setattr(control_plane_module, "compile_snapshot_and_dependencies", compile_or_fail)

    async def scenario():
        cache = SnapshotCache()
        control = ControlPlane([str(model.parent)], cache)
        async with ads_server(cache, resolver=control.resolve) as (target, _status):
            clients = {node: AdsClient(target, node=make_node(node)) for node in (BROKEN, "mesh/m/virtualNode/c", "mesh/o/virtualNode/x")}
            try:
                for client in clients.values():
                    await client.start()
                    client.send(TYPE_CLUSTER)
                first = {node: await _cds(client) for node, client in clients.items()}
                assert any("b1" in name for name in first[BROKEN]) and not any("b2" in name for name in first[BROKEN])
                before_broken = cache.get(next(k for k in control.keys if k.startswith(BROKEN)))

                # a's compile now fails; the same reload moves m's route to b2 and gives o/x a backend
                broken["on"] = True
                mb.write_model(model, _model("b2", ["one.o", "two.o"]))
                with caplog.at_level(logging.ERROR, logger="meshplane.control"):
                    assert await control.reload() is True
                c_now = await _cds(clients["mesh/m/virtualNode/c"])
                assert any("b2" in name for name in c_now) and not any("b1" in name for name in c_now)
                x_now = await _cds(clients["mesh/o/virtualNode/x"])
                assert any("two" in name for name in x_now), x_now
                await clients[BROKEN].expect_silence(0.3)  # nothing new for a: it keeps its config
                key = next(k for k in control.keys if k.startswith(BROKEN))
                assert cache.get(key) is before_broken
                failures = control.status()["placementFailures"]
                assert [f["node"] for f in failures] == [BROKEN]
                assert "RuntimeError: injected" in failures[0]["error"]
                assert any(BROKEN in r.getMessage() and "injected" in r.getMessage() for r in caplog.records)
                assert "meshplane_placement_compile_failures 1" in metrics.DEFAULT.lines()

                # a new Envoy whose config cannot be compiled is refused (UNAVAILABLE), nobody else
                newcomer = AdsClient(target, node=make_node(BROKEN, cluster="other-placement"))
                await newcomer.start()
                newcomer.node.metadata.update({"meshplane": {"ingressAddress": "127.0.0.9", "explicit": True,
                                                             "appAddress": "127.0.0.1", "egressAddress": "127.0.0.10"}})
                newcomer.send(TYPE_CLUSTER)
                try:
                    await newcomer.recv(5.0)
                    raise AssertionError("a node whose config does not compile was served")
                except StreamClosed as exc:
                    assert exc.code == grpc.StatusCode.UNAVAILABLE and "cannot be compiled" in (exc.details or "")
                finally:
                    await newcomer.close()

                # fixed: the next reload (even without a change) brings a up to date
                broken["on"] = False
                assert await control.reload() is True
                a_now = await _cds(clients[BROKEN])
                assert any("b2" in name for name in a_now) and not any("b1" in name for name in a_now)
                assert control.status()["placementFailures"] == []
                assert "meshplane_placement_compile_failures 0" in metrics.DEFAULT.lines()
            finally:
                for client in clients.values():
                    await client.close()

    run(scenario(), timeout=60)
