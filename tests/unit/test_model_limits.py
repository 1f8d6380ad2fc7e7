"""Input limits (mesh_model.load.input_limits): each one refuses with a clear issue naming the file
(and document), never a partial model; the defaults hold a large real model easily."""
from __future__ import annotations

import json
import os
import time

import pytest

from mesh_model import MeshModel, ModelError, load_paths, load_texts
from mesh_model.load.input_limits import DEFAULT_LIMITS, Limits, MiB, size_text

MESH = "kind: Mesh\nname: m\n"


def issues(texts, **limits) -> list[str]:
    with pytest.raises(ModelError) as err:
        load_texts(texts, limits=Limits(**limits) if limits else DEFAULT_LIMITS)
    out = [str(i) for i in err.value.issues]
    assert out and all(i.file for i in err.value.issues)
    return out


def big_mesh(nodes: int = 2000, routes: int = 500) -> str:
    """``nodes`` virtual nodes, services and routers, plus ``routes`` routes on one router."""
    docs = ["kind: Mesh\nname: big\n"]
    for i in range(nodes):
        docs.append(
            f"kind: VirtualNode\nmesh: big\nname: node-{i}\nspec:\n"
            f"  listeners:\n    - portMapping: {{port: 8080, protocol: http}}\n"
            f"      healthCheck: {{protocol: http, path: /ping, healthyThreshold: 2, unhealthyThreshold: 3, intervalMillis: 5000, timeoutMillis: 2000}}\n"
            f"  serviceDiscovery:\n    dns: {{hostname: node-{i}.big.local}}\n"
            f"  backends:\n    - virtualService: {{virtualServiceName: svc-{(i + 1) % nodes}.big.local}}\n")
        docs.append(f"kind: VirtualService\nmesh: big\nname: svc-{i}.big.local\nspec:\n  provider:\n    virtualRouter: {{virtualRouterName: router-{i}}}\n")
        docs.append(f"kind: VirtualRouter\nmesh: big\nname: router-{i}\nspec:\n  listeners:\n    - portMapping: {{port: 8080, protocol: http}}\n")
    for i in range(routes):
        docs.append(
            f"kind: Route\nmesh: big\nvirtualRouter: router-0\nname: route-{i}\nspec:\n  priority: {i % 1000}\n  httpRoute:\n"
            f"    match: {{prefix: /p{i}}}\n    action:\n      weightedTargets:\n"
            f"        - {{virtualNode: node-{i}, weight: 50}}\n        - {{virtualNode: node-{i + 1}, weight: 50}}\n")
    return "---\n".join(docs)


# ---------------------------------------------------------------- the defaults hold the product's scale


def test_large_model_loads_within_default_limits():
    """A big but legitimate model stays under every default limit (its load time is a
    benchmark's business: bench/compile_bench.py, not a timed test)."""
    model = load_texts([("big.yaml", big_mesh())])
    mesh = model.meshes["big"]
    assert (len(mesh.virtual_nodes), len(mesh.virtual_services), len(mesh.virtual_routers)) == (2000, 2000, 2000)
    assert len(mesh.routes["router-0"]) == 500


def test_defaults_are_documented_values():
    assert DEFAULT_LIMITS == Limits()
    assert (Limits().max_file_bytes, Limits().max_total_bytes) == (16 * MiB, 256 * MiB)
    assert (Limits().max_documents, Limits().max_depth, Limits().max_string_length) == (100_000, 64, 65_536)
    assert size_text(20 * MiB + 1) == "20.0 MiB" and size_text(16 * MiB) == "16 MiB" and size_text(5) == "5 bytes" and size_text(2000) == "2,000 bytes"


# ---------------------------------------------------------------- sizes


def test_file_too_big_is_refused_before_reading(tmp_path):
    (tmp_path / "big.yaml").write_bytes(b"#" * (2 * MiB + 100))
    (tmp_path / "ok.yaml").write_text(MESH)
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path], limits=Limits(max_file_bytes=2 * MiB))
    assert [str(i) for i in err.value.issues] == [f"{tmp_path / 'big.yaml'}: file is 2.0 MiB, larger than the limit of 2 MiB"]


