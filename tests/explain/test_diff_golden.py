"""``diff`` golden tests: an edit of every resource kind, applied to base.yaml, against the
expected output in golden_diff/expected/. Regenerate after an intended change with

    MESHPLANE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/explain/test_diff_golden.py

and review the result like code.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml

from mesh_model import load_texts
from mesh_model.diff import diff_models, render_text

HERE = Path(__file__).parent / "golden_diff"
UPDATE = os.environ.get("MESHPLANE_UPDATE_GOLDEN") == "1"
EDITS = yaml.safe_load((HERE / "edits.yaml").read_text())
KINDS = ("Mesh", "VirtualService", "VirtualRouter", "Route", "VirtualNode", "VirtualGateway", "GatewayRoute")


def apply_edit(base: str, edit: dict) -> str:
    text = base
    for old, new in edit.get("replace", []):
        assert old in text, f"edit {edit['name']}: {old!r} not in base.yaml"
        text = text.replace(old, new, 1)
    if edit.get("append"):
        text += "\n---\n" + edit["append"]
    return text


def test_every_resource_kind_is_edited():
    assert {e["kind"] for e in EDITS} == set(KINDS)


@pytest.mark.parametrize("edit", EDITS, ids=[e["name"] for e in EDITS])
def test_diff_golden(edit):
    base = (HERE / "base.yaml").read_text()
    old = load_texts([("base.yaml", base)])
    new = load_texts([("edited.yaml", apply_edit(base, edit))])
    diffs = diff_models(old, new)
    actual = render_text(diffs)
    assert diffs, f"edit {edit['name']} changed no node"
    expected_path = HERE / "expected" / f"{edit['name']}.txt"
    if UPDATE:
        expected_path.parent.mkdir(exist_ok=True)
        expected_path.write_text(actual)
    assert expected_path.exists(), f"no golden file {expected_path}; run with MESHPLANE_UPDATE_GOLDEN=1"
    expected = expected_path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(expected_path), "actual"))
        pytest.fail(f"diff output differs from {expected_path}:\n{diff}")


def test_no_change_is_empty():
    base = (HERE / "base.yaml").read_text()
    assert diff_models(load_texts([("a.yaml", base)]), load_texts([("b.yaml", base)])) == []
    assert render_text([]) == "no changes\n"
