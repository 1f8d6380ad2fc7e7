"""``load_documents``: a model from already-parsed native documents, checked like files."""
from __future__ import annotations

import json

import pytest
import yaml

from mesh_model import ModelError, load_paths, load_texts
from mesh_model.load import load_documents
from mesh_model.load.input_limits import Limits
from tests.paths import golden_model


def _documents(folder):
    return [(path.name, doc) for path in sorted(folder.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_documents_build_the_model_their_files_build():
    folder = golden_model("retail")
    assert load_documents(_documents(folder)) == load_paths([folder])


BROKEN = [
    {"kind": "Mesh", "name": "shop", "spec": {}},
    {"kind": "VirtualService", "mesh": "shop", "name": "a.shop.local",
     "spec": {"provider": {"virtualNode": {"virtualNodeName": "nowhere"}}}},
    {"kind": "VirtualNode", "mesh": "shop", "name": "n", "spec": {"listeners": [{"portMapping": {"port": "80", "protocol": "http"}}]}},
    ["not", "a", "mapping"],
]


def _issues(load, *args):
    with pytest.raises(ModelError) as err:
        load(*args)
    return err.value.issues


def test_problems_read_as_those_of_a_file_holding_the_documents():
    from_documents = _issues(load_documents, [("change.json", doc) for doc in BROKEN])
    from_text = _issues(load_texts, [("change.json", json.dumps(BROKEN))])
    assert from_documents == from_text
    assert any(i.path == "spec.listeners[0].portMapping.port" for i in from_documents)
    assert any(i.resource == "document 4" and "expected a mapping" in i.message for i in from_documents)


def test_references_are_checked_once_every_document_is_valid():
    docs = [("api", doc) for doc in BROKEN[:2]]
    [issue] = _issues(load_documents, docs)
    assert (issue.file, issue.resource, issue.path) == ("api", "VirtualService shop/a.shop.local",
                                                        "spec.provider.virtualNode.virtualNodeName")


def test_limits_apply():
    deep: dict = {}
    inner = deep
    for _ in range(10):
        inner["x"] = {}
        inner = inner["x"]
    issues = _issues(lambda docs: load_documents(docs, limits=Limits(max_depth=5)), [("api", {"kind": "Mesh", "name": "m", "spec": deep})])
    assert any("nested deeper than the limit of 5 levels" in i.message for i in issues)
