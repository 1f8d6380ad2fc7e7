"""Terraform ``aws_appmesh_*`` resources -> native documents, from ``.tf`` files or from
``terraform show -json`` output.

* Resources ``aws_appmesh_mesh|virtual_node|virtual_service|virtual_router|route|
  virtual_gateway|gateway_route`` become one native document each; other resources (and
  data sources) are skipped. ``name``, ``mesh_name``, ``virtual_router_name``
  (routes), ``virtual_gateway_name`` (gateway routes) give the identity; ``spec`` the spec;
  ``tags``, ``mesh_owner`` and the provider's computed attributes are ignored.
* ``spec`` is the provider's nested blocks: each snake_case key becomes the API's camelCase
  (``http_route`` -> ``httpRoute``); repeated blocks become the API's lists
  (``weighted_target`` -> ``weightedTargets``, ``listener`` -> ``listeners``, ``backend`` ->
  ``backends``, ``header`` -> ``headers``, ``query_parameter`` -> ``queryParameters``,
  ``metadata``, ``json``); other blocks hold at most one; Cloud Map ``attributes = {k = v}``
  becomes ``[{key, value}]``.
* In ``.tf`` files, expressions are evaluated: literals, ``"${...}"`` interpolation,
  ``var.NAME`` (``-var NAME=VALUE``, ``-var-file``, else the variable's ``default``),
  ``local.NAME`` and the name attributes of other App Mesh resources
  (``aws_appmesh_mesh.x.id``/``.name``, ``aws_appmesh_virtual_node.y.name``,
  ``.mesh_name``...). Anything else (functions, ``count``/``for_each``, ``dynamic`` blocks,
  modules, data sources) is an error naming the resource address and attribute path. All
  ``.tf`` files of one load form one module.
* ``terraform show -json`` (state, or a saved plan's ``planned_values``): the resources of
  the root module and its child modules, values already evaluated; the provider's zero
  values for unset optional attributes (``""``, ``port = 0``, empty blocks) are dropped.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from mesh_model.adapters import Converted, Origin, Result, join
from mesh_model.spec import kinds

# resource type -> (native kind, parent attribute or "", parent envelope key)
def _type(kind: kinds.Kind) -> tuple[str, str, str]:
    parent = kinds.parent_of(kind)
    return kind.name, parent.cli_noun.replace("-", "_") + "_name" if parent else "", parent.member if parent else ""


TYPES = {kind.terraform_type: _type(kind) for kind in kinds.APP_MESH}
PREFIX = "aws_appmesh_"
# repeated blocks -> the API's list field
REPEATED = {"weighted_target": "weightedTargets", "listener": "listeners", "backend": "backends", "header": "headers",
            "query_parameter": "queryParameters", "metadata": "metadata", "json": "json"}
_IGNORED = ("tags", "tags_all", "mesh_owner", "depends_on", "provider", "lifecycle")
_COMPUTED = ("arn", "id", "created_date", "last_updated_date", "resource_owner")
_NAME_ATTRIBUTES = ("name", "mesh_name", "virtual_router_name", "virtual_gateway_name")
_REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?$")
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


class Unresolved(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def camel(key: str) -> str:
    """``http2_route`` -> ``http2Route``."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def parse(text: str) -> dict:
    """A ``.tf`` or ``.tfvars`` text as python-hcl2's dict (raises ValueError with the
    parser's message)."""
    import hcl2  # python-hcl2 loads only when a Terraform file is read

    options = hcl2.SerializationOptions(with_comments=False)
    try:
        return hcl2.loads(text, serialization_options=options)
    except Exception as err:  # noqa: BLE001 - lark's many exception types: all mean "not valid HCL"
        message = " ".join(str(err).split())
        raise ValueError(f"not valid Terraform (HCL): {message[:300]}") from None


def _unquote(key: Any) -> str:
    if isinstance(key, str) and len(key) >= 2 and key[0] == key[-1] == '"':
        return key[1:-1]
    return str(key)


# ---------------------------------------------------------------------------- .tf modules