def test_17_mib_document_is_refused_by_size_with_default_limits():
    text = MESH + "spec: {egressFilter: {type: '" + "x" * (17 * MiB) + "'}}\n"
    started = time.perf_counter()
    assert issues([("huge.yaml", text)]) == ["huge.yaml: file is 17.0 MiB, larger than the limit of 16 MiB"]
    assert issues([("huge.yaml", text.encode())]) == ["huge.yaml: file is 17.0 MiB, larger than the limit of 16 MiB"]
    assert time.perf_counter() - started < 2


def test_size_counts_utf8_bytes_not_characters():
    text = MESH + "# " + "é" * 600 + "\n"  # 600 characters, 1,200 bytes
    assert issues([("u.yaml", text)], max_file_bytes=1000) == ["u.yaml: file is 1,222 bytes, larger than the limit of 1,000 bytes"]


def test_total_bytes_per_load():
    texts = [(f"f{i}.yaml", f"kind: Mesh\nname: m{i}\n# {'x' * 500}\n") for i in range(10)]
    out = issues(texts, max_total_bytes=2000)
    assert out == ["f3.yaml: the files add up to more than 2,000 bytes (limit per load); not read"]


def test_number_of_files(tmp_path):
    for i in range(5):
        (tmp_path / f"m{i}.yaml").write_text(f"kind: Mesh\nname: m{i}\n")
    assert len(load_paths([tmp_path], limits=Limits(max_files=5)).meshes) == 5
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path], limits=Limits(max_files=3))
    assert [str(i) for i in err.value.issues] == [f"{tmp_path / 'm3.yaml'}: more than 3 files to load (limit per load); not read"]


# ---------------------------------------------------------------- counts


def test_number_of_documents_counts_empty_ones():
    assert issues([("d.yaml", "---\n" * 50 + MESH)], max_documents=20) == [
        "d.yaml: document 21 (line 21): line 21 column 1: more than 20 documents in all files together (limit per load)"]


def test_dash_flood_is_refused_fast():
    started = time.perf_counter()
    out = issues([("flood.yaml", "---\n" * (4 * MiB - 1))])
    assert out == ["flood.yaml: document 100001 (line 100001): line 100001 column 1: more than 100,000 documents in all files together (limit per load)"]
    assert time.perf_counter() - started < 3


def test_number_of_documents_in_json_lists():
    items = json.dumps([{"kind": "Mesh", "name": f"m{i}"} for i in range(30)])
    assert issues([("a.json", items)], max_documents=10) == ["a.json: more than 10 documents in all files together (limit per load)"]


def test_values_per_document_and_per_load():
    listeners = "spec: {listeners: [" + ", ".join(["{portMapping: {port: 1, protocol: tcp}}"] * 50) + "]}\n"
    router = "kind: VirtualRouter\nmesh: m\nname: r\n" + listeners
    out = issues([("r.yaml", MESH + "---\n" + router)], max_document_nodes=100)
    assert out == ["r.yaml: document 2 (line 3): line 7 column 536: more than 100 values in one document (limit per document)"]
    out = issues([("a.yaml", MESH), ("b.yaml", router.replace("name: r", "name: r2"))], max_nodes=300)
    assert out == ["b.yaml: document 1 (line 1): line 4 column 1681: more than 300 values in all files together (limit per load)"]
    # the same in JSON (no event stream: the values are counted after parsing)
    doc = json.dumps({"kind": "VirtualRouter", "mesh": "m", "name": "r", "spec": {"listeners": [{"portMapping": {"port": 1, "protocol": "tcp"}}] * 50}})
    (line,) = issues([("m.yaml", MESH), ("r.json", doc)], max_document_nodes=100)
    assert line.startswith("r.json: document 1: spec.listeners[") and line.endswith(": more than 100 values in one document (limit per document)")


def test_huge_list_of_wrong_items_is_refused_quickly():
    """8 million wrong items would take minutes (and GBs) to validate and report."""
    text = MESH + "---\nkind: VirtualRouter\nmesh: m\nname: r\nspec: {listeners: [" + ",".join(["1"] * (8 * 1024 * 1024 - 40)) + "]}\n"
    started = time.perf_counter()
    (line,) = issues([("list.yaml", text)])
    assert line.endswith("more than 200,000 values in one document (limit per document)")
    assert time.perf_counter() - started < 3


