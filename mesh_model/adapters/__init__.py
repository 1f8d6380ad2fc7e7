"""Thin adapters from other App Mesh document formats onto the native model; the loader
calls them (``k8s.convert``, ``cloudformation.convert``), users never need to.

App Mesh users hold their meshes as Kubernetes custom resources (``appmesh.k8s.aws/v1beta2``,
:mod:`.k8s`) or CloudFormation templates (``AWS::AppMesh::*``, :mod:`.cloudformation`).
An adapter turns one parsed document (a dict) into zero or more *native* documents (the
envelope the loader reads: ``kind``, ``mesh``, ``virtualRouter``/``virtualGateway``,
``name``, ``spec``), plus problems ``(path, message)`` for what cannot be converted.
The loader then validates the native documents exactly like hand-written ones.

Each native document carries an :class:`Origin`: which object of the original file it came
from (for the error label) and how its field paths map back to the original document, so
that an error on ``spec.httpRoute.action.weightedTargets[1].virtualNode`` of a converted
route reads ``spec.routes[0].httpRoute.action.weightedTargets[1].virtualNodeRef.name`` of
the VirtualRouter the user wrote.

Adapters are pure functions of their input (and, for Kubernetes, of the identities of all
custom resources loaded: see :class:`.k8s.Context`); they never raise on bad input.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

K8S_API_PREFIX = "appmesh.k8s.aws/"

# ``${VAR}`` left by a template that was not run through envsubst
PLACEHOLDER = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


@dataclass(frozen=True)
class Origin:
    """Where a converted native document came from.

    ``source``: the original object, e.g. ``k8s VirtualNode howto-k8s-http2/red``;
    ``paths``: native field path -> path in the original document (the longest matching
    prefix of a native path is replaced; the rest is appended as it is).
    """

    source: str
    paths: Mapping[str, str] = field(default_factory=dict)

    def translate(self, path: str) -> str:
        current = path
        while True:
            if current in self.paths:
                return self.paths[current] + path[len(current):]
            if not current:
                return path
            current = parent_path(current)


@dataclass(frozen=True)
class Converted:
    """One native document made from (part of) an original document."""

    data: dict
    origin: Origin


@dataclass
class Result:
    """What an adapter made of one original document."""

    documents: list[Converted] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (source label, path, message)
    complete: bool = True  # False when an App Mesh object could not be converted at all

    def problem(self, source: str, path: str, message: str, *, fatal: bool = True) -> None:
        self.problems.append((source, path, message))
        if fatal:
            self.complete = False


def parent_path(path: str) -> str:
    """``a.b[2]`` -> ``a.b``; ``a.b`` -> ``a``; ``a`` -> ``""``."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def format_of(data: Any) -> str | None:
    """``"k8s"`` for an App Mesh custom resource (or a Kubernetes ``kind: List`` that may hold
    some), ``"k8s-other"`` for any other Kubernetes object, ``"cloudformation"`` for a CloudFormation template, else None (native)."""
    if not isinstance(data, dict):
        return None
    api = data.get("apiVersion")
    if isinstance(api, str) and "kind" in data:
        if is_app_mesh_object(data) or (data.get("kind") == "List" and isinstance(data.get("items"), list)):
            return "k8s"
        return "k8s-other"
    if "AWSTemplateFormatVersion" in data or ("Resources" in data and isinstance(data.get("Resources"), dict) and "kind" not in data):
        return "cloudformation"
    return None


def is_app_mesh_object(data: Any) -> bool:
    """A Kubernetes object of the App Mesh API group (``appmesh.k8s.aws/...``, or a misspelling
    of it starting with ``appmesh``: reported, never skipped as "not App Mesh")."""
    api = data.get("apiVersion") if isinstance(data, dict) else None
    return isinstance(api, str) and api.lower().startswith("appmesh")


def placeholders(value: Any, path: str, skip: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(path, variable)`` of every ``${VAR}`` in the strings of ``value`` (iteratively;
    mapping keys named in ``skip`` are not entered, e.g. CloudFormation's ``Fn::Sub``)."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            found.extend((where, match.group(1)) for match in PLACEHOLDER.finditer(item))
        elif isinstance(item, dict):
            stack.extend((v, join(where, k)) for k, v in item.items() if not (isinstance(k, str) and k in skip))
        elif isinstance(item, list):
            stack.extend((v, join(where, i)) for i, v in enumerate(item))
    return sorted(found)


def placeholder_message(variable: str) -> str:
    return f"placeholder ${{{variable}}} was not substituted; substitute it, e.g. with envsubst, before loading"
