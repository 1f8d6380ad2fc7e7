"""An incremental load (a ``ParseCache`` kept across loads: pieces of files, reference checks
and the model's assembly reused) gives exactly what a cold load gives: the same model, or
the same errors, after any sequence of edits. Seeded random edits of a small multi-file model:
references added, removed and renamed, referents deleted and moved, ports changed, files
broken and fixed, documents duplicated, files renamed (load order) and removed."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from mesh_model import ModelError, load_paths
from mesh_model.load import DocumentCache, ParseCache, load_documents
from mesh_model.load.input_limits import Limits
from mesh_model.load.yaml_scan import split_documents
from mesh_model.validate import references

MESHES = ("m", "m2")
NODES = tuple(f"n{i}" for i in range(7))
SERVICES = tuple(f"s{i}.m.local" for i in range(5))
ROUTERS = tuple(f"r{i}" for i in range(3))
GATEWAYS = ("g0", "g1")
PORTS = (8080, 9090)


def _listeners(rng: random.Random, at_least: int = 0) -> list[dict]:
    count = rng.choice([at_least, 1, 1, 1, 2] if at_least == 0 else [1, 1, 2])
    return [{"portMapping": {"port": port, "protocol": "http"}} for port in PORTS[:count]]


def _maybe_port(rng: random.Random) -> dict:
    return {"port": rng.choice(PORTS)} if rng.random() < 0.25 else {}


def _name(rng: random.Random, pool: tuple[str, ...]) -> str:
    name = rng.choice(pool)
    return name + "x" if rng.random() < 0.05 else name  # a typo now and then


def _mesh(rng: random.Random) -> str:
    return "m2" if rng.random() < 0.08 else "m"


def make_document(rng: random.Random) -> dict:
    kind = rng.choice(["VirtualNode", "VirtualNode", "VirtualService", "VirtualRouter", "Route", "Route",
                       "VirtualGateway", "GatewayRoute", "CloudMapService", "Mesh"])
    mesh = _mesh(rng)
    if kind == "Mesh":
        return {"kind": "Mesh", "name": mesh, "spec": {}}
    if kind == "CloudMapService":
        return {"kind": "CloudMapService", "namespaceName": "ns", "name": rng.choice(NODES),
                "spec": {"instances": [{"instanceId": "i-1", "attributes": {"AWS_INSTANCE_IPV4": "10.0.0.1"}}]}}
    if kind == "VirtualNode":
        name = rng.choice(NODES)
        spec = {"listeners": _listeners(rng), "serviceDiscovery": {"dns": {"hostname": f"{name}.{rng.randrange(3)}.local"}},
                "backends": [{"virtualService": {"virtualServiceName": _name(rng, SERVICES)}} for _ in range(rng.randrange(3))]}
        return {"kind": kind, "mesh": mesh, "name": name, "spec": spec}
    if kind == "VirtualService":
        provider = ({"virtualNode": {"virtualNodeName": _name(rng, NODES)}} if rng.random() < 0.5
                    else {"virtualRouter": {"virtualRouterName": _name(rng, ROUTERS)}})
        return {"kind": kind, "mesh": mesh, "name": rng.choice(SERVICES), "spec": {"provider": provider}}
    if kind == "VirtualRouter":
        return {"kind": kind, "mesh": mesh, "name": rng.choice(ROUTERS), "spec": {"listeners": _listeners(rng, 1)}}
    if kind == "VirtualGateway":
        return {"kind": kind, "mesh": mesh, "name": rng.choice(GATEWAYS), "spec": {"listeners": _listeners(rng, 1)}}
    if kind == "Route":
        targets = [{"virtualNode": _name(rng, NODES), "weight": rng.randrange(1, 100), **_maybe_port(rng)}
                   for _ in range(rng.choice([1, 1, 2]))]
        return {"kind": kind, "mesh": mesh, "virtualRouter": _name(rng, ROUTERS), "name": f"rt{rng.randrange(4)}",
                "spec": {"httpRoute": {"match": {"prefix": "/", **_maybe_port(rng)}, "action": {"weightedTargets": targets}}}}
    target = {"virtualService": {"virtualServiceName": _name(rng, SERVICES)}, **_maybe_port(rng)}
    return {"kind": "GatewayRoute", "mesh": mesh, "virtualGateway": _name(rng, GATEWAYS), "name": f"gr{rng.randrange(3)}",
            "spec": {"httpRoute": {"match": {"prefix": "/", **_maybe_port(rng)}, "action": {"target": target}}}}


def initial_model(rng: random.Random) -> dict[str, list]:
    docs = [{"kind": "Mesh", "name": "m", "spec": {}}]
    docs += [{"kind": "VirtualNode", "mesh": "m", "name": n, "spec": {
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}], "serviceDiscovery": {"dns": {"hostname": f"{n}.local"}},
        "backends": [{"virtualService": {"virtualServiceName": s}} for s in rng.sample(SERVICES, 2)]}} for n in NODES]
    docs += [{"kind": "VirtualService", "mesh": "m", "name": s, "spec": {"provider": {"virtualRouter": {"virtualRouterName": ROUTERS[i % 3]}}}}
             for i, s in enumerate(SERVICES)]
    docs += [{"kind": "VirtualRouter", "mesh": "m", "name": r, "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}}
             for r in ROUTERS]
    docs += [{"kind": "Route", "mesh": "m", "virtualRouter": r, "name": "rt0", "spec": {"httpRoute": {
        "match": {"prefix": "/"}, "action": {"weightedTargets": [{"virtualNode": NODES[i], "weight": 1}]}}}} for i, r in enumerate(ROUTERS)]
    docs += [make_document(rng) for _ in range(8)]
    files: dict[str, list] = {"a.yaml": [], "b.yaml": [], "c.yml": [], "d.json": []}
    for doc in docs:
        files[rng.choice(list(files))].append(doc)
    return files


BROKEN = ("kind: VirtualNode\nmesh: m\nname: [unclosed\n", "kind: Route\n\tname: tab\n", "just a string\n",
          "kind: VirtualNode\nmesh: m\nname: n0\nname: n1\n")


def render(name: str, items: list) -> str:
    if name.endswith(".json"):
        if any(isinstance(item, str) for item in items):
            return '[{"kind": "Mesh", "name": '  # broken JSON
        return json.dumps(items if len(items) != 1 else items[0], indent=1)
    parts = [item if isinstance(item, str) else yaml.safe_dump(item, sort_keys=False) for item in items]
    return "---\n".join(parts) if parts else ""


def edit(rng: random.Random, files: dict[str, list]) -> str:
    """One random edit of the model, in place; returns what it did (for failure messages)."""
    names = sorted(files)
    name = rng.choice(names)
    items = files[name]
    docs = [i for i, item in enumerate(items) if isinstance(item, dict)]
    choice = rng.randrange(17)
    if choice <= 2 and docs:  # a change inside one document (weights, targets, ports, backends, provider)
        i = rng.choice(docs)
        doc = json.loads(json.dumps(items[i]))
        fresh = make_document(rng)
        if fresh["kind"] == doc["kind"]:
            fresh.update({key: doc[key] for key in ("mesh", "name", "virtualRouter", "virtualGateway", "namespaceName") if key in doc})
            items[i] = fresh
            return f"changed the spec of {doc['kind']} {doc.get('name')} in {name}"
        if "spec" in doc and doc["kind"] in ("VirtualNode", "VirtualRouter", "VirtualGateway"):
            doc["spec"]["listeners"] = _listeners(rng)
            items[i] = doc
            return f"changed the listeners of {doc['kind']} {doc['name']} in {name}"
        return "nothing"
    if choice <= 4:
        items.insert(rng.randrange(len(items) + 1), make_document(rng))
        return f"added a document to {name}"
    if choice == 5 and docs:
        removed = items.pop(rng.choice(docs))
        return f"deleted {removed['kind']} {removed.get('name')} from {name}"
    if choice == 6 and docs:  # rename: references to it dangle, references to the new name resolve
        i = rng.choice(docs)
        doc = dict(items[i])
        pool = {"VirtualNode": NODES, "VirtualService": SERVICES, "VirtualRouter": ROUTERS, "VirtualGateway": GATEWAYS}.get(doc["kind"])
        doc["name"] = _name(rng, pool) if pool else doc["name"] + "z"
        items[i] = doc
        return f"renamed a {doc['kind']} to {doc['name']} in {name}"
    if choice == 7:  # break the file
        items.insert(rng.randrange(len(items) + 1), rng.choice(BROKEN))
        return f"broke {name}"
    if choice == 8:  # fix the file
        files[name] = [item for item in items if not isinstance(item, str)]
        return f"fixed {name}"
    if choice == 9 and docs:  # an invalid spec (the resource stays, with spec None)
        i = rng.choice(docs)
        doc = json.loads(json.dumps(items[i]))
        doc.setdefault("spec", {})["bogusField"] = 1
        items[i] = doc
        return f"invalid spec of {doc['kind']} {doc.get('name')} in {name}"
    if choice == 10 and docs:  # a duplicate, in this file or another one
        doc = items[rng.choice(docs)]
        target = rng.choice(names)
        files[target].insert(rng.randrange(len(files[target]) + 1), json.loads(json.dumps(doc)))
        return f"duplicated {doc['kind']} {doc.get('name')} into {target}"
    if choice == 11 and docs:  # move a document to another file
        doc = items.pop(rng.choice(docs))
        target = rng.choice(names)
        files[target].append(doc)
        return f"moved {doc['kind']} {doc.get('name')} from {name} to {target}"
    if choice == 12:  # rename the file (its place in the load order changes)
        suffix = ".json" if name.endswith(".json") else ".yaml"
        new = rng.choice("abcdefgh") + str(rng.randrange(10)) + suffix
        if new not in files:
            files[new] = files.pop(name)
            return f"renamed {name} to {new}"
        return "nothing"
    if choice == 13:  # a new file, or one removed
        if rng.random() < 0.5 or len(files) < 2:
            new = f"n{rng.randrange(100)}.yaml"
            files.setdefault(new, []).extend(make_document(rng) for _ in range(rng.randrange(1, 4)))
            return f"added {new}"
        del files[name]
        return f"removed {name}"
    if choice == 14:  # the mesh removed or back
        for file_items in files.values():
            for i, item in enumerate(file_items):
                if isinstance(item, dict) and item["kind"] == "Mesh" and item["name"] == "m":
                    del file_items[i]
                    return "removed mesh m"
        items.append({"kind": "Mesh", "name": "m", "spec": {}})
        return f"added mesh m to {name}"
    if choice == 15:  # reorder the documents of a file
        rng.shuffle(items)
        return f"shuffled {name}"
    if choice == 16 and docs:  # the same document twice in one file
        doc = items[rng.choice(docs)]
        items.append(json.loads(json.dumps(doc)))
        return f"repeated {doc['kind']} {doc.get('name')} in {name}"
    return "nothing"


def heal(files: dict[str, list]) -> str:
    """Make the model valid again (so that valid and invalid states alternate): no broken
    text, no invalid spec, no duplicate, mesh m only, every reference resolved, one port."""
    seen: set[tuple] = set()
    one_port = [{"portMapping": {"port": 8080, "protocol": "http"}}]
    for name in files:
        kept = []
        for item in files[name]:
            if isinstance(item, str):
                continue
            doc = json.loads(json.dumps(item))
            doc.get("spec", {}).pop("bogusField", None)
            if doc["kind"] != "CloudMapService":
                doc["mesh" if doc["kind"] != "Mesh" else "name"] = "m"
            ident = tuple(doc.get(key) for key in ("kind", "mesh", "virtualRouter", "virtualGateway", "namespaceName", "name"))
            if ident not in seen:
                seen.add(ident)
                kept.append(doc)
        files[name] = kept
    if ("Mesh", None, None, None, None, "m") not in seen:
        files[sorted(files)[0]].insert(0, {"kind": "Mesh", "name": "m", "spec": {}})
    names = {kind: {ident[5] for ident in seen if ident[0] == kind} for kind in ("VirtualNode", "VirtualService", "VirtualRouter", "VirtualGateway")}
    for name in files:
        kept = []
        for doc in files[name]:
            spec = doc.get("spec", {})
            if doc["kind"] in ("VirtualNode", "VirtualRouter", "VirtualGateway"):
                spec["listeners"] = one_port
            if doc["kind"] == "VirtualNode":
                spec["backends"] = [b for b in spec.get("backends", []) if b["virtualService"]["virtualServiceName"] in names["VirtualService"]]
            elif doc["kind"] == "VirtualService":
                provider = spec["provider"]
                if "virtualNode" in provider and provider["virtualNode"]["virtualNodeName"] not in names["VirtualNode"] or \
                        "virtualRouter" in provider and provider["virtualRouter"]["virtualRouterName"] not in names["VirtualRouter"]:
                    continue
            elif doc["kind"] == "Route":
                route = spec["httpRoute"]
                route["match"].pop("port", None)
                targets = [{"virtualNode": t["virtualNode"], "weight": t["weight"]} for t in route["action"]["weightedTargets"]
                           if t["virtualNode"] in names["VirtualNode"]]
                if doc["virtualRouter"] not in names["VirtualRouter"] or not targets:
                    continue
                route["action"]["weightedTargets"] = targets
            elif doc["kind"] == "GatewayRoute":
                route = spec["httpRoute"]
                route["match"].pop("port", None)
                route["action"]["target"].pop("port", None)
                if doc["virtualGateway"] not in names["VirtualGateway"] or \
                        route["action"]["target"]["virtualService"]["virtualServiceName"] not in names["VirtualService"]:
                    continue
            kept.append(doc)
        files[name] = kept
    return "healed"


def write(folder: Path, files: dict[str, list]) -> None:
    present = {path.name for path in folder.iterdir()}
    for name in present - set(files):
        (folder / name).unlink()
    for name, items in files.items():
        text = render(name, items)
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def outcome(folder: Path, **kwargs):
    """The model's every resource in iteration order (identity, file, digest, spec), or the issues."""
    return load_outcome(lambda: load_paths([folder], **kwargs))


