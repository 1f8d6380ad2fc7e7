"""Golden (snapshot) tests: model folders under tests/golden/<case>/ -> expected xDS resources.

Each case has ``model/`` (native meshplane YAML), ``case.yaml`` (which nodes, with which
placement) and ``expected/<node>--<mode>.yaml`` holding exactly what
``meshplane render --resources`` prints for it. They are snapshots of meshplane's own pytest
plugin (``meshplane_snapshot``, ``mesh_model.testing``): the same comparison, and a mismatch
shows ``meshplane diff``'s output. Regenerate after an intended change with

    MESHPLANE_UPDATE_GOLDEN=1 make test        (or pytest tests/golden --meshplane-update)

and review the diff like code. Every expected output is also run through
``envoy --mode validate`` as a static bootstrap, so a golden file can never bless a config
that Envoy would reject.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mesh_model.render import dump_yaml, static_bootstrap
from mesh_model.compiler import Placement
from mesh_model.node_id import parse_node_id
from mesh_model.testing.snapshots import resources_from_document, snapshot_name
from harness.envoy import validate_config
from tests.paths import GOLDEN, REPO

UPDATE = os.environ.get("MESHPLANE_UPDATE_GOLDEN") == "1"
GOLDEN_NAME = "{node}--{mode}.yaml"  # expected/<node>--<mode>.yaml: one mesh per case


def _cases():
    for case_dir in sorted(p for p in GOLDEN.iterdir() if (p / "case.yaml").exists()):
        spec = yaml.safe_load((case_dir / "case.yaml").read_text())
        for entry in spec["nodes"]:
            placement = Placement.from_metadata({"meshplane": entry.get("placement", {})})
            node = parse_node_id(entry["node"])
            mode = "explicit" if placement.explicit else "transparent"
            yield pytest.param(case_dir, node, placement, id=f"{case_dir.name}:{node.name}:{mode}")


def _expected_path(case_dir: Path, node, placement: Placement) -> Path:
    return case_dir / "expected" / snapshot_name(node.node_id, placement, GOLDEN_NAME)


@pytest.fixture
def golden_snapshot(meshplane_snapshot):
    """The plugin's snapshot fixture; ``MESHPLANE_UPDATE_GOLDEN=1`` acts as ``--meshplane-update``."""
    meshplane_snapshot.update = meshplane_snapshot.update or UPDATE
    return meshplane_snapshot


@pytest.mark.parametrize("case_dir,node,placement", list(_cases()))
def test_golden_resources(golden_snapshot, case_dir, node, placement):
    golden_snapshot.check(case_dir / "model", node.node_id, _expected_path(case_dir, node, placement), placement=placement)


@pytest.mark.parametrize("case_dir,node,placement", list(_cases()))
def test_golden_output_passes_envoy_validate(case_dir, node, placement, tmp_path, monkeypatch):
    """The checked-in golden file itself (not a fresh compile) must be a config Envoy accepts."""
    monkeypatch.chdir(REPO)  # certificate paths in golden models are relative to the repo root
    from mesh_model.compiler import type_urls

    document = yaml.safe_load(_expected_path(case_dir, node, placement).read_text())
    resources = resources_from_document(document)  # as the snapshot plugin reads a snapshot back
    resources[type_urls.SECRET] = {}  # SDS secrets are not part of a static bootstrap here
    config = tmp_path / "bootstrap.yaml"
    config.write_text(dump_yaml(static_bootstrap(node, resources)))
    ok, output = validate_config(config)
    assert ok, f"envoy --mode validate rejected {case_dir.name}/{node.name}:\n{output}"


def test_compile_is_deterministic_across_processes(tmp_path):
    """Same model -> byte-identical resources in a fresh interpreter (no hash-seed or dict-order leaks)."""
    import subprocess
    import sys

    script = (
        "import sys, hashlib;"
        "from mesh_model import load_paths;"
        "from mesh_model.compiler import compile_node, Placement;"
        "from mesh_model.node_id import parse_node_id;"
        "m = load_paths([sys.argv[1]]);"
        "r = compile_node(m, parse_node_id('mesh/retail/virtualNode/front'), Placement());"
        "h = hashlib.sha256();"
        "[h.update(n.encode() + msg.SerializeToString(deterministic=True)) for t in sorted(r) for n, msg in r[t].items()];"
        "print(h.hexdigest())"
    )
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script, str(GOLDEN / "retail" / "model")], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests
