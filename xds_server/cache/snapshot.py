"""Immutable, content-addressed per-node snapshots of Envoy resources.

A snapshot is what one node (or group of nodes sharing a key) should hold, per xDS type URL.
Versions are content hashes over deterministic protobuf bytes, never counters or timestamps:
a restarted server or another replica computes the same version for the same configuration,
so a reconnecting Envoy's ``version_info`` can never collide with different content, and
the same content always gets the same version.

A type's version is a hash of its resources' names and digests (each digest a hash of the
resource's bytes), so a snapshot assembled from shared, already hashed resources
(``Snapshot.from_built``) costs a hash over a few hundred bytes, not over the resources.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from google.protobuf import any_pb2
from google.protobuf.message import Message

from mesh_model.compiler.built import Built

# One definition of the type URLs and their make-before-break order: the compiler's.
from mesh_model.compiler.type_urls import CLUSTER as TYPE_CLUSTER
from mesh_model.compiler.type_urls import ENDPOINT as TYPE_ENDPOINT
from mesh_model.compiler.type_urls import LISTENER as TYPE_LISTENER
from mesh_model.compiler.type_urls import PUSH_ORDER
from mesh_model.compiler.type_urls import ROUTE as TYPE_ROUTE
from mesh_model.compiler.type_urls import SECRET as TYPE_SECRET

# SotW: every response of these types holds all resources; a missing one means "deleted".
FULL_STATE_TYPES = frozenset({TYPE_CLUSTER, TYPE_LISTENER})

# the usual abbreviation of each type URL, in logs, /status and metric labels
TYPE_ABBREVIATIONS = {
    TYPE_CLUSTER: "cds",
    TYPE_ENDPOINT: "eds",
    TYPE_LISTENER: "lds",
    TYPE_ROUTE: "rds",
    TYPE_SECRET: "sds",
}

# The field that carries each resource's own name; a mismatch with the map key would make
# Envoy file the resource under a name nobody asked for, so it is rejected at build time.
_NAME_FIELD = {
    TYPE_CLUSTER: "name",
    TYPE_ENDPOINT: "cluster_name",
    TYPE_LISTENER: "name",
    TYPE_ROUTE: "name",
    TYPE_SECRET: "name",
}

def short_type(type_url: str) -> str:
    """``cds``/``eds``/... for the five core types, else the message name lowercased."""
    return TYPE_ABBREVIATIONS.get(type_url) or type_url.rsplit(".", 1)[-1].lower()


def _version_of(names: list[str], digests: list[str]) -> str:
    """Hash of sorted (name, digest) pairs: the names as a JSON list (unambiguous, and encoded
    in C), then the digests, which all have the same length."""
    text = json.dumps(names) + "".join(digests)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TypeSnapshot:
    """All resources of one type for one snapshot key.

    ``resources`` is sorted by name; ``resource_versions`` (name -> hash of that resource's
    bytes) lets a stream (SotW or Delta) tell which resources changed.
    The packed ``Any`` messages are shared between streams: never mutate them.
    """

    version: str
    resources: Mapping[str, any_pb2.Any]
    resource_versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_packed(cls, packed: Mapping[str, any_pb2.Any]) -> "TypeSnapshot":
        return cls.from_built({name: Built(packed=value) for name, value in packed.items()})

    @classmethod
    def from_built(cls, built: Mapping[str, Built]) -> "TypeSnapshot":
        """From resources serialized and hashed once (shared with other snapshots)."""
        names = sorted(built)
        items = [built[n] for n in names]
        digests = [item.digest for item in items]
        return cls(
            version=_version_of(names, digests),
            resources=MappingProxyType({n: item.packed for n, item in zip(names, items)}),
            resource_versions=MappingProxyType(dict(zip(names, digests))),
        )


EMPTY_TYPE = TypeSnapshot.from_packed({})


def _checked(type_url: str, name: str, resource: Message | Built) -> Built:
    """``resource`` as a ``Built`` filed under the right type and, for a message, under its own name."""
    if isinstance(resource, Built):
        built = resource
    elif isinstance(resource, any_pb2.Any):
        built = Built(packed=resource)  # pre-packed: serialized once by the caller
    else:
        built = Built(resource)
    if built.type_url != type_url:
        raise ValueError(f"resource {name!r} is {built.type_url}, filed under {type_url}")
    field_name = _NAME_FIELD.get(type_url)
    if field_name is not None and not isinstance(resource, any_pb2.Any) and getattr(built.message, field_name) != name:
        raise ValueError(f"{short_type(type_url)} resource keyed {name!r} has {field_name}={getattr(built.message, field_name)!r}")
    return built


def _same_objects(old: TypeSnapshot, built: Mapping[str, Built]) -> bool:
    """Whether ``built`` is exactly ``old``'s resources, object for object (no bytes compared)."""
    resources = old.resources
    if len(resources) != len(built):
        return False
    for name, item in built.items():
        packed = resources.get(name)
        if packed is None or packed is not item.packed:
            return False
    return True


@dataclass(frozen=True)
class Snapshot:
    """type_url -> TypeSnapshot; every type of PUSH_ORDER is present (possibly empty)."""

    types: Mapping[str, TypeSnapshot]

    @classmethod
    def from_resources(cls, resources: Mapping[str, Mapping[str, Message | Built]]) -> "Snapshot":
        """Pack ``type_url -> {name -> message}`` deterministically.

        Identical input gives identical bytes and versions across processes, restarts and
        replicas. Resources may also be given already packed (an ``Any``) or as ``Built``
        (the compiler's shared, serialized-once form: nothing is serialized again).
        """
        types: dict[str, TypeSnapshot] = {}
        extra = sorted(t for t in resources if t not in PUSH_ORDER)
        for type_url in (*PUSH_ORDER, *extra):
            by_name = resources.get(type_url) or {}
            built = {name: _checked(type_url, name, resource) for name, resource in by_name.items()}
            types[type_url] = TypeSnapshot.from_built(built) if built else EMPTY_TYPE
        return cls(types=MappingProxyType(types))

    @classmethod
    def from_built(cls, resources: Mapping[str, Mapping[str, Built]], previous: "Snapshot | None" = None) -> "Snapshot":
        """The compiler's resources (type URL -> name -> ``Built``, filed by the compiler under
        their own type and name); nothing is serialized or hashed again. A type whose resources
        are the very objects of ``previous`` keeps ``previous``'s TypeSnapshot: reassembling a
        node after a change to one shared cluster rebuilds its CDS entry and nothing else."""
        types: dict[str, TypeSnapshot] = {}
        for type_url in PUSH_ORDER:
            built = resources.get(type_url) or {}
            if not built:
                types[type_url] = EMPTY_TYPE
                continue
            old = previous.types.get(type_url) if previous is not None else None
            if old is not None and _same_objects(old, built):
                types[type_url] = old
            else:
                types[type_url] = TypeSnapshot.from_built(built)
        return cls(types=MappingProxyType(types))

    @classmethod
    def empty(cls) -> "Snapshot":
        return cls.from_resources({})

    def get(self, type_url: str) -> TypeSnapshot:
        """The type's snapshot; an unknown type reads as empty (a client may ask for it)."""
        return self.types.get(type_url, EMPTY_TYPE)

    def versions(self) -> dict[str, str]:
        return {t: ts.version for t, ts in self.types.items()}
