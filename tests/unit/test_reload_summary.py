"""`serve` logs, on every reload, the one-line `meshplane diff` summary of each node it recompiled."""
from __future__ import annotations

import asyncio
import logging
import shutil

from envoy.config.core.v3 import base_pb2

from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane import control_plane
from xds_server.controlplane.control_plane import ControlPlane
from tests.paths import GOLDEN

RETAIL = GOLDEN / "retail" / "model"
NODES = ["front", "catalog-v1", "catalog-v2", "cart", "recommend"]


def _plane(tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    plane = ControlPlane([str(model_dir)], SnapshotCache())
    for name in NODES:
        plane.resolve(base_pb2.Node(id=f"mesh/retail/virtualNode/{name}"))
    return plane, model_dir


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _changed_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "meshplane.control" and r.getMessage().startswith(("changed ", "... and "))]


def test_a_weight_edit_logs_the_diff_summary_of_the_node_it_changes(tmp_path, caplog):
    plane, model_dir = _plane(tmp_path)
    _edit(model_dir / "routers.yaml", "weight: 90}", "weight: 50}")
    _edit(model_dir / "routers.yaml", "weight: 10}", "weight: 50}")
    caplog.set_level(logging.INFO, logger="meshplane.control")
    assert asyncio.run(plane.reload()) is True
    lines = _changed_lines(caplog)
    assert len(lines) == 1, lines  # only front calls catalog.retail.local
    line = lines[0]
    assert line.startswith("changed mesh/retail/virtualNode/front: route catalog-router/"), line
    assert "catalog-v1 90% -> 50%" in line and "catalog-v2 10% -> 50%" in line, line


def test_a_reload_without_config_changes_logs_no_summary(tmp_path, caplog):
    plane, model_dir = _plane(tmp_path)
    (model_dir / "mesh.yaml").write_text((model_dir / "mesh.yaml").read_text() + "\n# a comment\n")
    caplog.set_level(logging.INFO, logger="meshplane.control")
    assert asyncio.run(plane.reload()) is True
    assert _changed_lines(caplog) == []


def test_the_summary_is_capped(tmp_path, caplog, monkeypatch):
    plane, model_dir = _plane(tmp_path)
    monkeypatch.setattr(control_plane, "RELOAD_SUMMARY_NODES", 1)
    _edit(model_dir / "mesh.yaml", "type: DROP_ALL", "type: ALLOW_ALL")  # every node's egress changes
    caplog.set_level(logging.INFO, logger="meshplane.control")
    assert asyncio.run(plane.reload()) is True
    lines = _changed_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("changed mesh/retail/virtualNode/"), lines
    assert lines[1].startswith("... and ") and lines[1].endswith("more node(s) changed"), lines
