"""What the server holds for each node: config dumps (JSON) and CSDS (gRPC), with secrets redacted.

* ``snapshot_to_dict`` / ``cache_config_dump``: ``/config_dump?node=NODE_ID`` -- the resources
  of a node's snapshot(s) as JSON, per type with versions.
* ``ClientStatusServicer``: ``envoy.service.status.v3.ClientStatusDiscoveryService``
  (``FetchClientStatus``, ``StreamClientStatus``) so standard tools can ask "what config
  does each connected Envoy have, and is it in sync?".

Both read the snapshot cache (what the server would send) and the StatusRegistry (what was
sent / acked / rejected). Neither ever shows key material: DataSource fields named
``private_key``, ``password``, ``pkcs12``, ``secret`` (GenericSecret) and session ticket
keys are replaced by ``[redacted]`` unless they only name a file (as Envoy's own admin
config_dump does).

Per-resource CSDS status (derived per stream, then the worst over the node's streams with
the same snapshot key: ERROR > NOT_SENT > STALE > SYNCED):

* ERROR    -- the type's current version was NACKed (or this resource's content was part of
  the NACKed push); ``error_state`` carries the Envoy error.
* SYNCED   -- the stream ACKed the type's current version, or a version in which this
  resource had its current content.
* STALE    -- sent, not yet ACKed.
* NOT_SENT -- the current content has not been sent (not requested yet, or a push is due).

CSDS lists the resources of the node's current snapshot, i.e. what a wildcard subscriber
gets; for EDS/RDS an Envoy that subscribed to fewer names got fewer (in meshplane a node's
snapshot only holds what it references, so both agree in practice).
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Callable, Iterable

import grpc
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.core.v3 import base_pb2 as core_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.cache.snapshot import PUSH_ORDER, TYPE_ENDPOINT, TYPE_ROUTE, Snapshot, TypeSnapshot, short_type
from xds_server.server.errors import StreamError

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.server.stream_status import StreamRegistry, StreamStatus, TypeStatus

LOG = logging.getLogger("meshplane.xds.csds")

REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"private_key", "password", "pkcs12", "secret", "session_ticket_keys"})
_DATA_SOURCE = "envoy.config.core.v3.DataSource"
_TICKET_KEYS = "envoy.extensions.transport_sockets.tls.v3.TlsSessionTicketKeys"
# endpoint assignments and route tables cannot carry key material: not walked
_NO_SECRETS = frozenset({TYPE_ENDPOINT, TYPE_ROUTE})

ConfigDumpProvider = Callable[[str], "dict | None"]


# ---------------------------------------------------------------------------------------
# Unpacking and redaction
# ---------------------------------------------------------------------------------------

def unpack(packed: any_pb2.Any) -> Message | None:
    """The Any's message via the default descriptor pool; None if its type is unknown here."""
    name = packed.type_url.rsplit("/", 1)[-1]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    msg = message_factory.GetMessageClass(descriptor)()
    msg.ParseFromString(packed.value)
    return msg


def _redact_field(msg: Message, fd: FieldDescriptor, value) -> bool:
    if fd.type == FieldDescriptor.TYPE_STRING:
        if fd.is_repeated:
            value[:] = [REDACTED] * len(value)
        else:
            setattr(msg, fd.name, REDACTED)
        return True
    if fd.type == FieldDescriptor.TYPE_BYTES:
        if fd.is_repeated:
            value[:] = [REDACTED.encode()] * len(value)
        else:
            setattr(msg, fd.name, REDACTED.encode())
        return True
    full = fd.message_type.full_name if fd.message_type is not None else None
    if full == _DATA_SOURCE:
        sources = value if fd.is_repeated else [value]
        changed = False
        for ds in sources:
            if ds.WhichOneof("specifier") not in (None, "filename"):  # a file path is not a secret
                ds.Clear()
                ds.inline_string = REDACTED
                changed = True
        return changed
    if full == _TICKET_KEYS:
        return _redact_field(value, value.DESCRIPTOR.fields_by_name["keys"], value.keys)
    return False


def redact_message(msg: Message) -> bool:
    """Redact key material in place (recursing into nested and packed messages); True if changed."""
    changed = False
    for fd, value in msg.ListFields():
        if fd.name in SECRET_FIELDS and _redact_field(msg, fd, value):
            changed = True
            continue
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value.values():
                    changed |= _redact_nested(item)
        elif fd.is_repeated:
            for item in value:
                changed |= _redact_nested(item)
        else:
            changed |= _redact_nested(value)
    return changed


def _redact_nested(msg: Message) -> bool:
    if msg.DESCRIPTOR.full_name == "google.protobuf.Any":
        inner = unpack(msg)
        if inner is not None and redact_message(inner):
            msg.value = inner.SerializeToString(deterministic=True)
            return True
        return False
    return redact_message(msg)


def redacted_any(packed: any_pb2.Any) -> any_pb2.Any:
    """A copy of ``packed`` without key material (the cache's Any itself is never changed)."""
    if packed.type_url in _NO_SECRETS:
        return packed
    msg = unpack(packed)
    if msg is None or not redact_message(msg):
        return packed
    return any_pb2.Any(type_url=packed.type_url, value=msg.SerializeToString(deterministic=True))


