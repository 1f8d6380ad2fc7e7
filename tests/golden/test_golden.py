"""Golden (snapshot) tests: model folders under tests/golden/<case>/ -> expected xDS resources.

Each case has ``model/`` (native meshplane YAML), ``case.yaml`` (which nodes, with which
placement) and ``expected/<node>--<mode>.yaml`` holding exactly what
``meshplane render --resources`` prints for it. Regenerate after an intended change with

    MESHPLANE_UPDATE_GOLDEN=1 make test        (or pytest tests/test_golden.py)

and review the diff like code. Every expected output is also run through
``envoy --mode validate`` as a static bootstrap, so a golden file can never bless a config
that Envoy would reject.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml

from mesh_model import load_paths
from mesh_model.render import dump_yaml, resources_document, static_bootstrap
from mesh_model.compiler import Placement, compile_node
from mesh_model.node_id import parse_node_id
from tests.harness.envoy import validate_config
from tests.paths import GOLDEN, REPO

UPDATE = os.environ.get("MESHPLANE_UPDATE_GOLDEN") == "1"


def _cases():
    for case_dir in sorted(p for p in GOLDEN.iterdir() if (p / "case.yaml").exists()):
        spec = yaml.safe_load((case_dir / "case.yaml").read_text())
        for entry in spec["nodes"]:
            placement = Placement.from_metadata({"meshplane": entry.get("placement", {})})
            node = parse_node_id(entry["node"])
            mode = "explicit" if placement.explicit else "transparent"
            yield pytest.param(case_dir, node, placement, id=f"{case_dir.name}:{node.name}:{mode}")


def _expected_path(case_dir: Path, node, placement: Placement) -> Path:
    mode = "explicit" if placement.explicit else "transparent"
    return case_dir / "expected" / f"{node.name}--{mode}.yaml"


@pytest.mark.parametrize("case_dir,node,placement", list(_cases()))
def test_golden_resources(case_dir, node, placement):
    model = load_paths([case_dir / "model"])
    resources = compile_node(model, node, placement)
    actual = dump_yaml(resources_document(resources))
    expected_path = _expected_path(case_dir, node, placement)
    if UPDATE:
        expected_path.parent.mkdir(exist_ok=True)
        expected_path.write_text(actual)
    assert expected_path.exists(), f"no golden file {expected_path}; run with MESHPLANE_UPDATE_GOLDEN=1"
    expected = expected_path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(expected_path), "compiled"))
        pytest.fail(f"compiled resources differ from {expected_path}:\n{diff}")


@pytest.mark.parametrize("case_dir,node,placement", list(_cases()))
def test_golden_output_passes_envoy_validate(case_dir, node, placement, tmp_path, monkeypatch):
    """The checked-in golden file itself (not a fresh compile) must be a config Envoy accepts."""
    monkeypatch.chdir(REPO)  # certificate paths in golden models are relative to the repo root
    document = yaml.safe_load(_expected_path(case_dir, node, placement).read_text())
    from google.protobuf import json_format
    from mesh_model.compiler import type_urls
    from mesh_model.compiler.common import cluster_pb2, endpoint_pb2, listener_pb2, route_pb2

    message_types = {
        type_urls.CLUSTER: cluster_pb2.Cluster,
        type_urls.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        type_urls.LISTENER: listener_pb2.Listener,
        type_urls.ROUTE: route_pb2.RouteConfiguration,
    }
    resources = {type_urls.SECRET: {}}
    for type_url, message_type in message_types.items():
        items = document[type_urls.PLURAL_NAMES[type_url]]
        parsed = [json_format.ParseDict(item, message_type()) for item in items]
        resources[type_url] = {m.name if hasattr(m, "name") and m.name else m.cluster_name: m for m in parsed}
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
