"""``serve`` freezes the heap after every reload (``ControlPlane._settle_heap``): that is only
safe if a replaced model is freed by reference counting alone, without the cycle collector."""
from __future__ import annotations

import asyncio
import gc
import shutil
import weakref

from envoy.config.core.v3 import base_pb2

from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane
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