def test_issue_count_is_capped():
    text = MESH + "---\nkind: VirtualRouter\nmesh: m\nname: r\nspec: {listeners: [" + ",".join(["1"] * 50) + "]}\n"
    out = issues([("r.yaml", text)], max_issues=10)
    assert len(out) == 11
    assert "r.yaml: more than 10 problems; stopped checking here (fix these first)" in out


# ---------------------------------------------------------------- nesting, aliases, strings


def test_nesting_depth_yaml_block_flow_and_json():
    deep_flow = MESH + "spec: " + "[" * 70 + "]" * 70 + "\n"
    assert issues([("f.yaml", deep_flow)]) == ["f.yaml: document 1 (line 1): line 3 column 70: nested deeper than the limit of 64 levels"]
    deep_block = MESH + "spec:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 70))
    assert issues([("b.yaml", deep_block)])[0].endswith("nested deeper than the limit of 64 levels")
    deep_json = '{"kind": "Mesh", "name": "m", "spec": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}"
    (line,) = issues([("j.json", deep_json)])
    assert line.startswith("j.json: document 1: spec.a.a.") and line.endswith("nested deeper than the limit of 64 levels")
    assert issues([("f.yaml", MESH + "spec: " + "[" * 10 + "]" * 10 + "\n")], max_depth=5)[0].endswith("nested deeper than the limit of 5 levels")


@pytest.mark.parametrize("label,text", [
    ("flow.yaml", "[" * 10_000 + "]" * 10_000),
    ("map.yaml", "{a: " * 10_000 + "1" + "}" * 10_000),
    ("block.yaml", "- " * 10_000 + "x\n"),
    ("indented.yaml", "".join(" " * i + "a:\n" for i in range(1_000))),
    ("deep.json", "[" * 100_000 + "]" * 100_000),
    ("deepobj.json", '{"a":' * 100_000 + "1" + "}" * 100_000),
])
def test_ten_thousand_levels_are_refused_quickly(label, text):
    started = time.perf_counter()
    (line,) = issues([(label, text)])
    assert "nested deeper than the limit of 64 levels" in line
    assert time.perf_counter() - started < 3  # generous: catches hangs and blow-ups, not jitter


def billion_laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return MESH + "spec:\n" + "".join(f"  {line}\n" for line in lines)


def test_billion_laughs_is_refused_quickly():
    started = time.perf_counter()
    (line,) = issues([("lol.yaml", billion_laughs())])
    assert line.startswith("lol.yaml: document 1 (line 1): line ")
    assert line.endswith("more than 200,000 values in one document once aliases are expanded (an alias bomb?) (limit per document)")
    assert time.perf_counter() - started < 3  # generous: catches hangs and blow-ups, not jitter


def test_merge_key_bomb_is_refused():
    lines = ["b0: &b0 {k0: 1, k1: 2}"] + [f"b{i}: &b{i} {{<<: [*b{i - 1}, *b{i - 1}], k{i + 1}: 1}}" for i in range(1, 40)]
    text = "kind: CloudMapService\nnamespaceName: ns\nname: s\nspec:\n" + "".join(f"  {line}\n" for line in lines)
    assert issues([("merge.yaml", text)])[0].endswith("once aliases are expanded (an alias bomb?) (limit per document)")


def test_reasonable_aliases_and_merge_keys_still_work():
    text = MESH + """---
kind: VirtualRouter
mesh: m
name: r
spec:
  listeners:
    - &listener {portMapping: {port: 80, protocol: http}}
---
kind: VirtualNode
mesh: m
name: n
spec:
  listeners:
    - portMapping: &pm {port: 80, protocol: http}
  serviceDiscovery: {dns: {hostname: n.local}}
  backends:
    - virtualService: &vs {virtualServiceName: s}
    - virtualService: {<<: *vs, virtualServiceName: s2}
---
kind: VirtualNode
mesh: m
name: n2
spec:
  listeners:
    - portMapping: {port: 81, protocol: http}
  serviceDiscovery: {dns: {hostname: n2.local}}
---
kind: VirtualService
mesh: m
name: s
---
kind: VirtualService
mesh: m
name: s2
"""
    model = load_texts([("a.yaml", text)])
    backends = model.meshes["m"].virtual_nodes["n"].spec.backends
    assert [b.virtualService.virtualServiceName for b in backends] == ["s", "s2"]