@dataclass
class Module:
    """Every ``.tf`` file of a load: variables, locals and App Mesh resources by address."""

    variables: dict[str, dict] = field(default_factory=dict)  # name -> declaration
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, tuple[str, str, dict]] = field(default_factory=dict)  # address -> (file, type, body)
    order: dict[str, list[str]] = field(default_factory=dict)  # file -> addresses, in order
    given: Mapping[str, Any] = field(default_factory=dict)  # -var / -var-file values
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # (file, source, path, message)

    def add(self, file: str, body: dict) -> None:
        self.order.setdefault(file, [])
        for item in body.get("variable", []) or []:
            for name, declaration in (item.items() if isinstance(item, dict) else ()):
                self.variables[_unquote(name)] = declaration if isinstance(declaration, dict) else {}
        for item in body.get("locals", []) or []:
            for name, value in (item.items() if isinstance(item, dict) else ()):
                if name != "__is_block__":
                    self.locals[_unquote(name)] = value
        for item in body.get("resource", []) or []:
            for kind, named in (item.items() if isinstance(item, dict) else ()):
                kind = _unquote(kind)
                for name, resource in (named.items() if isinstance(named, dict) else ()):
                    address = f"{kind}.{_unquote(name)}"
                    if not kind.startswith(PREFIX):
                        continue
                    if address in self.resources and self.resources[address][0] != file:
                        self.problems.append((file, address, "", f"declared again (also in {self.resources[address][0]})"))
                        continue
                    self.resources[address] = (file, kind, resource if isinstance(resource, dict) else {})
                    self.order[file].append(address)

    def undeclared(self) -> list[str]:
        return sorted(name for name in self.given if name not in self.variables)

    def convert_file(self, file: str) -> Result:
        """The App Mesh resources declared in ``file`` (never raises on bad input)."""
        result = Result()
        for source, path, message in ((s, p, m) for f, s, p, m in self.problems if f == file):
            result.problem(source, path, message)
        for address in self.order.get(file, []):
            _, kind, body = self.resources[address]
            one = Result()
            try:
                _Evaluator(self, address).resource(kind, body, one)
            except RecursionError:
                one.problem(address, "", "expressions nested too deeply")
            result.documents.extend(one.documents)
            result.problems.extend(one.problems)
            result.complete = result.complete and one.complete
        return result


