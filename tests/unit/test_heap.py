"""``serve`` freezes the heap after every reload (``controlplane.heap.HeapPolicy``): that is only
safe if a replaced model is freed by reference counting alone, without the cycle collector."""
from __future__ import annotations

import asyncio
import gc
import shutil
import weakref

from envoy.config.core.v3 import base_pb2

from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane
from xds_server.controlplane.heap import HeapPolicy
from tests.paths import GOLDEN

NODES = ["front", "catalog-v1", "catalog-v2", "cart", "recommend"]


def test_a_replaced_model_and_its_cache_are_freed_without_the_cycle_collector(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(GOLDEN / "retail" / "model", model_dir)
    control = ControlPlane([str(model_dir)], SnapshotCache())
    keys = {name: control.resolve(base_pb2.Node(id=f"mesh/retail/virtualNode/{name}")) for name in NODES}
    routers = model_dir / "routers.yaml"
    gc.collect()
    gc.disable()
    try:
        for weights in ("weight: 70}", "weight: 60}"):
            old_model, old_cache = weakref.ref(control.model), weakref.ref(control.compile_cache)
            old_front = weakref.ref(control.bases[keys["front"]])  # front calls the edited router
            text = routers.read_text()
            routers.write_text(text.replace("weight: 90}" if "weight: 90}" in text else "weight: 70}", weights, 1))
            assert asyncio.run(control.reload())
            assert old_model() is None, "the replaced model is still alive: a reference cycle (or a leak) holds it"
            assert old_cache() is None, "the replaced compile cache is still alive"
            assert old_front() is None, "front's replaced snapshot is still alive"
    finally:
        gc.enable()


def test_heap_policy_pauses_the_collector_while_building_freezes_what_it_built_and_settles_every_settle_every_compiles():
    policy = HeapPolicy(True, settle_every=3)
    assert gc.isenabled()
    frozen_before = gc.get_freeze_count()
    try:
        with policy.building():
            with policy.building():  # nested (a reload inside start-up's pause): still paused after the inner one
                assert not gc.isenabled()
            assert not gc.isenabled()
            built = [[] for _ in range(100)]  # what a build leaves alive: frozen when it ends
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_before + len(built), "what the build left alive was not frozen"
        frozen_after_build = gc.get_freeze_count()
        policy.compiled(2)
        assert gc.get_freeze_count() == frozen_after_build, "settled before settle_every compiles"
        gc.disable()  # no collection of its own may free the cycle below: only the settle's
        probe = weakref.ref(cyclic := _Holder())
        cyclic.me = cyclic  # cyclic garbage once dropped: collected by the settle, not frozen
        del cyclic
        policy.compiled(1)
        assert probe() is None, "cyclic garbage was frozen instead of collected"
        assert gc.get_freeze_count() > frozen_after_build
    finally:
        gc.unfreeze()
        gc.enable()


def _load_that_fails(probe: list) -> None:
    """A model load rejecting its input the usual way: the error, raised from a local, holds
    this frame in its traceback, and the frame holds the error and the partial model."""
    partial = _Holder()  # the half-loaded model, only reachable from this frame
    probe.append(weakref.ref(partial))
    error = ValueError("invalid model")
    raise error


def test_a_failed_build_freezes_nothing_so_the_garbage_it_leaves_in_reference_cycles_is_collected():
    # a rejected reload must not keep its half-loaded model for good: frozen, the cycle
    # error -> traceback -> frame -> error would never be looked at again
    policy = HeapPolicy(True)
    probe: list = []
    try:
        try:
            with policy.building():
                _load_that_fails(probe)
        except ValueError:
            pass
        assert gc.isenabled(), "the collector stays paused after a failed build"
        gc.collect()
        assert probe[0]() is None, "a failed build's cyclic garbage was frozen"
    finally:
        gc.unfreeze()
        gc.enable()


def test_a_disabled_heap_policy_never_touches_the_collector():
    policy = HeapPolicy(False, settle_every=1)
    frozen_before = gc.get_freeze_count()
    with policy.building():
        assert gc.isenabled()
    policy.compiled(5)
    policy.settle(collect=True)
    assert gc.get_freeze_count() == frozen_before


class _Holder:
    """A weak-referenceable object that can point at itself (a reference cycle)."""
