"""Read App Mesh resource files/folders into a validated, immutable ``MeshModel``.

Native format: one resource per YAML document (``---`` separated), many per file::

    kind: Route            # Mesh | VirtualService | VirtualRouter | Route | VirtualNode | CloudMapService
    mesh: shop             # not for Mesh / CloudMapService
    virtualRouter: router  # Route only
    namespaceName: ns      # CloudMapService only
    name: main
    spec: {...}            # the App Mesh API spec, camelCase

Loading is all-or-nothing: every problem of every file is collected and raised as one
``ModelError``, so a user fixes everything in one pass and a half-valid model never
reaches the compiler (or replaces a good one in the file watcher).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import yaml
from pydantic import ValidationError

from .errors import Issue, ModelError
from .resources import KINDS, Mesh, MeshModel, Resource, frozen_map
from .spec import SPEC_BY_KIND
from .spec_errors import describe, spec_problems
from .validate import check_references

SUFFIXES = (".yaml", ".yml", ".json")
UNSUPPORTED_KINDS = ("VirtualGateway", "GatewayRoute")
ENVELOPE_KEYS = ("kind", "mesh", "virtualRouter", "namespaceName", "name", "spec")
# which identity keys each kind takes (name always; spec always allowed)
_IDENTITY = {
    "Mesh": (),
    "VirtualService": ("mesh",),
    "VirtualRouter": ("mesh",),
    "Route": ("mesh", "virtualRouter"),
    "VirtualNode": ("mesh",),
    "CloudMapService": ("namespaceName",),
    "VirtualGateway": ("mesh",),
    "GatewayRoute": ("mesh",),
}


@dataclass(frozen=True)
class Document:
    """One parsed YAML/JSON document and where it came from."""

    file: str
    index: int  # 1-based position in the file
    line: int  # 1-based first line (0 when unknown)
    data: Any

    @property
    def where(self) -> str:
        return f"document {self.index} (line {self.line})" if self.line else f"document {self.index}"


# ---------------------------------------------------------------------------- public API


def load_paths(paths: Sequence[str | os.PathLike]) -> MeshModel:
    """Load files and folders (recursively: ``*.yaml``, ``*.yml``, ``*.json``, sorted by path).

    Raises ``ModelError`` listing every problem found in any file.
    """
    issues: list[Issue] = []
    texts = list(_read_files(paths, issues))
    return _load(texts, issues)


def load_texts(texts: Sequence[tuple[str, str]]) -> MeshModel:
    """Load ``(file label, text)`` pairs; same rules as :func:`load_paths`.

    A label ending in ``.json`` is parsed as JSON, anything else as YAML.
    """
    return _load(list(texts), [])


def _load(texts: list[tuple[str, str]], issues: list[Issue]) -> MeshModel:
    """Parse, validate each document, cross-check, then build (only if nothing failed).

    Cross-file checks (references, duplicates) run only when every document could be
    identified: a file with a syntax error may hide the very resource a reference
    names, and reporting that as "not found" would send the user on a wrong chase.
    """
    complete = not issues  # an unreadable file hides resources too
    resources: list[Resource] = []
    for label, text in texts:
        docs, parsed = _parse_documents(label, text, issues)
        complete = complete and parsed
        for doc in docs:
            resource = _resource_from_document(doc, issues)
            if resource is not None:
                resources.append(resource)
            elif not (isinstance(doc.data, dict) and doc.data.get("kind") in UNSUPPORTED_KINDS):
                complete = False
    if complete:
        issues.extend(check_references(resources))
    if issues:
        raise ModelError(issues)
    return build_model(resources)


# ---------------------------------------------------------------------------- files


def _read_files(paths: Sequence[str | os.PathLike], issues: list[Issue]) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` for every input file, each real file once."""
    seen: set[str] = set()
    for path in paths:
        for file in _expand(os.fspath(path), issues):
            real = os.path.realpath(file)
            if real in seen:
                continue
            seen.add(real)
            text = _read_text(file, issues)
            if text is not None:
                yield file, text


def _expand(path: str, issues: list[Issue]) -> list[str]:
    """A file as is; a folder as its resource files, recursively, sorted by path.

    Names starting with ``.`` are skipped: editor temp files, ``.git``, and the
    ``..data``/``..2024_...`` twins in Kubernetes ConfigMap volume mounts (which would
    otherwise load every resource twice).
    """
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        issues.append(Issue(path, "", "", "no such file or directory"))
        return []
    found = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(folder, f) for f in files if f.endswith(SUFFIXES) and not f.startswith(".")]
    return sorted(found)