def test_recursive_alias_is_refused():
    assert issues([("r.yaml", MESH + "spec: &a {x: *a}\n")]) == [
        "r.yaml: document 1 (line 1): line 3 column 14: alias *a is used inside its own anchor &a (a recursive structure)"]
    assert issues([("r.yaml", MESH + "spec: &a [[*a]]\n")])[0].endswith("(a recursive structure)")


def test_string_length_yaml_and_json():
    long = "x" * 70_000
    assert issues([("s.yaml", MESH + f"spec: {{egressFilter: {{type: {long}}}}}\n")]) == [
        "s.yaml: document 1 (line 1): line 3 column 29: string of 70,000 characters is longer than the limit of 65,536"]
    assert issues([("k.yaml", MESH + f"spec: {{{long}: 1}}\n")])[0].endswith("string of 70,000 characters is longer than the limit of 65,536")
    doc = json.dumps({"kind": "Mesh", "name": "m", "spec": {"egressFilter": {"type": long}}})
    assert issues([("s.json", doc)]) == ["s.json: document 1: spec.egressFilter.type: string of 70,000 characters is longer than the limit of 65,536"]
    key = json.dumps({"kind": "Mesh", "name": "m", "spec": {long: 1}})
    assert issues([("k.json", key)]) == ["k.json: document 1: spec: field name of 70,000 characters is longer than the limit of 65,536"]


def test_huge_integers():
    assert issues([("i.yaml", MESH + "spec: {x: " + "9" * 5000 + "}\n")]) == [
        "i.yaml: line 3 column 11: integer of 5,000 characters is too large (limit: 1,000)"]
    assert issues([("i.yaml", MESH + "spec: {x: " + "1:" * 3000 + "1}\n")])[0].endswith("integer of 6,001 characters is too large (limit: 1,000)")
    assert issues([("i.json", '{"kind": "Mesh", "name": "m", "spec": ' + "9" * 5000 + "}")]) == [
        "i.json: integer of 5,000 characters is too large (limit: 1,000)"]
    # 900 digits are allowed (and described briefly)
    out = issues([("i.yaml", "kind: VirtualRouter\nmesh: m\nname: r\nspec: {listeners: [{portMapping: {port: " + "9" * 900 + ", protocol: http}}]}\n"), ("m.yaml", MESH)])
    assert out == ["i.yaml: VirtualRouter m/r: spec.listeners[0].portMapping.port: must be <= 65535"]


# ---------------------------------------------------------------- files that are not files


def test_fifo_named_yaml_does_not_hang(tmp_path):
    (tmp_path / "ok.yaml").write_text(MESH)
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    assert [str(i) for i in err.value.issues] == [f"{tmp_path / 'pipe.yaml'}: not a regular file"]


def test_symlink_to_device_is_not_read(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.yaml")
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    assert [str(i) for i in err.value.issues] == [f"{tmp_path / 'zero.yaml'}: not a regular file"]


def test_unreadable_folder_reported_via_walk_error(tmp_path, monkeypatch):
    """An unreadable subfolder is an issue, never silently skipped (its resources would vanish
    from the served model). Simulated through os.walk's error callback: the tests run as root,
    who can read any folder."""
    (tmp_path / "m.yaml").write_text(MESH)
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):
        yield from real_walk(top, onerror=onerror, **kwargs)
        onerror(PermissionError(13, "Permission denied", str(tmp_path / "locked")))

    monkeypatch.setattr(os, "walk", walk)
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    assert [str(i) for i in err.value.issues] == [f"{tmp_path / 'locked'}: cannot read folder: Permission denied"]


def test_path_with_nul_byte():
    with pytest.raises(ModelError) as err:
        load_paths(["a\0b.yaml"])
    assert [str(i) for i in err.value.issues] == ["a\\x00b.yaml: no such file or directory"]  # printable


def test_model_is_returned_when_within_every_limit():
    tight = Limits(max_file_bytes=200, max_total_bytes=400, max_files=2, max_documents=3, max_nodes=30,
                   max_document_nodes=11, max_depth=3, max_string_length=12)
    model = load_texts([("a.yaml", MESH + "spec: {egressFilter: {type: DROP_ALL}}\n"), ("b.yaml", "kind: Mesh\nname: n\n")], limits=tight)
    assert isinstance(model, MeshModel) and sorted(model.meshes) == ["m", "n"]
