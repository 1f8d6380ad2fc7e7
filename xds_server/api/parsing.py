"""Request parsing driven by the operation's input shape: URI labels, query string, headers
and the JSON body become one ``params`` dict keyed by member name (as botocore sends them).

Everything but ``spec`` is checked here against the shape (types, required members, lengths,
ranges); ``spec`` is checked by meshplane's own loader (``validation``), so its messages are the
ones ``meshplane validate`` prints. Every problem is reported at once.
"""
from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import parse_qs

from botocore.model import Shape, StructureShape

from xds_server.api.errors import bad_request
from xds_server.api.operations import Operation

MAX_BODY_BYTES = 16 * 1024 * 1024
SKIP = frozenset({"spec"})  # validated by mesh_model's loader


def parse(op: Operation, labels: Mapping[str, str], query: str, headers: Mapping[str, str], body: bytes) -> dict:
    problems: list[str] = []
    params: dict[str, Any] = {}
    qs = parse_qs(query, keep_blank_values=True)
    lower_headers = {k.lower(): v for k, v in headers.items()}
    data: Any = {}
    if body and body.strip():
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise bad_request("the request body must be a JSON object")
    for name, member in op.input.members.items():
        where = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if where == "uri":
            if wire in labels:
                params[name] = labels[wire]
        elif where == "querystring":
            if wire in qs:
                values = qs[wire]
                params[name] = values if member.type_name == "list" else _scalar(values[-1], member, name, problems)
        elif where == "header":
            if wire.lower() in lower_headers:
                params[name] = _scalar(lower_headers[wire.lower()], member, name, problems)
        elif name in data:
            params[name] = data[name]
    for name, value in params.items():
        if name not in SKIP:
            check(op.input.members[name], value, name, problems)
    for name in op.input.required_members:
        if name not in params or params[name] is None:
            problems.append(f"{name}: missing required parameter")
    if problems:
        raise bad_request(problems)
    return params


def _scalar(text: str, shape: Shape, name: str, problems: list[str]) -> Any:
    if shape.type_name in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            problems.append(f"{name}: expected an integer, got {text!r}")
            return None
    if shape.type_name == "boolean":
        return text.lower() == "true"
    return text


def check(shape: Shape, value: Any, path: str, problems: list[str]) -> None:
    """Check ``value`` against ``shape`` (types, required, min/max, enums); append problems."""
    if value is None:
        return
    t = shape.type_name
    meta = shape.metadata
    if t == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object")
            return
        assert isinstance(shape, StructureShape)
        for key, item in value.items():
            if key not in shape.members:
                problems.append(f"{path}.{key}: unknown field")
            else:
                check(shape.members[key], item, f"{path}.{key}", problems)
        for key in shape.required_members:
            if key not in value:
                problems.append(f"{path}.{key}: missing required field")
    elif t == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        _bounds(len(value), meta, path, problems, "items")
        for i, item in enumerate(value):
            check(shape.member, item, f"{path}[{i}]", problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string")
            return
        _bounds(len(value), meta, path, problems, "characters")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer")
            return
        if "min" in meta and value < meta["min"] or "max" in meta and value > meta["max"]:
            problems.append(f"{path}: {value} is not within {meta.get('min', '')}..{meta.get('max', '')}")
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected true or false")


def _bounds(n: int, meta: Mapping, path: str, problems: list[str], unit: str) -> None:
    if "min" in meta and n < meta["min"]:
        problems.append(f"{path}: at least {meta['min']} {unit} required, got {n}")
    if "max" in meta and n > meta["max"]:
        problems.append(f"{path}: at most {meta['max']} {unit} allowed, got {n}")
