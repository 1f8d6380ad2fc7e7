"""Incremental == cold, byte for byte: random model edits through the real ``ControlPlane``.

The server never recompiles a node from scratch after a change: it carries every untouched
piece over (``CompileCache.successor``), rebuilds the changed ones once, and reassembles the
snapshots whose dependencies the change touched, keeping the others as they were. This test
holds that to the only standard that matters: after every edit of a random sequence, every
node placement the control plane serves has exactly the bytes and versions a cold compile
of the new model (fresh cache, messages serialized anew) gives.

The edits are generic (any number in any spec nudged, any list item or optional field
dropped, any document removed or cloned under a new name) over every golden case
(``tests/golden/<case>/model``, found as ``test_golden.py`` finds them): there is one case
per compiler feature, so a feature's new case is in this property without touching this
file. Native cases are edited as their YAML documents; CloudFormation, Kubernetes and
Terraform cases are loaded through the loader once and edited as the native documents of
what it loaded. Edits that make the model invalid are rejected by the loader, as they would
be in production, and the sequence goes on from the last good model.
"""
from __future__ import annotations

import asyncio
import copy
import random

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from mesh_model import ModelError, load_paths, load_texts
from mesh_model.compiler import Placement, compile_node
from mesh_model.compiler.placement import METADATA_KEY
from mesh_model.node_id import NodeRef
from xds_server.cache.snapshot import Snapshot
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.store.file_model import resources_of
from xds_server.api.resources import native
from xds_server.controlplane.control_plane import ControlPlane

from tests.paths import GOLDEN, golden_model

# Every golden case (a folder with a case.yaml, as tests/golden/test_golden.py discovers them).
MODELS = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.yaml").exists())
PLACEMENTS = [
    Placement(),
    Placement(explicit=True, ingress_address="127.0.0.2", app_address="127.0.0.1", egress_address="127.0.0.3"),
]
EDITS_PER_SEQUENCE = 6


def _native_documents(folder) -> list[dict] | None:
    """The documents of a model folder in meshplane's native form, or ``None`` when it holds
    anything else (a CloudFormation template, Kubernetes manifests, Terraform files)."""
    docs = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml"):
            return None
        try:
            file_docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:  # e.g. CloudFormation's !Sub and !GetAtt tags
            return None
        for doc in file_docs:
            if not doc:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" in doc:
                return None
            docs.append(doc)
    return docs


def _placements(name: str) -> list[Placement]:
    """The property's two placements plus those the case renders (a tracer, other addresses)."""
    spec = yaml.safe_load((GOLDEN / name / "case.yaml").read_text())
    case = [Placement.from_metadata({METADATA_KEY: entry.get("placement", {})}) for entry in spec["nodes"]]
    return list(dict.fromkeys(PLACEMENTS + case))


def _documents(name: str) -> list[dict]:
    folder = golden_model(name)
    docs = _native_documents(folder)
    if docs is None:  # another input format: the native documents of what the loader made of it
        docs = [native(resource) for resource in resources_of(load_paths([folder]))]
    return docs


def _texts(docs: list[dict]) -> list[tuple[str, str]]:
    return [(f"doc-{i}.yaml", yaml.safe_dump(doc, sort_keys=False)) for i, doc in enumerate(docs)]


class _ModelSource:
    """A ``ControlPlane`` model source holding whatever model the test last loaded."""

    def __init__(self, model):
        self.model = model

    def load(self):
        return self.model

    def status(self) -> dict:
        return {}


