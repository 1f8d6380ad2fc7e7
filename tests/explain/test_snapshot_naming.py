"""Snapshot file names from a template (meshplane's own golden files use ``{node}--{mode}.yaml``),
and a golden case read as a plugin snapshot: matching as committed, a model edit shows diff's output."""
from __future__ import annotations

import shutil

from mesh_model.testing.snapshots import compare_snapshot, snapshot_name
from tests.paths import GOLDEN

FRONT = "mesh/retail/virtualNode/front"
EXPLICIT = {"mode": "explicit", "ingressAddress": "127.0.0.10", "appAddress": "127.0.0.11", "egressAddress": "127.0.0.12"}


def test_snapshot_name_templates():
    assert snapshot_name(FRONT) == "retail--front--transparent.yaml"  # the plugin's default, unchanged
    assert snapshot_name(FRONT, EXPLICIT, "{node}--{mode}.yaml") == "front--explicit.yaml"
    assert snapshot_name("mesh/shop/virtualGateway/gw", None, "{mesh}/{kind}/{node}.yaml") == "shop/virtualGateway/gw.yaml"


def test_a_golden_case_is_a_plugin_snapshot(tmp_path):
    case = tmp_path / "retail"
    shutil.copytree(GOLDEN / "retail", case)
    expected = case / "expected" / snapshot_name(FRONT, EXPLICIT, "{node}--{mode}.yaml")
    before = expected.read_bytes()
    assert compare_snapshot(case / "model", FRONT, expected, placement=EXPLICIT).status == "match"
    assert compare_snapshot(case / "model", FRONT, expected, placement=EXPLICIT, update=True).status == "match"
    assert expected.read_bytes() == before  # an update with nothing changed leaves the file alone

    routers = case / "model" / "routers.yaml"
    routers.write_text(routers.read_text().replace("weight: 90}", "weight: 50}", 1).replace("weight: 10}", "weight: 50}", 1))
    result = compare_snapshot(case / "model", FRONT, expected, placement=EXPLICIT)
    assert result.status == "mismatch"
    assert "route catalog-router/main: catalog-v1 90% -> 50%, catalog-v2 10% -> 50%" in result.message
    assert ".weight: 90 -> 50" in result.message
    assert compare_snapshot(case / "model", FRONT, expected, placement=EXPLICIT, update=True).status == "written"
    assert compare_snapshot(case / "model", FRONT, expected, placement=EXPLICIT).status == "match"