def redact_dict(value):
    """JSON-side redaction: ``private_key`` (etc.) -> "[redacted]" unless it only names a file."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in SECRET_FIELDS and not (isinstance(v, dict) and set(v) <= {"filename"}):
                out[k] = REDACTED
            else:
                out[k] = redact_dict(v)
        return out
    if isinstance(value, list):
        return [redact_dict(v) for v in value]
    return value


def resource_to_dict(packed: any_pb2.Any) -> dict:
    """One resource as Envoy-style JSON (snake_case, ``@type``), redacted."""
    msg = unpack(packed)
    if msg is not None:
        try:
            body = json_format.MessageToDict(msg, preserving_proto_field_name=True)
            return {"@type": packed.type_url, **redact_dict(body)}
        except (TypeError, KeyError, json_format.Error) as exc:  # a nested Any of an unknown type
            LOG.debug("cannot render %s as JSON: %s", packed.type_url, exc)
    return {"@type": packed.type_url, "unrenderable": f"{len(packed.value)} bytes of an unknown type"}


# ---------------------------------------------------------------------------------------
# /config_dump
# ---------------------------------------------------------------------------------------

def snapshot_to_dict(key: str, snapshot: Snapshot, types: Iterable[str] | None = None) -> dict:
    """``{"key", "types": {"cds": {"type_url", "version", "resources": [{"name", "version", "resource"}]}}}``.

    ``types``: short names (``cds``...) to include; all when None. The lead's on-demand
    provider can reuse this for a node compiled without being connected.
    """
    wanted = set(types) if types is not None else None
    out = {}
    for type_url in list(PUSH_ORDER) + sorted(t for t in snapshot.types if t not in PUSH_ORDER):
        short = short_type(type_url)
        if wanted is not None and short not in wanted:
            continue
        ts = snapshot.get(type_url)
        out[short] = {
            "type_url": type_url,
            "version": ts.version,
            "resources": [
                {"name": name, "version": ts.resource_versions.get(name), "resource": resource_to_dict(packed)}
                for name, packed in ts.resources.items()
            ],
        }
    return {"key": key, "types": out}


def cache_config_dump(registry: StreamRegistry, cache: SnapshotCache) -> ConfigDumpProvider:
    """The default ``/config_dump`` provider: the snapshots of a connected node's streams.

    Returns None for a node id with no open stream (the HTTP layer answers 404).
    """

    def provider(node_id: str) -> dict | None:
        streams = registry.streams(node_id)
        if not streams:
            return None
        by_key: dict[str, int] = {}
        for s in streams:
            by_key[s.key] = by_key.get(s.key, 0) + 1
        snapshots = []
        for key in sorted(by_key):
            snapshot = cache.get(key)
            if snapshot is None:
                continue
            snapshots.append({**snapshot_to_dict(key, snapshot), "streams": by_key[key]})
        return {"node": node_id, "streams": len(streams), "snapshots": snapshots}

    return provider


# ---------------------------------------------------------------------------------------
# CSDS
# ---------------------------------------------------------------------------------------

_SEVERITY = {csds_pb2.SYNCED: 0, csds_pb2.STALE: 1, csds_pb2.NOT_SENT: 2, csds_pb2.ERROR: 3}
_CLIENT_STATUS = {
    csds_pb2.SYNCED: config_dump_shared_pb2.ACKED,
    csds_pb2.ERROR: config_dump_shared_pb2.NACKED,
}


def resource_status(t: TypeStatus | None, ts: TypeSnapshot, name: str) -> int:
    """ConfigStatus of one resource of the current snapshot, for one stream."""
    if t is None or t.sent is None:
        return csds_pb2.NOT_SENT
    rv = ts.resource_versions.get(name)
    nacked = t.nacked.get("version") if t.nacked else None
    if nacked is not None and nacked == ts.version:
        return csds_pb2.ERROR
    if t.acked is not None and (t.acked == ts.version or (t.acked_resources or {}).get(name) == rv):
        return csds_pb2.SYNCED
    sent_this = t.sent == ts.version or (t.sent_resources or {}).get(name) == rv
    if nacked is not None and nacked == t.sent and sent_this:
        return csds_pb2.ERROR
    return csds_pb2.STALE if sent_this else csds_pb2.NOT_SENT


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class NodeMatchError(ValueError):
    pass


def _string_matches(m, value: str) -> bool:
    kind = m.WhichOneof("match_pattern")
    fold = (lambda x: x.lower()) if m.ignore_case else (lambda x: x)
    if kind == "exact":
        return fold(value) == fold(m.exact)
    if kind == "prefix":
        return fold(value).startswith(fold(m.prefix))
    if kind == "suffix":
        return fold(value).endswith(fold(m.suffix))
    if kind == "contains":
        return fold(m.contains) in fold(value)
    if kind == "safe_regex":
        try:
            return re.fullmatch(m.safe_regex.regex, value, re.IGNORECASE if m.ignore_case else 0) is not None
        except re.error as exc:
            raise NodeMatchError(f"bad node_id regex {m.safe_regex.regex!r}: {exc}") from None
    if kind is None:
        return True
    raise NodeMatchError(f"unsupported node_id matcher {kind!r} (exact, prefix, suffix, contains, safe_regex)")


def node_selected(matchers, node_id: str) -> bool:
    """No matchers: every node. Else any matcher's node_id matches (metadata matchers are refused)."""
    if not matchers:
        return True
    for m in matchers:
        if m.node_metadatas:
            raise NodeMatchError("node_metadatas matchers are not supported; match on node_id")
        if not m.HasField("node_id") or _string_matches(m.node_id, node_id):
            return True
    return False