def load_outcome(load):
    """``outcome`` of any load (a function returning the model or raising ModelError)."""
    try:
        model = load()
    except ModelError as err:
        return ("errors", err.issues)

    def res(r):
        return (r.kind, r.mesh, r.virtualRouter, r.virtualGateway, r.namespaceName, r.name, r.file, r.digest,
                None if r.spec is None else r.spec.model_dump_json())

    def items(mapping):
        return [(key, res(value)) for key, value in mapping.items()]

    meshes = [(name, res(mesh.resource), items(mesh.virtual_services), items(mesh.virtual_routers),
               [(router, items(routes)) for router, routes in mesh.routes.items()], items(mesh.virtual_nodes),
               items(mesh.virtual_gateways), [(gw, items(routes)) for gw, routes in mesh.gateway_routes.items()])
              for name, mesh in model.meshes.items()]
    return ("model", meshes, items(model.cloud_map))


@pytest.mark.parametrize("seed", range(24))
def test_incremental_load_equals_cold_load(tmp_path, seed, monkeypatch):
    rng = random.Random(seed)
    limits = {}
    if seed % 4 == 1:  # few hints: the hint budget runs out, so hints depend on the order they are made in
        budget = references.HintBudget
        monkeypatch.setattr(references, "HintBudget", lambda: budget(cells=400))
    if seed % 4 == 2:  # more issues than reported: which ones are kept must not depend on the cache
        limits = {"limits": Limits(max_issues=4)}
    if seed % 8 == 3:  # a load over its limits: reused documents count as if parsed again
        limits = {"limits": Limits(max_documents=30, max_nodes=620)}
    files = initial_model(rng)
    cache = ParseCache()
    history = []
    kinds = set()
    for step in range(14):
        write(tmp_path, files)
        incremental = outcome(tmp_path, parse_cache=cache, **limits)
        cold = outcome(tmp_path, **limits)
        assert incremental == cold, f"seed {seed}, after: {history}"
        kinds.add(cold[0])
        history.append(heal(files) if rng.random() < 0.3 else edit(rng, files))
    if seed < 8:
        fresh = outcome(tmp_path, parse_cache=ParseCache(), **limits)
        assert fresh == outcome(tmp_path, parse_cache=cache, **limits)


