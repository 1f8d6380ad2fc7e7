"""``aws appmesh describe-*`` / ``list-*`` output (JSON) -> native documents.

* ``describe-<kind>`` prints ``{"<kind>": <Kind>Data}`` (botocore's ``MeshData``,
  ``VirtualNodeData``, ``RouteData``...): ``meshName``, the kind's name keys
  (``virtualNodeName``, ``routeName`` + ``virtualRouterName``...), ``spec`` (already the
  API's camelCase), ``metadata`` and ``status`` (ignored). The bare ``<Kind>Data`` object
  (what ``--query route`` prints) is read too. A JSON file may hold one object or a list
  of them (each item is then its own document), and a folder may hold many files.
* ``list-<kinds>`` prints references only (``{"virtualNodes": [{"meshName": ...,
  "virtualNodeName": ..., "arn": ...}]}``): there is no spec to load, so every reference is
  an error naming the ``describe-*`` command that prints it.
* Field paths in errors are those of the original document
  (``route.spec.httpRoute.action.weightedTargets[0].weight``).
"""
from __future__ import annotations

from typing import Any

from mesh_model.adapters import Converted, Origin, Result, join
from mesh_model.spec import kinds

def _row(kind: kinds.Kind) -> tuple[str, str, str, str, str]:
    parent = kinds.parent_of(kind)
    return (kind.name, kind.name_param, parent.name_param if parent else "", parent.member if parent else "", kind.cli_noun)


# describe key -> (native kind, name key, parent key or "", parent envelope key, CLI noun)
KINDS = {kind.member: _row(kind) for kind in kinds.APP_MESH}
# list-* output key -> describe key
LISTS = {kind.list_member: kind.member for kind in kinds.APP_MESH}
_DATA_KEYS = ("meshName", "spec", "metadata", "status") + tuple(k[1] for k in KINDS.values())
_IGNORED = ("metadata", "status")


def data_kind(data: Any) -> str | None:
    """The describe key of a bare ``<Kind>Data`` object (None when it is not one)."""
    if not isinstance(data, dict) or "kind" in data or not isinstance(data.get("meshName"), str):
        return None
    if not ("spec" in data or "metadata" in data):
        return None
    for key in ("route", "gatewayRoute", "virtualNode", "virtualService", "virtualRouter", "virtualGateway"):
        if KINDS[key][1] in data:
            return key
    return "mesh"


def form_of(data: Any) -> str | None:
    """``"describe"`` for describe-* output (wrapped or bare), ``"list"`` for list-* output, else None."""
    if not isinstance(data, dict) or "kind" in data:
        return None
    if len(data) == 1:
        (key, value), = data.items()
        if key in KINDS and isinstance(value, dict) and "meshName" in value:
            return "describe"
    keys = set(data) - {"nextToken"}
    if len(keys) == 1 and next(iter(keys)) in LISTS and isinstance(data[next(iter(keys))], list):
        return "list"
    return "describe" if data_kind(data) is not None else None


def convert(data: dict) -> Result:
    """One describe-* or list-* object -> native documents (never raises on bad input)."""
    result = Result()
    form = form_of(data)
    if form == "list":
        _list(data, result)
    elif form == "describe":
        if len(data) == 1 and next(iter(data)) in KINDS and isinstance(next(iter(data.values())), dict):
            key = next(iter(data))
            _describe(key, data[key], key, result)
        else:
            _describe(data_kind(data) or "mesh", data, "", result)
    return result


def source_label(key: str, data: dict) -> str:
    kind, name_key, parent_key, _, noun = KINDS[key]
    parts = [data.get("meshName"), data.get(parent_key) if parent_key else None, data.get(name_key) if key != "mesh" else None]
    shown = "/".join(str(p) for p in parts if p is not None)
    return f"describe-{noun} {shown}"


def _describe(key: str, data: dict, base: str, result: Result) -> None:
    kind, name_key, parent_key, parent_envelope, noun = KINDS[key]
    source = source_label(key, data)
    native: dict[str, Any] = {"kind": kind}
    paths: dict[str, str] = {"spec": join(base, "spec")}
    wanted = [("name", name_key)] + ([] if kind == "Mesh" else [("mesh", "meshName")])
    if parent_key:
        wanted.append((parent_envelope, parent_key))
    for envelope, field in wanted:
        paths[envelope] = join(base, field)
        if field not in data:
            result.problem(source, join(base, field), f"required (describe-{noun} output has it)")
            continue
        native[envelope] = data[field]
    known = {field for _, field in wanted} | {"spec", *_IGNORED}
    for field in data:
        if field not in known:
            result.problem(source, join(base, field), f"unknown field (describe-{noun} output has: "
                                                       f"{', '.join(sorted(known))})")
    if not result.complete:
        return
    spec = data.get("spec")
    native["spec"] = {} if spec is None else spec
    result.documents.append(Converted(native, Origin(source, paths)))


def _list(data: dict, result: Result) -> None:
    list_key = next(k for k in data if k in LISTS)
    key = LISTS[list_key]
    kind, name_key, parent_key, _, noun = KINDS[key]
    plural = "meshes" if key == "mesh" else f"{noun}s"
    for i, item in enumerate(data[list_key]):
        path = f"{list_key}[{i}]"
        if not isinstance(item, dict):
            result.problem(f"list-{plural}", path, "expected a reference object")
            continue
        command = [f"aws appmesh describe-{noun}", f"--mesh-name {item.get('meshName', '?')}"]
        if parent_key:
            command.append(f"--{KINDS['virtualRouter' if parent_key == 'virtualRouterName' else 'virtualGateway'][4]}-name "
                           f"{item.get(parent_key, '?')}")
        if key != "mesh":
            command.append(f"--{noun}-name {item.get(name_key, '?')}")
        result.problem(source_label(key, item), path,
                       f"list-{plural} output holds references only, no spec: load the output of "
                       f"`{' '.join(command)}` instead (describe-* prints the spec)")