class _Evaluator:
    def __init__(self, module: Module, address: str):
        self.module, self.address = module, address
        self.active: set[str] = set()

    def resource(self, kind: str, body: dict, result: Result) -> None:
        if kind not in TYPES:
            result.problem(self.address, "", f"{kind} cannot be converted (known: {', '.join(TYPES)})")
            return
        native_kind, parent_attribute, parent_key = TYPES[kind]
        for meta in ("count", "for_each"):
            if meta in body:
                result.problem(self.address, meta, f"{meta} is not expanded by meshplane; write one resource per object")
                return
        wanted = [("name", "name")] + ([] if native_kind == "Mesh" else [("mesh", "mesh_name")])
        if parent_attribute:
            wanted.append((parent_key, parent_attribute))
        native: dict[str, Any] = {"kind": native_kind}
        paths: dict[str, str] = {"spec": "spec"}
        for key, attribute in wanted:
            paths[key] = attribute
            if attribute not in body:
                result.problem(self.address, attribute, "required")
                continue
            try:
                native[key] = self.value(body[attribute], attribute)
            except Unresolved as err:
                result.problem(self.address, err.path, err.message)
        known = {a for _, a in wanted} | {"spec", "__is_block__", *_IGNORED}
        for attribute in body:
            if attribute not in known:
                result.problem(self.address, attribute, f"unknown argument (allowed: {', '.join(sorted(known - {'__is_block__'}))})")
        spec = body.get("spec", [])
        try:
            spec = self.value(spec, "spec")
        except Unresolved as err:
            result.problem(self.address, err.path, err.message)
        if not result.complete:
            return
        native["spec"] = spec_from_blocks(spec, "spec", paths, result, self.address, indexed=False)
        if result.complete:
            result.documents.append(Converted(native, Origin(self.address, paths)))

    # ---------------------------------------------------------------- values

    def value(self, raw: Any, path: str) -> Any:
        if isinstance(raw, str):
            return self.string(raw, path)
        if isinstance(raw, list):
            if raw and all(isinstance(v, dict) and v.get("__is_block__") for v in raw):
                key = path.rsplit(".", 1)[-1]  # a block that holds at most one is written without [0]
                single = len(raw) == 1 and key not in REPEATED
                return [self.value(v, path if single else join(path, i)) for i, v in enumerate(raw)]
            return [self.value(v, join(path, i)) for i, v in enumerate(raw)]
        if isinstance(raw, dict):
            if raw.get("__is_block__"):
                out = {}
                for key, v in raw.items():
                    if key == "__is_block__":
                        continue
                    if key == "dynamic":
                        raise Unresolved(join(path, key), "dynamic blocks are not expanded by meshplane; write the blocks")
                    out[_unquote(key)] = self.value(v, join(path, _unquote(key)))
                return out
            return {_unquote(k): self.value(v, join(path, _unquote(k))) for k, v in raw.items()}
        return raw

    def string(self, raw: str, path: str) -> Any:
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            return self.template(raw[1:-1], path)
        if raw.startswith("${") and raw.endswith("}"):
            return self.expression(raw[2:-1], path)
        return self.expression(raw, path)

    def template(self, text: str, path: str) -> Any:
        pieces: list[Any] = []
        i = 0
        literal = []
        while i < len(text):
            if text.startswith("$${", i):
                literal.append("${")
                i += 3
                continue
            if text.startswith("${", i):
                depth, j = 1, i + 2
                while j < len(text) and depth:
                    depth += {"{": 1, "}": -1}.get(text[j], 0)
                    j += 1
                if depth:
                    raise Unresolved(path, f"unterminated interpolation in \"{text}\"")
                if literal:
                    pieces.append(_unescape("".join(literal)))
                    literal = []
                pieces.append(("expr", text[i + 2:j - 1]))
                i = j
                continue
            literal.append(text[i])
            i += 1
        if literal:
            pieces.append(_unescape("".join(literal)))
        if len(pieces) == 1 and isinstance(pieces[0], tuple):
            return self.expression(pieces[0][1], path)
        out = []
        for piece in pieces:
            if isinstance(piece, tuple):
                value = self.expression(piece[1], path)
                if isinstance(value, bool):
                    value = "true" if value else "false"
                if not isinstance(value, (str, int, float)):
                    raise Unresolved(path, f"${{{piece[1]}}} is not a string")
                out.append(str(value))
            else:
                out.append(piece)
        return "".join(out)

    def expression(self, expr: str, path: str) -> Any:
        expr = expr.strip()
        if len(expr) >= 2 and expr[0] == expr[-1] == '"':
            return self.template(expr[1:-1], path)
        if expr in ("true", "false"):
            return expr == "true"
        if expr == "null":
            return None
        if _NUMBER.match(expr):
            return float(expr) if any(c in expr for c in ".eE") else int(expr)
        match = _REFERENCE.match(expr)
        if match:
            head, name, attribute = match.groups()
            if head == "var" and attribute is None:
                return self.variable(name, path)
            if head == "local" and attribute is None:
                return self.local(name, path)
            if head.startswith(PREFIX) and attribute is not None:
                return self.attribute(f"{head}.{name}", attribute, path)
            if head == "data":
                raise Unresolved(path, f"{expr}: data sources are not read by meshplane; write the value or a variable")
        raise Unresolved(path, f"expression `{expr}` is not evaluated by meshplane (supported: literals, \"${{...}}\" "
                               "interpolation, var.NAME, local.NAME, aws_appmesh_*.NAME.name/.mesh_name, "
                               "aws_appmesh_mesh.NAME.id)")

    def variable(self, name: str, path: str) -> Any:
        declaration = self.module.variables.get(name)
        if declaration is None:
            raise Unresolved(path, f"var.{name}: no variable \"{name}\" is declared in the loaded .tf files")
        if name in self.module.given:
            return typed(self.module.given[name], declaration)
        if "default" in declaration:
            return _Evaluator(self.module, f"variable.{name}").value(declaration["default"], path)
        raise Unresolved(path, f"variable {name} has no value: give it with -var {name}=VALUE or -var-file FILE.tfvars "
                               "(or add a default)")

    def local(self, name: str, path: str) -> Any:
        if name not in self.module.locals:
            raise Unresolved(path, f"local.{name}: no such local value in the loaded .tf files")
        key = f"local.{name}"
        if key in self.active:
            raise Unresolved(path, f"local.{name} refers to itself")
        self.active.add(key)
        try:
            return self.value(self.module.locals[name], path)
        finally:
            self.active.discard(key)

    def attribute(self, address: str, attribute: str, path: str) -> Any:
        found = self.module.resources.get(address)
        if found is None:
            raise Unresolved(path, f"{address}.{attribute}: no resource {address} in the loaded .tf files")
        _, kind, body = found
        if attribute == "id":
            if kind != "aws_appmesh_mesh":
                raise Unresolved(path, f"{address}.id is an App Mesh ID, not its name; use {address}.name")
            attribute = "name"
        if attribute not in _NAME_ATTRIBUTES:
            raise Unresolved(path, f"{address}.{attribute}: only the name attributes (name, mesh_name, "
                                   "virtual_router_name, virtual_gateway_name; id of a mesh) have a value outside AWS")
        if attribute not in body:
            raise Unresolved(path, f"{address}.{attribute}: {address} does not set {attribute}")
        key = f"{address}.{attribute}"
        if key in self.active:
            raise Unresolved(path, f"{key} refers to itself")
        self.active.add(key)
        try:
            return self.value(body[attribute], path)
        except Unresolved as err:
            raise Unresolved(path, f"{key} cannot be evaluated: {err.message}") from None
        finally:
            self.active.discard(key)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    try:
        return json.loads(f'"{text}"')
    except ValueError:
        return text