@pytest.mark.parametrize("seed", range(12))
def test_cached_document_loads_equal_uncached_loads(seed, monkeypatch):
    """``load_documents`` with a ``DocumentCache`` kept across loads (the API checking every
    would-be model, the store's reloads): documents reused, reference checks and assembly
    redone for what changed, and still exactly the model, or the errors, of a load without it."""
    rng = random.Random(1000 + seed)
    limits = {}
    if seed % 4 == 1:
        budget = references.HintBudget
        monkeypatch.setattr(references, "HintBudget", lambda: budget(cells=400))
    if seed % 4 == 2:
        limits = {"limits": Limits(max_issues=4)}
    files = initial_model(rng)
    cache = DocumentCache()
    history = []
    kinds = set()
    for step in range(14):
        # one label for every document (as the API loads them) or a label per file
        docs = [("request" if seed % 2 == 0 else name, json.loads(json.dumps(item)))
                for name in sorted(files) for item in files[name] if not isinstance(item, str)]
        cached = load_outcome(lambda: load_documents(docs, cache=cache, **limits))
        cold = load_outcome(lambda: load_documents(docs, **limits))
        assert cached == cold, f"seed {seed}, after: {history}"
        kinds.add(cold[0])
        history.append(heal(files) if rng.random() < 0.3 else edit(rng, files))
    assert kinds == {"model", "errors"}, "the edits never made (or never fixed) an invalid model"


