"""Turn pydantic validation errors on a spec into short, human (path, message) pairs.

Users see these messages, so pydantic's wording ("Input should be a valid integer",
documentation URLs, internal loc parts) is replaced by App Mesh-flavoured text:
``spec.listeners[0].portMapping.port: expected an integer, got string '8080'``.
"""
from __future__ import annotations

import re
import types
import typing
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from mesh_model.spec.shapes import RULE_ERROR

# pydantic-core loc parts that name a validator rather than a field
_INTERNAL_LOC = re.compile(r"^(\[key\]|function-(after|before|wrap|plain)\[.*\]|(lax|strict)-.*|json-or-python\[.*\]|tagged-union\[.*\]|union\[.*\]|chain\[.*\])$")


def spec_problems(error: ValidationError, model: type[BaseModel], root: str = "spec") -> list[tuple[str, str]]:
    """All problems of ``error`` (raised validating ``model``) as ``(path, message)``."""
    errors = _without_noise(error.errors(include_url=False))
    problems: list[tuple[str, str]] = []
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == RULE_ERROR:
            for sub, message in err["ctx"]["problems"]:
                problems.append((render_path(root, loc + tuple(sub)), message))
        elif err["type"] == "extra_forbidden":
            parent, name = loc[:-1], loc[-1]
            problems.append((render_path(root, parent), _unknown_field(str(name), model, parent)))
        else:
            problems.append((render_path(root, loc), _message(err, model)))
    return problems


def _without_noise(errors: list[dict]) -> list[dict]:
    """Drop ``too_short`` reported for a list whose items failed (pydantic counts only the
    valid items, so a 1-item list with a bad item would also claim to be empty)."""
    failed_item_parents = {tuple(e["loc"][:i]) for e in errors for i, part in enumerate(e["loc"]) if isinstance(part, int)}
    return [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in failed_item_parents)]


def render_path(root: str, loc: Iterable[Any]) -> str:
    """``("listeners", 0, "port")`` -> ``spec.listeners[0].port`` (internal parts dropped)."""
    parts = list(loc)
    text = root
    for i, part in enumerate(parts):
        if isinstance(part, str) and _INTERNAL_LOC.match(part):
            continue
        is_dict_key = i + 1 < len(parts) and parts[i + 1] == "[key]"
        if isinstance(part, int) and not is_dict_key:
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe to show on one line: control, format (bidi overrides, zero-width...)
    and other invisible characters and lone surrogates as escapes (``\\n``,
    ``\\u202e``), and shortened to ``limit`` characters. Printable text (any script,
    emoji, combining marks) is kept as is."""
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 1)] + "..."
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        elif c in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[c])
        else:
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def describe(value: Any) -> str:
    """A short description of a wrong input: ``string '8080'``, ``integer 3``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        if value.bit_length() > 130:  # ~40 digits; str() of 4,300+ digits would even raise
            return f"a {value.bit_length():,}-bit integer"
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string '{printable(value, 40)}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, (bytes, bytearray)):
        return f"binary data ({len(value):,} bytes)"
    if isinstance(value, (set, frozenset)):
        return "a set"
    try:
        shown = str(value)
    except Exception:  # noqa: BLE001 - a description must never fail
        shown = "?"
    return f"{type(value).__name__} {printable(shown, 40)}"