def typed(value: Any, declaration: Mapping[str, Any]) -> Any:
    """A ``-var`` string as the variable's declared ``type`` (number, bool) takes it."""
    kind = str(declaration.get("type", "")).strip("${}\" ")
    if not isinstance(value, str):
        return value
    if kind == "number" and _NUMBER.match(value):
        return float(value) if any(c in value for c in ".eE") else int(value)
    if kind == "bool" and value in ("true", "false"):
        return value == "true"
    return value


def var_file_values(text: str) -> dict[str, Any]:
    """The values of a ``.tfvars`` file (literals only; raises ValueError)."""
    body = parse(text)
    module = Module()
    out = {}
    for name, raw in body.items():
        try:
            out[_unquote(name)] = _Evaluator(module, "tfvars").value(raw, _unquote(name))
        except Unresolved as err:
            raise ValueError(f"{err.path}: {err.message}") from None
    return out


# ---------------------------------------------------------------------------- spec blocks


def spec_from_blocks(spec: Any, original: str, paths: dict[str, str], result: Result, source: str,
                     *, indexed: bool) -> dict:
    """The provider's ``spec`` (a list of at most one block) -> the API's camelCase spec.
    ``indexed``: single blocks are written ``[0]`` in the original paths (show -json)."""
    if spec in (None, []):
        return {}
    if isinstance(spec, list):
        if len(spec) > 1:
            result.problem(source, join(original, 1), "at most one spec block")
        spec, original = spec[0], (join(original, 0) if indexed else original)
    if not isinstance(spec, dict):
        result.problem(source, original, "expected a spec block")
        return {}
    return _block(spec, "spec", original, paths, result, source, indexed)