def test_edits_reuse_what_did_not_change(tmp_path):
    """A one-document edit parses one piece, checks the edited resource and whatever read
    it, and keeps the untouched parts of the model."""
    docs = [{"kind": "Mesh", "name": "m", "spec": {}}]
    for i in range(30):
        docs.append({"kind": "VirtualNode", "mesh": "m", "name": f"n{i}", "spec": {
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}], "serviceDiscovery": {"dns": {"hostname": f"n{i}.local"}},
            "backends": [{"virtualService": {"virtualServiceName": f"s{(i + 1) % 30}"}}]}})
        docs.append({"kind": "VirtualService", "mesh": "m", "name": f"s{i}", "spec": {"provider": {"virtualRouter": {"virtualRouterName": f"r{i}"}}}})
        docs.append({"kind": "VirtualRouter", "mesh": "m", "name": f"r{i}", "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}})
        docs.append({"kind": "Route", "mesh": "m", "virtualRouter": f"r{i}", "name": "main", "spec": {"httpRoute": {
            "match": {"prefix": "/"}, "action": {"weightedTargets": [{"virtualNode": f"n{i}", "weight": 1}]}}}})
    path = tmp_path / "mesh.yaml"
    path.write_text(render("mesh.yaml", docs))
    cache = ParseCache()
    first = load_paths([tmp_path], parse_cache=cache)
    checker = cache.incremental.checker
    checked = []
    original = checker._check_entry
    checker._check_entry = lambda entry, view: (checked.append(entry.resource.label), original(entry, view))[1]

    docs[4]["spec"]["httpRoute"]["action"]["weightedTargets"][0]["weight"] = 5  # route r0/main
    path.write_text(render("mesh.yaml", docs))
    second = load_paths([tmp_path], parse_cache=cache)
    assert checked == ["Route m/r0/main"]
    old, new = first.meshes["m"], second.meshes["m"]
    assert new.virtual_nodes is old.virtual_nodes and new.virtual_services is old.virtual_services
    assert new.routes["r1"] is old.routes["r1"] and new.routes["r0"] is not old.routes["r0"]
    assert new.routes["r0"]["main"].spec.httpRoute.action.weightedTargets[0].weight == 5
    assert all(new.virtual_nodes[n] is old.virtual_nodes[n] for n in new.virtual_nodes)
    assert load_paths([tmp_path], parse_cache=cache) is second and checked == ["Route m/r0/main"]  # nothing changed

    checked.clear()  # a node's listener port changes: the routes that target it read its ports
    docs[1]["spec"]["listeners"][0]["portMapping"]["port"] = 9090
    path.write_text(render("mesh.yaml", docs))
    load_paths([tmp_path], parse_cache=cache)
    assert sorted(checked) == ["Route m/r0/main", "VirtualNode m/n0"]

    checked.clear()  # a service removed: a node's backends need not exist (as on App Mesh), but the node
    del docs[2]      # that lists it reads the service's ports (backends Envoy would see as one host)
    path.write_text(render("mesh.yaml", docs))
    load_paths([tmp_path], parse_cache=cache)
    assert checked == ["VirtualNode m/n29"]

    checked.clear()  # a node removed: the route targeting it is checked again, and fails
    del docs[1]
    path.write_text(render("mesh.yaml", docs))
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path], parse_cache=cache)
    assert sorted(checked) == ["Route m/r0/main"]
    assert [str(issue) for issue in err.value.issues] == [
        f"{path}: Route m/r0/main: spec.httpRoute.action.weightedTargets[0].virtualNode: virtual node 'n0' not found in "
        "mesh 'm' (did you mean 'n1'?)"]


