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
MAX_JSON_DEPTH = 64  # App Mesh's deepest request shapes are ~12 levels deep
SKIP = frozenset({"spec"})  # validated by mesh_model's loader


def loads_json(body: bytes | str) -> Any:
    """The JSON of a request body, ``BadRequestException`` for anything that is not JSON, not
    UTF-8 (-16, -32) or nested deeper than ``MAX_JSON_DEPTH`` (which would otherwise reach
    Python's recursion limit somewhere after parsing)."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise bad_request(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise bad_request(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items = value.values()
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in items if isinstance(item, (dict, list)))
    return False


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name, token or other stored text (NUL, lone surrogates), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def parse(op: Operation, labels: Mapping[str, str], query: str, headers: Mapping[str, str], body: bytes) -> dict:
    problems: list[str] = []
    params: dict[str, Any] = {}
    qs = parse_qs(query, keep_blank_values=True)
    lower_headers = {k.lower(): v for k, v in headers.items()}
    data: Any = {}
    if body and body.strip():
        data = loads_json(body)
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
        why = text_problem(value)
        if why:
            problems.append(f"{path}: {why}")
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