def _block(body: dict, native: str, original: str, paths: dict[str, str], result: Result, source: str,
           indexed: bool) -> dict:
    out: dict[str, Any] = {}
    for key, value in body.items():
        if value is None or value == [] or value == "" or (key == "port" and value == 0 and indexed):
            continue  # unset (show -json writes the provider's zero values)
        tf_child = join(original, key)
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            if key in REPEATED:
                api = REPEATED[key]
                nat = join(native, api)
                paths[nat] = tf_child
                out[api] = []
                for i, item in enumerate(value):
                    paths[join(nat, i)] = join(tf_child, i)
                    out[api].append(_block(item, join(nat, i), join(tf_child, i), paths, result, source, indexed))
            else:
                api = camel(key)
                nat = join(native, api)
                if len(value) > 1:
                    result.problem(source, join(tf_child, 1), f"at most one {key} block")
                inner = join(tf_child, 0) if indexed else tf_child
                paths[nat] = inner
                out[api] = _block(value[0], nat, inner, paths, result, source, indexed)
            continue
        api = camel(key)
        nat = join(native, api)
        paths[nat] = tf_child
        if key == "attributes" and isinstance(value, dict):  # aws_cloud_map: a map in Terraform, [{key, value}] in the API
            out[api] = [{"key": k, "value": v} for k, v in value.items()]
        else:
            out[api] = value
    return out


# ---------------------------------------------------------------------------- terraform show -json


def is_show_output(data: Any) -> bool:
    return (isinstance(data, dict) and "kind" not in data and "format_version" in data
            and isinstance(data.get("values", data.get("planned_values")), dict))


def convert_show(data: dict) -> Result:
    """``terraform show -json`` output -> native documents (never raises on bad input)."""
    result = Result()
    key = "values" if isinstance(data.get("values"), dict) else "planned_values"
    root = data[key].get("root_module")
    if not isinstance(root, dict):
        return result
    stack = [(root, f"{key}.root_module")]
    while stack:
        module, where = stack.pop(0)
        for i, resource in enumerate(module.get("resources") or []):
            if isinstance(resource, dict):
                one = Result()
                _show_resource(resource, f"{where}.resources[{i}]", one)
                result.documents.extend(one.documents)
                result.problems.extend(one.problems)
                result.complete = result.complete and one.complete
        for i, child in enumerate(module.get("child_modules") or []):
            if isinstance(child, dict):
                stack.append((child, f"{where}.child_modules[{i}]"))
    return result


def _show_resource(resource: dict, where: str, result: Result) -> None:
    kind = resource.get("type")
    if resource.get("mode", "managed") != "managed" or not (isinstance(kind, str) and kind.startswith(PREFIX)):
        return
    address = str(resource.get("address") or f"{kind}.{resource.get('name')}")
    if kind not in TYPES:
        result.problem(address, f"{where}.type", f"{kind} cannot be converted (known: {', '.join(TYPES)})")
        return
    values = resource.get("values")
    base = f"{where}.values"
    if not isinstance(values, dict):
        result.problem(address, base, "expected the resource's attribute values")
        return
    native_kind, parent_attribute, parent_key = TYPES[kind]
    wanted = [("name", "name")] + ([] if native_kind == "Mesh" else [("mesh", "mesh_name")])
    if parent_attribute:
        wanted.append((parent_key, parent_attribute))
    native: dict[str, Any] = {"kind": native_kind}
    paths: dict[str, str] = {"spec": f"{base}.spec"}
    for key, attribute in wanted:
        paths[key] = f"{base}.{attribute}"
        if not isinstance(values.get(attribute), str):
            result.problem(address, f"{base}.{attribute}", "required: a string (unknown until apply in a plan?)")
            continue
        native[key] = values[attribute]
    known = {a for _, a in wanted} | {"spec", *_IGNORED, *_COMPUTED}
    for attribute in values:
        if attribute not in known:
            result.problem(address, f"{base}.{attribute}", "unknown attribute of " + kind)
    if not result.complete:
        return
    native["spec"] = spec_from_blocks(values.get("spec"), f"{base}.spec", paths, result, address, indexed=True)
    result.documents.append(Converted(native, Origin(address, paths)))
