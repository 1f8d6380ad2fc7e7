"""A readable field-level diff of two Envoy resources (as proto-named dicts).

Lists whose items carry a ``name`` (virtual hosts, routes, weighted clusters, filter chains...)
are compared by name, so a reordering or an insertion reads as what it is; other lists by index.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import json_format

ABSENT = "(absent)"


def to_dict(message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _key_of(old: list, new: list) -> str | None:
    for key in ("name", "cluster_name"):
        if (old or new) and all(isinstance(i, dict) and key in i for i in old + new):
            if all(len({i[key] for i in items}) == len(items) for items in (old, new)):
                return key
    return None


def field_diff(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) of every leaf that differs; a missing side is ``ABSENT``."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out.extend(field_diff(old.get(key, ABSENT), new.get(key, ABSENT), sub))
        return out
    if isinstance(old, list) and isinstance(new, list):
        key = _key_of(old, new)
        if key is not None:
            old_items = {i[key]: i for i in old}
            new_items = {i[key]: i for i in new}
            out = []
            order = [i[key] for i in old] + [i[key] for i in new if i[key] not in old_items]
            for name in order:
                out.extend(field_diff(old_items.get(name, ABSENT), new_items.get(name, ABSENT), f"{path}[{name}]"))
            old_order = [n for n in (i[key] for i in old) if n in new_items]
            new_order = [n for n in (i[key] for i in new) if n in old_items]
            if old_order != new_order:
                out.append((f"{path} (order)", old_order, new_order))
            return out
        out = []
        for i in range(max(len(old), len(new))):
            out.extend(field_diff(old[i] if i < len(old) else ABSENT, new[i] if i < len(new) else ABSENT, f"{path}[{i}]"))
        return out
    return [(path, old, new)]


def short(value: Any, limit: int = 120) -> str:
    if value is ABSENT or value == ABSENT:
        return ABSENT
    text = value if isinstance(value, str) else _compact(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(", ", ": "))