def test_pieces_are_the_documents_of_the_file():
    assert split_documents("a: 1\n---\nb: 2\n--- \nc: 3\n---") == ["a: 1\n", "---\nb: 2\n", "--- \nc: 3\n", "---"]
    assert split_documents("---\na: |\n  text\n  ---\n---x: 1\n") == ["---\na: |\n  text\n  ---\n---x: 1\n"]
    assert split_documents("%YAML 1.2\n---\na: 1\n") is None  # a directive belongs to the next document
    assert split_documents("a: 1\n...\n---\nb: 1\n") is None


def test_converted_formats_load_incrementally_as_cold(tmp_path):
    """Kubernetes custom resources (converted with every file's identities) and CloudFormation
    beside native files: issues keep naming the original objects, and the model is the same."""
    from tests.appmesh_inputs import CASES, CFN, REVIEWS_MESH, substituted

    mesh = substituted(REVIEWS_MESH)
    router = substituted(CASES["05"][0])
    cfn = substituted(CFN)
    native = yaml.safe_dump_all([
        {"kind": "VirtualService", "mesh": "reviews", "name": "extra.reviews.local",
         "spec": {"provider": {"virtualNode": {"virtualNodeName": "reviews-api-stable"}}}},
        {"kind": "VirtualNode", "mesh": "reviews", "name": "caller", "spec": {
            "backends": [{"virtualService": {"virtualServiceName": "extra.reviews.local"}}]}},
    ], sort_keys=False)
    variants = {
        "mesh.yaml": [mesh, mesh.replace("awsName: reviews-api-stable", "awsName: reviews-api-v1"), None],
        "router.yaml": [router, router.replace("weight: 90", "weight: 190", 1), None],
        "cfn.yaml": [cfn, cfn.replace("Default: 50051", "Default: 50052", 1), cfn + "\n  broken: [\n", None],
        "native.yaml": [native, native.replace("extra.reviews.local", "extra2.reviews.local", 1), native + "---\n" + native, None],
    }
    rng = random.Random(5)
    cache = ParseCache()
    kinds = set()
    for step in range(30):
        for name, texts in variants.items():
            if step == 0 or rng.random() < 0.3:
                text = texts[0] if step == 0 else rng.choice(texts)
                if text is None:
                    (tmp_path / name).unlink(missing_ok=True)
                else:
                    (tmp_path / name).write_text(text)
        cold = outcome(tmp_path)
        assert outcome(tmp_path, parse_cache=cache) == cold, step
        kinds.add(cold[0])
    assert kinds == {"model", "errors"}