class ClientStatusServicer(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):
    """CSDS over the StatusRegistry (connected streams) and the SnapshotCache (their config).

    One ``ClientConfig`` per (node id, snapshot key) -- usually one per node id, which many
    Envoy replicas may share; ``node.metadata`` says how many streams it covers and from
    which peers.
    """

    def __init__(self, registry: StreamRegistry, cache: SnapshotCache, *, require_admin=None) -> None:
        self.registry = registry
        self.cache = cache
        # With xDS authentication on, CSDS (every node's config, secrets redacted) is for
        # admin identities only; ``require_admin(context)`` raises StreamError otherwise.
        self.require_admin = require_admin

    async def _check_admin(self, context) -> None:
        if self.require_admin is None:
            return
        try:
            self.require_admin(context)
        except StreamError as exc:
            await context.abort(exc.code, exc.message)

    def client_status(self, request: csds_pb2.ClientStatusRequest) -> csds_pb2.ClientStatusResponse:
        groups: dict[tuple[str, str], list[StreamStatus]] = {}
        for s in self.registry.streams():
            if node_selected(request.node_matchers, s.node_id):
                groups.setdefault((s.node_id, s.key), []).append(s)
        response = csds_pb2.ClientStatusResponse()
        memo: dict[int, any_pb2.Any] = {}
        for (node_id, key), streams in sorted(groups.items()):
            snapshot = self.cache.get(key)
            if snapshot is None:
                continue
            response.config.append(self._client_config(node_id, key, streams, snapshot, request, memo))
        return response

    def _client_config(self, node_id, key, streams, snapshot, request, memo) -> csds_pb2.ClientConfig:
        metadata = struct_pb2.Struct()
        metadata.update({"meshplane": {
            "key": key,
            "streams": len(streams),
            "peers": [s.peer for s in sorted(streams, key=lambda s: s.id)],
        }})
        config = csds_pb2.ClientConfig(node=core_pb2.Node(id=node_id, metadata=metadata))
        for type_url in list(PUSH_ORDER) + sorted(t for t in snapshot.types if t not in PUSH_ORDER):
            ts = snapshot.get(type_url)
            if not ts.resources:
                continue
            per_stream = [s.types.get(type_url) for s in streams]
            pushed = [t for t in per_stream if t is not None and t.last_push_at is not None]
            last_push = max((t.last_push_at for t in pushed), default=None)
            for name, packed in ts.resources.items():
                statuses = [(resource_status(t, ts, name), t) for t in per_stream]
                status, worst = max(statuses, key=lambda st: _SEVERITY[st[0]])
                item = csds_pb2.ClientConfig.GenericXdsConfig(
                    type_url=type_url,
                    name=name,
                    version_info=ts.version,
                    config_status=status,
                    client_status=_CLIENT_STATUS.get(status, config_dump_shared_pb2.UNKNOWN),
                )
                if not request.exclude_resource_contents:
                    redacted = memo.get(id(packed))
                    if redacted is None:
                        redacted = memo[id(packed)] = redacted_any(packed)
                    item.xds_config.CopyFrom(redacted)
                if last_push is not None:
                    item.last_updated.CopyFrom(_timestamp(last_push))
                if status == csds_pb2.ERROR and worst is not None and worst.nacked:
                    item.error_state.CopyFrom(config_dump_shared_pb2.UpdateFailureState(
                        details=worst.nacked.get("error") or "",
                        version_info=worst.nacked.get("version") or "",
                        last_update_attempt=_timestamp(worst.nacked_at),
                    ))
                config.generic_xds_configs.append(item)
        return config

    async def FetchClientStatus(self, request, context):
        await self._check_admin(context)
        try:
            return self.client_status(request)
        except NodeMatchError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def StreamClientStatus(self, request_iterator, context):
        await self._check_admin(context)
        async for request in request_iterator:
            try:
                yield self.client_status(request)
            except NodeMatchError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def add_to_server(server: grpc.aio.Server, servicer: ClientStatusServicer) -> None:
    csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(servicer, server)


__all__ = [
    "ClientStatusServicer", "ConfigDumpProvider", "add_to_server", "cache_config_dump", "redact_dict",
    "redact_message", "redacted_any", "resource_status", "resource_to_dict", "snapshot_to_dict", "unpack",
]
