"""Fuzzing the model loader: whatever the files hold, ``load_texts``/``load_paths`` return
a MeshModel or raise ModelError with clear, one-line issues -- nothing else, never a hang.

Profiles (see docs/fuzzing.md): ``ci`` (default; bounded and deterministic, a few seconds)
and ``long`` (``HYPOTHESIS_PROFILE=long``: 100x the examples, random, with an example
database so failures replay).
"""
from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mesh_model import MeshModel, ModelError, load_paths, load_texts

from tests.unit.test_model_loader import MESH, NODES

settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("long", deadline=None, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = 100 if PROFILE == "long" else 1


def fuzz(examples: int, **kwargs: Any) -> settings:
    """``examples`` in the ci profile, ``SCALE`` times more in the long one."""
    base = settings.get_profile(PROFILE if PROFILE in ("ci", "long") else "ci")
    return settings(base, max_examples=examples * SCALE, **kwargs)


BASE_TEXTS = [("mesh.yaml", MESH), ("nodes.yaml", NODES)]
BASE_DOCS = [(label, doc) for label, text in BASE_TEXTS for doc in yaml.safe_load_all(text) if doc]
IDENTITY_KEYS = ("kind", "mesh", "virtualRouter", "namespaceName", "name")


def load_or_error(texts) -> MeshModel | ModelError:
    """The only two outcomes allowed; anything else fails the test (with its traceback)."""
    try:
        return load_texts(texts)
    except ModelError as err:
        check_error(err)
        return err


def check_error(err: ModelError) -> None:
    assert err.issues, "ModelError without issues"
    text = str(err)
    assert len(text.splitlines()) == len(err.issues), "an issue spans several lines"
    assert "Traceback" not in text and "errors.pydantic.dev" not in text and "For further information" not in text
    for issue in err.issues:
        assert issue.file and issue.message
        assert all(part.isprintable() for part in (issue.file, issue.resource, issue.path, issue.message)), issue
        assert len(str(issue)) < 5000


# ---------------------------------------------------------------- strategies

ODD_TEXT = st.sampled_from([
    "", " ", "\x00", "\ud800", "\udfff", "\ufeff", "\u202e", "\u200d", "e\u0301", "🚀", "עברית", "مرحبا", "\n", "\t",
    "yes", "no", "null", "~", "1e999", ".nan", "0x1F", "1:2:3", "2001-13-45", "*a", "&a", "!!python/object", "<<",
    "x" * 300, "/", "a/b", "'", '"', "- ", ": ", "#", "{", "[", "%YAML 1.1",
])
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30) | ODD_TEXT
)
KEYS = st.text(max_size=15) | ODD_TEXT | st.integers(-3, 3) | st.none() | st.booleans()
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indexes) inside a JSON-like value."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths_of(item, prefix + (i,))
    return out


def mutate(doc: dict, path: tuple, how: str, value: Any, key: Any) -> dict:
    doc = copy.deepcopy(doc)
    if not path:
        return value if how == "replace" else doc
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "drop":
        del parent[last]
    elif how == "wrap":
        parent[last] = [parent[last]]
    elif how == "add_key":
        target = parent[last]
        if isinstance(target, dict):
            target[key] = value
        else:
            parent[last] = {key: value}
    return doc


def dump(doc: Any, as_json: bool) -> str | None:
    try:
        if as_json:
            return json.dumps(doc)
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (TypeError, ValueError, yaml.YAMLError):  # e.g. keys json cannot write
        return None


def label_of(doc: Any) -> str | None:
    """``Kind mesh/name`` as the loader labels a document, if its identity is intact."""
    if not isinstance(doc, dict):
        return None
    kind, name = doc.get("kind"), doc.get("name")
    if kind == "Mesh":
        return f"Mesh {name}"
    if kind == "Route":
        return f"Route {doc.get('mesh')}/{doc.get('virtualRouter')}/{name}"
    if kind == "CloudMapService":
        return f"CloudMapService {doc.get('namespaceName')}/{name}"
    return f"{kind} {doc.get('mesh')}/{name}"


# ---------------------------------------------------------------- (a) arbitrary input


@fuzz(150)
@given(text=st.text(max_size=300), suffix=st.sampled_from([".yaml", ".json"]))
def test_arbitrary_text_only_model_or_model_error(text, suffix):
    load_or_error([("fuzz" + suffix, text)])


@fuzz(150)
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".yaml", ".json"]))
def test_arbitrary_bytes_only_model_or_model_error(data, suffix):
    load_or_error([("fuzz" + suffix, data)])


