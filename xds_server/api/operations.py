"""The operation table, straight from botocore's App Mesh model (``appmesh/2019-01-25``).

Each ``Operation`` knows its HTTP method and request URI (App Mesh's own REST paths), its
input/output shapes, and what it does to which kind: ``verb`` (Create, Describe, Update,
Delete, List, or the operation name for the tag operations) and ``kind`` (``Route``...).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from botocore.loaders import Loader
from botocore.model import ServiceModel, Shape, StructureShape

from mesh_model.spec import kinds

SERVICE = "appmesh"
API_VERSION = "2019-01-25"
VERBS = ("Create", "Describe", "Update", "Delete", "List")
KIND_NAMES = tuple(kind.name for kind in kinds.APP_MESH)  # <Verb><Kind> operations


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    uri: str
    pattern: re.Pattern
    input: StructureShape
    output: StructureShape
    verb: str
    kind: str | None  # None for TagResource, UntagResource, ListTagsForResource
    errors: tuple[str, ...]

    @property
    def writes(self) -> bool:
        return self.verb in ("Create", "Update", "Delete", "TagResource", "UntagResource")

    def payload(self) -> str | None:
        return self.output.serialization.get("payload")


@functools.lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return ServiceModel(Loader().load_service_model(SERVICE, "service-2", API_VERSION), SERVICE)


def _verb_kind(name: str) -> tuple[str, str | None]:
    for verb in VERBS:
        if name.startswith(verb):
            rest = name[len(verb):]
            if verb == "List":
                if rest == "TagsForResource":
                    return name, None
                rest = "Mesh" if rest == "Meshes" else rest[:-1]
            if rest in KIND_NAMES:
                return verb, rest
    return name, None


def _pattern(uri: str) -> re.Pattern:
    path = uri.split("?", 1)[0]
    out, pos = [], 0
    for m in re.finditer(r"\{([A-Za-z0-9_]+)(\+?)\}", path):
        out.append(re.escape(path[pos:m.start()]))
        out.append(f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("^" + "".join(out) + "$")


@functools.lru_cache(maxsize=1)
def operations() -> tuple[Operation, ...]:
    model = service_model()
    ops = []
    for name in model.operation_names:
        om = model.operation_model(name)
        verb, kind = _verb_kind(name)
        ops.append(Operation(
            name=name, method=om.http["method"], uri=om.http["requestUri"], pattern=_pattern(om.http["requestUri"]),
            input=om.input_shape, output=om.output_shape, verb=verb, kind=kind,
            errors=tuple(s.name for s in om.error_shapes),
        ))
    return tuple(ops)


def by_name(name: str) -> Operation:
    for op in operations():
        if op.name == name:
            return op
    raise KeyError(name)


def match(method: str, path: str) -> tuple[Operation, dict[str, str]] | None | str:
    """The operation for ``method path`` and its URI labels; ``None`` if no path matches,
    ``"method"`` if the path exists with other methods only."""
    path_only = False
    for op in operations():
        m = op.pattern.match(path)
        if m is None:
            continue
        if op.method != method:
            path_only = True
            continue
        return op, {k: unquote(v) for k, v in m.groupdict().items()}
    return "method" if path_only else None


@functools.lru_cache(maxsize=None)
def error_status(code: str) -> int | None:
    try:
        shape: Shape = service_model().shape_for(code)
    except Exception:
        return None
    return shape.metadata.get("error", {}).get("httpStatusCode")