def _read_text(file: str, issues: list[Issue]) -> str | None:
    try:
        with open(file, "rb") as handle:
            return handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        issues.append(Issue(file, "", "", f"not UTF-8 text (byte {err.start})"))
    except OSError as err:
        issues.append(Issue(file, "", "", f"cannot read: {err.strerror or err}"))
    return None


# ---------------------------------------------------------------------------- YAML / JSON


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one,
    which hides copy-paste mistakes like two ``port:`` lines)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML signature
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key, line = key_node.value, key_node.start_mark.line + 1
                if key in first_line:
                    problem = f"duplicate key '{key}' (first at line {first_line[key]})"
                    raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _parse_documents(label: str, text: str, issues: list[Issue]) -> tuple[list[Document], bool]:
    """All non-empty documents of one file, and whether the whole file parsed (on a syntax
    error, the documents before it are still returned so their problems are reported)."""
    if label.endswith(".json"):
        return _parse_json(label, text, issues)
    docs: list[Document] = []
    parsed = False
    loader = _StrictLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            index += 1
            data = loader.construct_document(node)
            if data is not None:
                docs.append(Document(label, index, node.start_mark.line + 1, data))
        parsed = True
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "line ?"
        issues.append(Issue(label, "", where, _yaml_message(err, text)))
    except yaml.YAMLError as err:
        issues.append(Issue(label, "", "line ?", str(err)))
    finally:
        loader.dispose()
    return docs, parsed


def _yaml_message(err: yaml.MarkedYAMLError, text: str) -> str:
    """The YAML problem, plus where the construct it belongs to started (an unclosed
    ``[`` is reported at the end of the file, far from the real mistake)."""
    mark, context_mark = err.problem_mark, err.context_mark
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        return "tab character found; YAML must be indented with spaces"
    message = err.problem or err.context or "invalid YAML"
    if err.problem and err.context and context_mark is not None and (mark is None or context_mark.line != mark.line):
        message += f" ({err.context} started at line {context_mark.line + 1})"
    return message


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column] if line < len(lines) and column < len(lines[line]) else ""