YAML_PIECES = st.sampled_from([
    "kind: Mesh\n", "name: m\n", "---\n", "...\n", "spec:\n", "  ", "- ", "[", "]", "{", "}", ", ", ": ", "&a ", "*a ",
    "<<: *a\n", "!!binary ", "!!python/object:os.system ", "!!set ", "!!omap ", "!!int ", "!!float ", "!!bool ",
    "!!timestamp ", "? ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "'", '"', "\\", "\t", "\x00", "\ufeff", "#c\n",
    "1:2:3", "2001-13-45", "9" * 50, ".nan", "1e999", "\n", "|\n", ">\n", "a", "é", "\u202e", "🚀",
])


@fuzz(200)
@given(pieces=st.lists(YAML_PIECES, max_size=40))
def test_yaml_shaped_junk_only_model_or_model_error(pieces):
    load_or_error([("junk.yaml", "".join(pieces))])


def test_file_on_disk_with_junk_bytes(tmp_path):
    """The load_paths route: undecodable bytes, BOMs, NULs, binary -- one issue each."""
    samples = {
        "a.yaml": b"\xff\xfe\x00k\x00i",
        "b.yaml": b"\xef\xbb\xbfkind: Mesh\nname: m\n",  # a BOM is fine
        "c.yaml": b"kind: Mesh\x00\nname: x\n",
        "d.json": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "e.yaml": b"kind: Mesh\nname: \xed\xa0\x80\n",  # an encoded surrogate is not UTF-8
        "f.yml": b"# only a comment\n",
        "g.yaml": b"",
    }
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    check_error(err.value)
    assert sorted({os.path.basename(i.file) for i in err.value.issues}) == ["a.yaml", "c.yaml", "d.json", "e.yaml"]


# ---------------------------------------------------------------- (b) structured fuzz


@st.composite
def mutated_model(draw):
    index = draw(st.integers(0, len(BASE_DOCS) - 1))
    label, doc = BASE_DOCS[index]
    path = draw(st.sampled_from(paths_of(doc)))
    how = draw(st.sampled_from(["replace", "replace", "drop", "wrap", "add_key"]))
    assume(path or how == "replace")
    new = mutate(doc, path, how, draw(JSON_LIKE), draw(KEYS))
    as_json = draw(st.booleans())
    text = dump(new, as_json)
    assume(text is not None)
    others = [(lbl, yaml.safe_dump(d, sort_keys=False)) for i, (lbl, d) in enumerate(BASE_DOCS) if i != index]
    return others + [("mutated.json" if as_json else "mutated.yaml", text)], new, path