def _leaves(value, path=()):
    """Every (path, value) of a document's spec tree, containers included."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))


def _parent(doc, path):
    for step in path[:-1]:
        doc = doc[step]
    return doc


def _edit(docs: list[dict], rng: random.Random) -> str:
    """Apply one random edit in place; returns what it did (for the failure message)."""
    kind = rng.choice(["number", "number", "number", "drop", "drop", "remove", "clone", "flip"])
    if not docs:  # a small case can lose every document
        return "nothing"
    index = rng.randrange(len(docs))
    doc = docs[index]
    if kind == "remove":
        docs.pop(index)
        return f"remove {doc.get('kind')} {doc.get('name')}"
    if kind == "clone":
        twin = copy.deepcopy(doc)
        twin["name"] = f"{doc.get('name', 'x')}-twin"
        docs.append(twin)
        return f"clone {doc.get('kind')} {doc.get('name')}"
    spec_paths = [(p, v) for p, v in _leaves(doc.get("spec")) if p]
    if kind == "number":
        candidates = [(p, v) for p, v in spec_paths if isinstance(v, int) and not isinstance(v, bool)]
    elif kind == "flip":
        candidates = [(p, v) for p, v in spec_paths if isinstance(v, bool) or v in ("DROP_ALL", "ALLOW_ALL", "STRICT", "PERMISSIVE", "DISABLED")]
    else:
        candidates = [(p, v) for p, v in spec_paths if len(p) >= 1]
    if not candidates:
        return "nothing"
    path, value = rng.choice(candidates)
    parent = _parent(doc["spec"], path)
    if kind == "number":
        parent[path[-1]] = max(0, value + rng.choice([-1, 1, 7]))
    elif kind == "flip":
        flips = {True: False, False: True, "DROP_ALL": "ALLOW_ALL", "ALLOW_ALL": "DROP_ALL",
                 "STRICT": "PERMISSIVE", "PERMISSIVE": "DISABLED", "DISABLED": "STRICT"}
        parent[path[-1]] = flips[value]
    else:
        del parent[path[-1]]
    return f"{kind} {doc.get('kind')} {doc.get('name')} spec.{'.'.join(map(str, path))}"


def _nodes(model) -> list[NodeRef]:
    refs = []
    for mesh in model.meshes.values():
        refs += [NodeRef(mesh.name, "virtualNode", name) for name in sorted(mesh.virtual_nodes)]
        refs += [NodeRef(mesh.name, "virtualGateway", name) for name in sorted(mesh.virtual_gateways)]
    return refs


def _envoy_node(ref: NodeRef, placement: Placement) -> base_pb2.Node:
    node = base_pb2.Node(id=ref.node_id)
    json_format.ParseDict({METADATA_KEY: placement.to_metadata()}, node.metadata)
    return node


def _content(snapshot: Snapshot) -> dict:
    return {t: (ts.version, {name: (packed.type_url, packed.value) for name, packed in ts.resources.items()})
            for t, ts in snapshot.types.items()}


@pytest.mark.parametrize("name", MODELS)
# a seed stands for a whole edit sequence: shrinking it means nothing, the failure message says what was applied
@settings(max_examples=12, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate))
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_incremental_equals_cold_after_random_edits(name, seed):
    rng = random.Random(seed)
    docs = _documents(name)
    model = load_texts(_texts(docs))
    source = _ModelSource(model)
    cache = SnapshotCache()
    control = ControlPlane([], cache, source=source)
    keys = {(ref, placement): control.resolve(_envoy_node(ref, placement)) for ref in _nodes(model) for placement in _placements(name)}
    applied = []
    for _ in range(EDITS_PER_SEQUENCE):
        candidate = copy.deepcopy(docs)
        what = _edit(candidate, rng)
        try:
            new_model = load_texts(_texts(candidate))
        except ModelError:
            continue  # refused, as the server would: the last good model stays
        docs, source.model = candidate, new_model
        applied.append(what)
        assert asyncio.run(control.reload()), control.last_error
        present = set(_nodes(new_model))
        for (ref, placement), key in keys.items():
            if ref not in present:
                continue  # a removed node keeps its last config (and a warning)
            cold = Snapshot.from_resources(compile_node(new_model, ref, placement))
            assert _content(cache.get(key)) == _content(cold), f"{ref.node_id} at {placement.key} after {applied}"