def _message(err: dict, model: type[BaseModel]) -> str:
    """The human message for one (non-rule, non-extra) pydantic error."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = describe(value)
    simple = {
        "missing": "required field missing",
        "int_type": f"expected an integer, got {got}",
        "int_parsing": f"expected an integer, got {got}",
        "int_from_float": f"expected an integer, got {got}",
        "string_type": f"expected a string, got {got}",
        "bool_type": f"expected true or false, got {got}",
        "bool_parsing": f"expected true or false, got {got}",
        "model_type": f"expected a mapping, got {got}",
        "model_attributes_type": f"expected a mapping, got {got}",
        "dict_type": f"expected a mapping, got {got}",
        "list_type": f"expected a list, got {got}",
        "tuple_type": f"expected a list, got {got}",
        "iterable_type": f"expected a list, got {got}",
    }
    if kind in simple:
        return simple[kind]
    if kind == "invalid_key":
        return f"field names must be strings, got {got}"
    if kind == "literal_error":
        choices = _literal_choices(model, tuple(err["loc"])) or [c.strip("'") for c in re.split(r", | or ", ctx.get("expected", ""))]
        return f"must be one of: {', '.join(choices)} (got {_short(value)})"
    bounds = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}"
    if kind == "string_too_short":
        n = ctx["min_length"]
        return "must not be empty" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx['max_length']} characters (got {len(value) if isinstance(value, str) else '?'})"
    if kind == "too_short":
        n = ctx["min_length"]
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind == "too_long":
        n = ctx["max_length"]
        return f"must have at most {n} item{'s' if n != 1 else ''} (got {ctx['actual_length']})"
    message = re.sub(r"^(Value|Assertion) error, ", "", str(err.get("msg", "invalid value")))
    if "int_max_str_digits" in message:  # int() of a 4,300+ digit string inside a validator
        return "number too large"
    return printable(message, 500)


def _short(value: Any) -> str:
    """``'PUT'`` for strings, ``describe`` otherwise (for "got ..." after a list of choices)."""
    return f"'{printable(value, 60)}'" if isinstance(value, str) else describe(value)


class HintBudget:
    """Work allowed for "did you mean" hints (edit-distance cells). Hints are a courtesy:
    with 2,000 dangling references among 2,000 names, exhaustive hints took minutes, so
    once the budget is spent, messages simply have no hint."""

    def __init__(self, cells: int = 5_000_000):
        self.cells = cells


def did_you_mean(name: str, candidates: Iterable[str], budget: HintBudget | None = None) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate within a typo's reach, else "".

    A small edit distance (not difflib's ratio) keeps long look-alike DNS names such as
    ``ghost.shop.local``/``b.shop.local`` from producing silly suggestions.
    """
    reach = max(2, len(name) // 5)
    best: tuple[int, str] | None = None
    for candidate in candidates:
        if abs(len(candidate) - len(name)) > reach:
            continue  # the distance is at least the length difference
        if budget is not None:
            budget.cells -= (len(name) + 1) * (len(candidate) + 1)
            if budget.cells < 0:
                return ""
        distance = _distance(name, candidate, reach)
        if distance <= reach and (best is None or (distance, candidate) < best):
            best = (distance, candidate)
    return f" (did you mean '{printable(best[1], 80)}'?)" if best is not None else ""


def _distance(a: str, b: str, reach: int | None = None) -> int:
    """Levenshtein distance (case-insensitive); stops early (returning ``reach + 1``) once
    it is certainly above ``reach``."""
    a, b = a.lower(), b.lower()
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if reach is not None and min(current) > reach:
            return reach + 1
        previous = current
    return previous[-1]


def _unknown_field(name: str, model: type[BaseModel], parent: tuple) -> str:
    """``unknown field 'prot' (did you mean 'protocol'?)``, else the allowed fields."""
    target = _resolve(model, parent)
    known = list(target.model_fields) if isinstance(target, type) and issubclass(target, BaseModel) else []
    hint = did_you_mean(name, known) or (f" (allowed: {', '.join(known)})" if known else "")
    return f"unknown field '{name}'{hint}"


def _literal_choices(model: type[BaseModel], loc: tuple) -> list[str]:
    """The allowed values of the ``Literal`` field at ``loc`` (in declaration order)."""
    target = _resolve(model, loc)
    if typing.get_origin(target) is typing.Literal:
        return [str(v) for v in typing.get_args(target)]
    return []


def _resolve(model: Any, loc: tuple) -> Any:
    """The (unwrapped) type found at ``loc`` inside ``model``, or None if unknown."""
    current = _unwrap(model)
    for part in loc:
        if isinstance(part, str) and _INTERNAL_LOC.match(part):
            continue
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = _unwrap(field.annotation)
        elif typing.get_origin(current) in (tuple, list):
            current = _unwrap(typing.get_args(current)[0])
        elif typing.get_origin(current) is dict:
            current = _unwrap(typing.get_args(current)[1])
        else:
            return None
    return current


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
