"""Immutable, content-addressed per-node snapshots of Envoy resources.

A snapshot is what one node (or group of nodes sharing a key) should hold, per xDS type URL.
Versions are content hashes over deterministic protobuf bytes, never counters or timestamps:
a restarted server or another replica computes the same version for the same configuration,
so a reconnecting Envoy's ``version_info`` can never collide with different content, and
the same content always gets the same version.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from google.protobuf import any_pb2
from google.protobuf.message import Message

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

_TYPE_PREFIX = "type.googleapis.com/"


def short_type(type_url: str) -> str:
    """``cds``/``eds``/... for the five core types, else the message name lowercased."""
    return TYPE_ABBREVIATIONS.get(type_url) or type_url.rsplit(".", 1)[-1].lower()


def _hash16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _version_of(pairs: list[tuple[str, bytes]]) -> str:
    """Hash of sorted (name, bytes) pairs; length-prefixed so concatenations can't collide."""
    h = hashlib.sha256()
    for name, value in pairs:
        n = name.encode()
        h.update(len(n).to_bytes(4, "big"))
        h.update(n)
        h.update(len(value).to_bytes(8, "big"))
        h.update(value)
    return h.hexdigest()[:16]


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
        names = sorted(packed)
        resources = {n: packed[n] for n in names}
        return cls(
            version=_version_of([(n, resources[n].value) for n in names]),
            resources=MappingProxyType(resources),
            resource_versions=MappingProxyType({n: _hash16(resources[n].value) for n in names}),
        )


EMPTY_TYPE = TypeSnapshot.from_packed({})


def _pack(type_url: str, name: str, msg: Message) -> any_pb2.Any:
    if isinstance(msg, any_pb2.Any):
        packed = msg  # pre-packed (e.g. shared by many nodes): serialized once by the caller
    else:
        packed = any_pb2.Any(
            type_url=_TYPE_PREFIX + msg.DESCRIPTOR.full_name,
            value=msg.SerializeToString(deterministic=True),
        )
    if packed.type_url != type_url:
        raise ValueError(f"resource {name!r} is {packed.type_url}, filed under {type_url}")
    field_name = _NAME_FIELD.get(type_url)
    if field_name is not None and not isinstance(msg, any_pb2.Any) and getattr(msg, field_name) != name:
        raise ValueError(f"{short_type(type_url)} resource keyed {name!r} has {field_name}={getattr(msg, field_name)!r}")
    return packed


@dataclass(frozen=True)
class Snapshot:
    """type_url -> TypeSnapshot; every type of PUSH_ORDER is present (possibly empty)."""

    types: Mapping[str, TypeSnapshot]

    @classmethod
    def from_resources(cls, resources: Mapping[str, Mapping[str, Message]]) -> "Snapshot":
        """Pack ``type_url -> {name -> message}`` deterministically.

        Identical input gives identical bytes and versions across processes, restarts and
        replicas. Messages may also be given already packed as ``Any``.
        """
        types: dict[str, TypeSnapshot] = {}
        extra = sorted(t for t in resources if t not in PUSH_ORDER)
        for type_url in (*PUSH_ORDER, *extra):
            by_name = resources.get(type_url) or {}
            packed = {name: _pack(type_url, name, msg) for name, msg in by_name.items()}
            types[type_url] = TypeSnapshot.from_packed(packed) if packed else EMPTY_TYPE
        return cls(types=MappingProxyType(types))

    @classmethod
    def empty(cls) -> "Snapshot":
        return cls.from_resources({})

    def get(self, type_url: str) -> TypeSnapshot:
        """The type's snapshot; an unknown type reads as empty (a client may ask for it)."""
        return self.types.get(type_url, EMPTY_TYPE)

    def versions(self) -> dict[str, str]:
        return {t: ts.version for t, ts in self.types.items()}