def test_pieces_kept_from_a_whole_file_parse_are_those_of_parsing_each_piece():
    """A first load parses a file whole and keeps its pieces' results (documents, values,
    resources); they must be what parsing each piece on its own gives."""
    from mesh_model.load import pipeline
    from mesh_model.load.input_limits import Budget

    text = (
        "# a comment before the first document\n"
        "kind: Mesh\nname: m\nspec: {}\n"
        "---\n"
        "---\n"  # an empty document
        "# only a comment\n"
        "--- &anchor\n"
        "kind: VirtualNode\nmesh: m\nname: n1\nspec:\n  serviceDiscovery: {dns: {hostname: a.local}}\n"
        "  listeners: [{portMapping: {port: 8080, protocol: http}}]\n"
        "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\n"  # skipped, as in any load
        "--- |\n  a block scalar\n  ---\n"  # a string document: not a resource... so not clean
    )
    clean = text.rsplit("--- |", 1)[0] + "---\nkind: VirtualRouter\nmesh: m\nname: r\nspec:\n  listeners:\n  - portMapping:\n      port: 80\n      protocol: http\n"
    for source, expect_kept in ((clean, True), (text, False)):
        cache = ParseCache()
        pieces = split_documents(source)
        digests = [pipeline.chunk_digest(piece) for piece in pieces]
        result, parsed = pipeline._load_whole("f.yaml", source, pieces, digests, Budget(Limits()), cache)
        assert (result is not None) == expect_kept and (parsed is None) == expect_kept
        if not expect_kept:
            continue
        assert [r.name for r in result.resources] == ["m", "n1", "r"]
        for piece, digest in zip(pieces, digests):
            kept = cache.get_chunk("f.yaml", digest, Budget(Limits()))
            alone = pipeline._load_piece("f.yaml", piece, Budget(Limits()))
            assert (kept.documents, kept.nodes) == (alone.documents, alone.nodes), piece
            assert [r.label for r in kept.resources] == [r.label for r in alone.resources]
        assert sum(cache.get_chunk("f.yaml", d, Budget(Limits())).documents for d in set(digests)) == result.documents