def _parse_json(label: str, text: str, issues: list[Issue]) -> tuple[list[Document], bool]:
    """A JSON file holds one resource object or a list of them."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        issues.append(Issue(label, "", f"line {err.lineno} column {err.colno}", err.msg))
        return [], False
    items = data if isinstance(data, list) else [data]
    return [Document(label, i, 0, item) for i, item in enumerate(items, 1) if item is not None], True


# ---------------------------------------------------------------------------- documents -> resources


def _resource_from_document(doc: Document, issues: list[Issue]) -> Resource | None:
    """Validate one document's envelope and spec.

    Returns None when the document has no usable identity (bad kind/name...). When only
    the spec is invalid, returns a Resource with ``spec=None`` so that references to it
    are not reported as dangling (the spec problems are already in ``issues``).
    """
    data = doc.data
    if not isinstance(data, dict):
        issues.append(Issue(doc.file, doc.where, "", f"expected a mapping with kind, name and spec, got {describe(data)}"))
        return None
    if "apiVersion" in data or "metadata" in data:
        issues.append(Issue(doc.file, doc.where, "", "looks like a Kubernetes App Mesh custom resource (apiVersion/metadata); "
                                                     "meshplane reads the App Mesh API shape: kind, mesh, name, spec"))
        return None
    kind = _check_kind(doc, data.get("kind"), issues)
    if kind is None:
        return None
    before = len(issues)
    identity = _check_identity(doc, kind, data, issues)
    identified = len(issues) == before
    label = _label(kind, identity) if identified else doc.where
    allowed = ("kind", "name") + _IDENTITY[kind] + ("spec",)
    for key in data:
        if key not in ENVELOPE_KEYS:
            issues.append(Issue(doc.file, label, "", f"unknown field '{key}' (allowed: {', '.join(allowed)})"))
    spec, spec_ok = _check_spec(doc, kind, label, data.get("spec"), issues)
    if kind in UNSUPPORTED_KINDS:
        issues.append(Issue(doc.file, label, "", f"kind {kind} is not supported yet"))
        return None
    if not identified:
        return None
    return Resource(
        kind=kind,
        name=identity["name"],
        spec=spec if spec_ok else None,
        mesh=identity["name"] if kind == "Mesh" else identity.get("mesh", ""),
        virtualRouter=identity.get("virtualRouter", ""),
        namespaceName=identity.get("namespaceName", ""),
        file=doc.file,
    )


def _check_kind(doc: Document, kind: Any, issues: list[Issue]) -> str | None:
    known = ", ".join(KINDS)
    if kind is None:
        issues.append(Issue(doc.file, doc.where, "kind", f"required field missing (one of: {known})"))
    elif isinstance(kind, str) and kind in SPEC_BY_KIND:
        return kind
    else:
        shown = f"'{kind}'" if isinstance(kind, str) else describe(kind)
        issues.append(Issue(doc.file, doc.where, "kind", f"unknown kind {shown}; known kinds: {known}"))
    return None


def _check_identity(doc: Document, kind: str, data: dict, issues: list[Issue]) -> dict[str, str]:
    """``name`` plus the identity keys this kind needs (and none it does not take)."""
    identity: dict[str, str] = {}
    wanted = ("name",) + _IDENTITY[kind]
    for key in ("name", "mesh", "virtualRouter", "namespaceName"):
        value = data.get(key)
        if key not in wanted:
            if key in data:
                issues.append(Issue(doc.file, doc.where, key, f"not allowed for kind {kind}"))
            continue
        problem = _name_problem(value, 1024 if key == "namespaceName" else 255)
        if problem:
            issues.append(Issue(doc.file, doc.where, key, problem))
        else:
            identity[key] = value
    return identity


def _name_problem(value: Any, max_length: int) -> str | None:
    """Names become Envoy resource names and node ids (``mesh/<mesh>/virtualNode/<name>``):
    no ``/`` and no whitespace."""
    if value is None:
        return "required field missing"
    if not isinstance(value, str):
        return f"expected a string, got {describe(value)}"
    if not 1 <= len(value) <= max_length:
        return "must not be empty" if not value else f"must be at most {max_length} characters (got {len(value)})"
    if "/" in value or any(c.isspace() for c in value):
        return f"must not contain '/' or whitespace, got '{value}'"
    return None


def _label(kind: str, identity: dict[str, str]) -> str:
    return Resource(kind=kind, name=identity["name"], spec=None, mesh=identity.get("mesh", ""),
                    virtualRouter=identity.get("virtualRouter", ""), namespaceName=identity.get("namespaceName", "")).label


def _check_spec(doc: Document, kind: str, label: str, raw: Any, issues: list[Issue]) -> tuple[Any, bool]:
    """Validate ``spec`` (absent/null means ``{}``) against the kind's model."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.append(Issue(doc.file, label, "spec", f"expected a mapping, got {describe(raw)}"))
        return None, False
    model = SPEC_BY_KIND[kind]
    try:
        return model.model_validate(raw), True
    except ValidationError as err:
        issues.extend(Issue(doc.file, label, path, message) for path, message in spec_problems(err, model))
        return None, False


# ---------------------------------------------------------------------------- model


def build_model(resources: Sequence[Resource]) -> MeshModel:
    """Index validated resources into the immutable, name-sorted ``MeshModel``.

    Every router gets an entry in ``Mesh.routes`` (empty when it has no routes).
    """
    grouped: dict[tuple[str, str], dict[str, Resource]] = {}  # (kind, mesh) -> name -> resource
    routes: dict[tuple[str, str], dict[str, Resource]] = {}  # (mesh, router) -> name -> route
    cloud_map = {}
    for r in resources:
        if r.kind == "CloudMapService":
            cloud_map[(r.namespaceName, r.name)] = r
        elif r.kind == "Route":
            routes.setdefault((r.mesh, r.virtualRouter), {})[r.name] = r
        else:
            grouped.setdefault((r.kind, r.mesh), {})[r.name] = r

    def named(kind: str, mesh: str) -> dict[str, Resource]:
        return grouped.get((kind, mesh), {})

    meshes = {}
    for mesh in (r for r in resources if r.kind == "Mesh"):
        name = mesh.name
        routers = named("VirtualRouter", name)
        meshes[name] = Mesh(
            resource=mesh,
            virtual_services=frozen_map(named("VirtualService", name)),
            virtual_routers=frozen_map(routers),
            routes=frozen_map({router: frozen_map(routes.get((name, router), {})) for router in routers}),
            virtual_nodes=frozen_map(named("VirtualNode", name)),
        )
    return MeshModel(meshes=frozen_map(meshes), cloud_map=frozen_map(cloud_map))
