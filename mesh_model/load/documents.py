"""One parsed document -> one ``Resource``: its kind, its identity and its typed spec checked.

The envelope of a native document is ``kind``, the identity keys its kind takes (``name``
always; ``mesh``, ``virtualRouter``, ``virtualGateway`` or ``namespaceName`` as the kind
needs) and ``spec``, the App Mesh API spec validated by the kind's model in
``mesh_model.spec.shapes``. Each document is checked on its own here; references between
resources are checked once all are parsed (``mesh_model.validate``).
"""
from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from mesh_model.errors import Issue
from mesh_model.load.yaml_scan import Document
from mesh_model.spec.model import KINDS, Resource
from mesh_model.spec.pydantic_errors import describe, printable, spec_problems
from mesh_model.spec.shapes import SPEC_BY_KIND

ENVELOPE_KEYS = ("kind", "mesh", "virtualRouter", "virtualGateway", "namespaceName", "name", "spec")
# which identity keys each kind takes (name always; spec always allowed)
_IDENTITY = {
    "Mesh": (),
    "VirtualService": ("mesh",),
    "VirtualRouter": ("mesh",),
    "Route": ("mesh", "virtualRouter"),
    "VirtualNode": ("mesh",),
    "CloudMapService": ("namespaceName",),
    "VirtualGateway": ("mesh",),
    "GatewayRoute": ("mesh", "virtualGateway"),
}


def resource_from_document(doc: Document, issues: list[Issue]) -> Resource | None:
    """Validate one document's envelope and spec.

    Returns None when the document has no usable identity (bad kind/name...). When only
    the spec is invalid, returns a Resource with ``spec=None`` so that references to it
    are not reported as dangling (the spec problems are already in ``issues``).
    """
    data = doc.data
    if not isinstance(data, dict):
        issues.append(Issue(doc.file, doc.where, "", f"expected a mapping with kind, name and spec, got {describe(data)}"))
        return None
    kind = _check_kind(doc, data.get("kind"), issues)
    if kind is None:
        _report_problems(doc, doc.where, {"kind"}, issues)
        return None
    before = len(issues)
    identity = _check_identity(doc, kind, data, issues)
    identified = len(issues) == before
    label = _label(kind, identity) if identified else doc.where
    _report_problems(doc, label, {issue.path for issue in issues[before:]}, issues)
    allowed = ("kind", "name") + _IDENTITY[kind] + ("spec",)
    for key in data:
        if isinstance(key, str) and key not in ENVELOPE_KEYS:
            issues.append(Issue(doc.file, label, "", f"unknown field '{key}' (allowed: {', '.join(allowed)})"))
    if any(path == "spec" or path.startswith(("spec.", "spec[")) for path, _ in doc.problems):
        spec, spec_ok = None, False  # already reported; pydantic would only repeat them less clearly
    else:
        spec, spec_ok = _check_spec(doc, kind, label, data.get("spec"), issues)
    if not identified:
        return None
    return Resource(
        kind=kind,
        name=identity["name"],
        spec=spec if spec_ok else None,
        mesh=identity["name"] if kind == "Mesh" else identity.get("mesh", ""),
        virtualRouter=identity.get("virtualRouter", ""),
        virtualGateway=identity.get("virtualGateway", ""),
        namespaceName=identity.get("namespaceName", ""),
        file=doc.file,
        digest=_spec_digest(spec) if spec_ok else "",
    )


def _spec_digest(spec: Any) -> str:
    """A content hash of the validated spec: comparing two models' resources is then a string
    comparison instead of a deep one (``compiler.changed_keys``)."""
    return hashlib.blake2b(spec.__pydantic_serializer__.to_json(spec), digest_size=16).hexdigest()


def _report_problems(doc: Document, label: str, reported: set[str], issues: list[Issue]) -> None:
    """The string/key problems found while reading, except on fields already reported."""
    issues.extend(Issue(doc.file, label, path, message) for path, message in doc.problems if path not in reported)


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
    for key in ("name", "mesh", "virtualRouter", "virtualGateway", "namespaceName"):
        value = data.get(key)
        if key not in wanted:
            if key in data:
                issues.append(Issue(doc.file, doc.where, key, f"not allowed for kind {kind}"))
            continue
        problem = _name_problem(value, 1024 if key == "namespaceName" else 255)
        if not problem and kind == "Mesh" and "@" in value:
            problem = f"must not contain '@': node ids read mesh/<mesh>@<account id>/..., so no Envoy could join this mesh (got '{printable(value)}')"
        if problem:
            issues.append(Issue(doc.file, doc.where, key, problem))
        else:
            identity[key] = value
    return identity


def _name_problem(value: Any, max_length: int) -> str | None:
    """Names become Envoy resource names, stat names and node ids
    (``mesh/<mesh>/virtualNode/<name>``): no ``/``, no whitespace, and no control or
    invisible characters (NUL, bidi overrides such as U+202E, zero-width joiners...,
    which would make two different names look the same in logs and configs). Anything
    else printable is allowed: App Mesh names are 1..255 characters of any kind, and
    unicode letters, combining marks and emoji are fine."""
    if value is None:
        return "required field missing"
    if not isinstance(value, str):
        return f"expected a string, got {describe(value)}"
    if not 1 <= len(value) <= max_length:
        return "must not be empty" if not value else f"must be at most {max_length} characters (got {len(value)})"
    if "/" in value or any(c.isspace() for c in value):
        return f"must not contain '/' or whitespace, got '{printable(value)}'"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return f"must not contain control or invisible characters (U+{ord(bad):04X}), got '{printable(value)}'"
    return None


def _label(kind: str, identity: dict[str, str]) -> str:
    return Resource(kind=kind, name=identity["name"], spec=None, mesh=identity.get("mesh", ""),
                    virtualRouter=identity.get("virtualRouter", ""), virtualGateway=identity.get("virtualGateway", ""),
                    namespaceName=identity.get("namespaceName", "")).label


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
