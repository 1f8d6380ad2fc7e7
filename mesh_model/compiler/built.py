"""One compiled Envoy resource, serialized once and shared by every snapshot that holds it.

A cluster that 1,000 callers of one service all need is built once (``CompileCache``); a
``Built`` then makes sure it is also *serialized* and *hashed* once: every snapshot holding
it shares the same packed ``Any`` and the same digest, so publishing 1,000 snapshots after
that one cluster changed is 1,000 reference swaps, not 1,000 serializations.

A resource may also be born as bytes (``from_bytes``): a node's route configuration is
assembled from the bytes of shared virtual hosts (``route_configuration_bytes``) without
building a proto at all. Its message is parsed from the bytes only if someone asks (render,
explain, diff), which gives exactly the message a cold compile would have built, because
deterministic serialization round-trips.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

from google.protobuf import any_pb2, symbol_database
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"


def digest16(data: bytes) -> str:
    """The content hash of serialized bytes (a resource's version, part of a type's version)."""
    return hashlib.sha256(data).hexdigest()[:16]


class Built:
    """A resource as a message, as deterministic bytes packed in an ``Any``, and its digest.

    Whichever form it was made from, the other is derived on first use and kept. Shared
    between snapshots and cache generations: never mutate ``message`` or ``packed``.
    """

    __slots__ = ("_message", "_packed", "_digest")

    def __init__(self, message: Message | None = None, packed: any_pb2.Any | None = None):
        if message is None and packed is None:
            raise ValueError("a Built needs a message or its packed bytes")
        self._message = message
        self._packed = packed
        self._digest: str | None = None

    @classmethod
    def from_bytes(cls, full_name: str, data: bytes) -> "Built":
        """A resource given by its serialized bytes and message name (e.g. ``envoy.config.route.v3.RouteConfiguration``)."""
        return cls(packed=any_pb2.Any(type_url=TYPE_PREFIX + full_name, value=data))

    @property
    def message(self) -> Message:
        if self._message is None:
            packed = self._packed
            assert packed is not None  # one of the two is always set
            cls = symbol_database.Default().GetSymbol(packed.type_url[len(TYPE_PREFIX):])
            self._message = cls.FromString(packed.value)
        return self._message

    @property
    def packed(self) -> any_pb2.Any:
        if self._packed is None:
            message = self._message
            assert message is not None  # one of the two is always set
            self._packed = any_pb2.Any(
                type_url=TYPE_PREFIX + message.DESCRIPTOR.full_name,
                value=message.SerializeToString(deterministic=True),
            )
        return self._packed

    @property
    def data(self) -> bytes:
        """The deterministic serialized bytes."""
        return self.packed.value

    @property
    def type_url(self) -> str:
        return self.packed.type_url if self._message is None else TYPE_PREFIX + self._message.DESCRIPTOR.full_name

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = digest16(self.packed.value)
        return self._digest


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_delimited(field_number: int, data: bytes) -> bytes:
    """One length-delimited field (string, bytes or embedded message) in protobuf wire format."""
    return _varint(field_number << 3 | 2) + _varint(len(data)) + data


# RouteConfiguration: 1 = name, 2 = virtual_hosts (envoy/config/route/v3/route.proto)
_ROUTE_CONFIG_NAME = 1
_ROUTE_CONFIG_VIRTUAL_HOSTS = 2
ROUTE_CONFIGURATION = "envoy.config.route.v3.RouteConfiguration"


def route_configuration_bytes(name: str, virtual_hosts: Iterable[bytes]) -> bytes:
    """The deterministic bytes of ``RouteConfiguration(name=name, virtual_hosts=[...])`` from
    the bytes of its virtual hosts: the same bytes protobuf writes (fields in number order, a
    repeated message field as one record per element), at the cost of a concatenation."""
    parts = [length_delimited(_ROUTE_CONFIG_NAME, name.encode())] if name else []
    parts.extend(length_delimited(_ROUTE_CONFIG_VIRTUAL_HOSTS, vhost) for vhost in virtual_hosts)
    return b"".join(parts)