@fuzz(250, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(case=mutated_model())
def test_mutated_documents_give_located_issues(case):
    """filter_too_much: some drawn values cannot be dumped (json's key rules); too_slow: each
    example loads the whole base mesh."""
    texts, doc, path = case
    outcome = load_or_error(texts)
    if isinstance(outcome, MeshModel):
        return
    label = label_of(doc)
    untouched_identity = bool(path) and path[0] == "spec" and label is not None
    for issue in outcome.issues:
        if issue.file.startswith("mutated") and untouched_identity and not issue.path.startswith("line "):
            assert issue.resource, issue  # the document still has its identity: name it
            if issue.resource == label:
                assert issue.path or issue.message.startswith(("unknown field", "field names", "duplicate key")), issue


# ---------------------------------------------------------------- (c) deep and huge


@fuzz(20)
@given(depth=st.integers(65, 10_000), opener=st.sampled_from(["[", "{a: ", "- "]), json_file=st.booleans())
def test_deep_nesting_is_refused_quickly(depth, opener, json_file):
    if json_file:
        text = '{"kind": "Mesh", "name": "m", "spec": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    else:
        closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
        text = "kind: Mesh\nname: m\nspec: " + (opener * depth + "x" + closer * depth if opener != "- " else "\n" + "- " * depth + "x") + "\n"
    started = time.perf_counter()
    err = load_or_error([("deep.json" if json_file else "deep.yaml", text)])
    assert isinstance(err, ModelError) and "nested deeper than the limit of 64 levels" in str(err)
    assert time.perf_counter() - started < 3  # generous: catches hangs and blow-ups, not jitter


@fuzz(10)
@given(levels=st.integers(8, 30), width=st.integers(5, 10))
def test_alias_bombs_are_refused_quickly(levels, width):
    """width ** levels values (at least 390,625) once expanded; a few hundred bytes on disk."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    text = "kind: Mesh\nname: m\nspec:\n" + "".join(f"  {line}\n" for line in lines)
    started = time.perf_counter()
    err = load_or_error([("lol.yaml", text)])
    assert isinstance(err, ModelError) and "alias bomb" in str(err)
    assert time.perf_counter() - started < 3  # generous: catches hangs and blow-ups, not jitter


def test_17_mib_document_refused_by_size():
    text = "kind: Mesh\nname: m\nspec: {x: '" + "a" * (17 * 1024 * 1024) + "'}\n"
    started = time.perf_counter()
    err = load_or_error([("big.yaml", text)])
    assert str(err) == "big.yaml: file is 17.0 MiB, larger than the limit of 16 MiB"
    assert time.perf_counter() - started < 3  # generous: catches hangs and blow-ups, not jitter


# ---------------------------------------------------------------- (d) valid generated meshes round-trip

NAME = st.text(
    alphabet=st.characters(categories=["L", "M", "N", "P", "S"], exclude_characters="/@"), min_size=1, max_size=20,
).filter(lambda s: s.isprintable() and not any(c.isspace() for c in s))


@pytest.mark.parametrize("name", ["🚀", "עברית", "مرحبا", "e\u0301", "naïve.svc", "a_b-c.d:e", "x" * 255])
def test_printable_unicode_names_are_allowed(name):
    assert name in load_texts([("m.json", json.dumps({"kind": "Mesh", "name": name}))]).meshes
    assert name in load_texts([("m.yaml", yaml.safe_dump({"kind": "Mesh", "name": name}, allow_unicode=True))]).meshes


@pytest.mark.parametrize("name,message", [
    ("a\u202eb", "name: must not contain control or invisible characters (U+202E), got 'a\\u202eb'"),
    ("a\u200db", "name: must not contain control or invisible characters (U+200D), got 'a\\u200db'"),
    ("a\x00b", "name: must not contain control or invisible characters (U+0000), got 'a\\x00b'"),
    ("a\nb", "name: must not contain '/' or whitespace, got 'a\\nb'"),
    ("a\ud800", "name: must not contain control or invisible characters (U+D800), got 'a\\ud800'"),
    ("a@b", "name: must not contain '@': node ids read mesh/<mesh>@<account id>/..., so no Envoy could join this mesh (got 'a@b')"),
    ("x" * 256, "name: must be at most 255 characters (got 256)"),
])
def test_unsafe_names_are_refused_printably(name, message):
    err = load_or_error([("m.json", json.dumps({"kind": "Mesh", "name": name}))])
    assert str(err) == f"m.json: document 1: {message}"


@st.composite
def valid_mesh(draw):
    mesh = draw(NAME)
    nodes = draw(st.lists(NAME, min_size=1, max_size=6, unique=True))
    routers = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    services = draw(st.lists(NAME, max_size=4, unique=True))
    routes = draw(st.lists(NAME, max_size=5, unique=True))
    docs: list[dict] = [{"kind": "Mesh", "name": mesh, "spec": {"egressFilter": {"type": draw(st.sampled_from(["ALLOW_ALL", "DROP_ALL"]))}}}]
    for node in nodes:
        port = draw(st.integers(1, 65535))
        docs.append({"kind": "VirtualNode", "mesh": mesh, "name": node, "spec": {
            "listeners": [{"portMapping": {"port": port, "protocol": draw(st.sampled_from(["http", "http2", "grpc", "tcp"]))}}],
            "serviceDiscovery": {"dns": {"hostname": draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{1,5}){0,2}", fullmatch=True))}},
            "backends": [{"virtualService": {"virtualServiceName": s}} for s in services[: draw(st.integers(0, len(services)))]],
        }})
    for router in routers:
        docs.append({"kind": "VirtualRouter", "mesh": mesh, "name": router, "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}})
    for service in services:
        provider = ({"virtualRouter": {"virtualRouterName": draw(st.sampled_from(routers))}} if draw(st.booleans())
                    else {"virtualNode": {"virtualNodeName": draw(st.sampled_from(nodes))}})
        docs.append({"kind": "VirtualService", "mesh": mesh, "name": service, "spec": {"provider": provider}})
    for route in routes:
        targets = draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=3, unique=True))
        docs.append({"kind": "Route", "mesh": mesh, "virtualRouter": routers[0], "name": route, "spec": {
            "priority": draw(st.integers(0, 1000)),
            "tcpRoute": {"action": {"weightedTargets": [{"virtualNode": t, "weight": 1} for t in targets]}},
        }})
    return docs, (len(nodes), len(routers), len(services), len(routes))


@fuzz(60, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_mesh(), as_json=st.booleans(), split=st.booleans())
def test_valid_generated_mesh_round_trips(case, as_json, split):
    """too_slow: drawing several unique unicode name lists per example is slow to generate."""
    docs, (nodes, routers, services, routes) = case
    if as_json:
        texts = [(f"{i}.json", json.dumps(doc)) for i, doc in enumerate(docs)] if split else [("all.json", json.dumps(docs))]
    else:
        texts = [(f"{i}.yaml", yaml.safe_dump(doc, allow_unicode=True)) for i, doc in enumerate(docs)] if split else \
            [("all.yaml", yaml.safe_dump_all(docs, allow_unicode=True))]
    model = load_texts(texts)
    (mesh,) = model.meshes.values()
    assert (len(mesh.virtual_nodes), len(mesh.virtual_routers), len(mesh.virtual_services)) == (nodes, routers, services)
    assert sum(len(r) for r in mesh.routes.values()) == routes
    assert set(mesh.virtual_nodes) == {d["name"] for d in docs if d["kind"] == "VirtualNode"}


# ---------------------------------------------------------------- (4) the server path

HOSTILE_EDITS = [
    "",  # valid: an empty file adds nothing
    "kind: Mesh\nname: shop\n" * 2,
    "!!python/object/apply:os.system ['true']\n",
    "kind: Mesh\nname: 2001-13-45\n",
    "kind: VirtualNode\nmesh: shop\nname: n\nspec: {listeners: [{portMapping: {port: " + "9" * 5000 + "}}]}\n",
    "kind: Mesh\nname: \"\\u202eevil\"\n",
    "kind: Mesh\nname: m\nspec: &a {x: *a}\n",
    "kind: Mesh\nname: m\nspec: " + "[" * 5000 + "]" * 5000 + "\n",
    "---\n" * 200_000,
    "kind: Mesh\nname: m\nspec:\n" + "".join(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 10) + "]\n" for i in range(12)),
    "kind: Mesh\nname: m\ud800\n",
    "kind: Mesh\nname: !!int abc\n",
    "kind: VirtualNode\nmesh: shop\nname: catalog-v1\n",  # a duplicate of a served node
]


def test_hostile_edits_never_replace_the_served_model():
    """What the control plane does on every file change: load, and keep the old model on
    ModelError. No edit may raise anything else (that would kill the reload loop)."""
    served = load_texts(BASE_TEXTS)
    for edit in HOSTILE_EDITS:
        started = time.perf_counter()
        outcome = load_or_error(BASE_TEXTS + [("edit.yaml", edit)])
        assert time.perf_counter() - started < 3, edit[:60]
        if isinstance(outcome, MeshModel):
            served = outcome
        assert "catalog-v1" in served.meshes["shop"].virtual_nodes


@fuzz(60, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")) | YAML_PIECES, min_size=1, max_size=5))
def test_random_edit_series_keep_a_valid_model(edits):
    served = load_texts(BASE_TEXTS)
    for edit in edits:
        outcome = load_or_error(BASE_TEXTS + [("edit.yaml", edit)])
        if isinstance(outcome, MeshModel):
            served = outcome
        assert "shop" in served.meshes


def test_control_plane_reload_keeps_the_last_good_model(tmp_path):
    """The real reload path (xds_server.controlplane.control_plane), without a server: a hostile file is
    rejected, the model and its snapshots are kept, and the errors are shown in status."""
    from xds_server.cache.snapshot_cache import SnapshotCache
    from xds_server.controlplane.control_plane import ControlPlane

    for label, text in BASE_TEXTS:
        (tmp_path / label).write_text(text)
    plane = ControlPlane([str(tmp_path)], SnapshotCache())
    good = plane.model
    for edit in HOSTILE_EDITS[1:9]:
        (tmp_path / "edit.yaml").write_text(edit)
        assert asyncio.run(plane.reload()) is False, edit[:60]
        assert plane.model is good and plane.status()["lastError"]
    (tmp_path / "edit.yaml").write_bytes(b"\xff\xfe junk")
    assert asyncio.run(plane.reload()) is False and plane.model is good
    (tmp_path / "edit.yaml").unlink()
    assert asyncio.run(plane.reload()) is True and plane.status()["lastError"] == []


def test_json_duplicate_keys_are_located():
    """Found by the long campaign: json.loads keeps the last duplicate silently; YAML
    refuses duplicates, so JSON does too, at the field and under the resource."""
    err = load_or_error([("a.json", '{"kind": "Mesh", "name": "m", "spec": [{"null": 1, "null": 2}]}')])
    assert str(err) == "a.json: Mesh m: spec[0]: duplicate key 'null'"
