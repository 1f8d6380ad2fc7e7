"""The App Mesh API (2019-01-25) over a store: ``ApiService.handle(method, path, query, headers, body)``
-> ``(status, headers, body)``, with no I/O of its own beyond the store (the HTTP server that
calls it is ``xds_server.http``; tests call it directly too).

All 38 operations at App Mesh's REST paths (the table, request parsing and response shapes
come from botocore's model, see ``operations``/``parsing``/``resources``). Every write:

* is checked by building the whole would-be model of the mesh with meshplane's loader:
  ``BadRequestException`` lists every problem (``meshplane validate``'s messages and field
  paths), ``NotFoundException`` when every problem is a reference to a resource that does
  not exist (a route's target node, a service's provider, a gateway route's service; a node's
  backends are not checked, as on App Mesh); a delete that would leave a dangling
  reference is ``ResourceInUseException``;
* is one store transaction, committed only if the store revision it was validated at is still
  current (otherwise re-read, re-validated and retried), so concurrent writers on several
  processes never combine into an invalid model;
* with a ``clientToken`` (botocore adds one to every Create/Update), is idempotent: the same
  token with the same request answers the first answer again and writes nothing; the same
  token with a different request is ``ConflictException``.

**meshplane extension, optimistic concurrency:** App Mesh's Update*/Delete* have no version
parameter, so meshplane reads an ``If-Match: <version>`` HTTP header on them (and on
TagResource/UntagResource): if the resource is not at that version any more, the answer is
``ConflictException`` and nothing is written. With boto3::

    def if_match(version):
        def add(request, **_):
            request.headers["If-Match"] = str(version)
        return add
    client.meta.events.register("before-sign.app-mesh.UpdateRoute", if_match(3))

(botocore names the event after the service id, ``app-mesh``, not ``appmesh``.)

**meshplane extension, whole-model endpoints** (used by ``meshplane export``/``apply``):
``GET /meshplane/v1/model`` -> ``{"revision": N, "documents": [native documents]}``;
``POST /meshplane/v1/apply`` with ``{"documents": [...], "prune": bool, "dryRun": bool,
"expectedRevision": N?}`` -> ``{"revision": N, "changes": [{"action", "resource"}], "dryRun"}``:
every create/update/delete of the change in ONE transaction, all-or-nothing, validated as a
whole (see ``batch``).

In file mode (``serve PATH...``) the service is read-only: writes answer
``ForbiddenException`` saying the model is managed by files.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Mapping

from xds_server import fairness
from xds_server.api import batch, sharing_auth
from xds_server.api.locks import KeyedLocks
from xds_server.api.rights import Rights
from xds_server.api.transaction import Planned, new_metadata, optimistic_write, would_be
from xds_server.api.auth import Anonymous, Authenticator, Caller, Request
from xds_server.api.errors import ApiError, bad_request, conflict, error_response, forbidden, in_use, not_found
from xds_server.api.operations import Operation, match
from xds_server.api.paging import paginate, request_digest
from xds_server.api.parsing import MAX_BODY_BYTES, parse
from xds_server.api.resources import KINDS, check_new_name, data, key_of, parent_key, parse_arn, ref
from xds_server.api.validation import describe, is_missing_reference, issues_of
from xds_server.store.base import (
    Delete, IdempotencyRecord, Put, ResourceKey, RevisionGone, Store, StoredResource, StoreError, StoreUnavailable,
)

log = logging.getLogger("meshplane.api")

PREFIX = "/v20190125/"
MESHPLANE_PREFIX = "/meshplane/v1/"
MAX_TAGS = 50


@dataclass(frozen=True)
class ApiLimits:
    """Model limits (``LimitExceededException``); generous defaults, set per server."""

    meshes: int = 1000  # meshes per account
    resources_per_mesh: int = 20000  # every resource of a mesh, the mesh included


def is_api_path(path: str) -> bool:
    return path.startswith(PREFIX) or path == PREFIX.rstrip("/") or path.startswith(MESHPLANE_PREFIX)


class ApiService:
    def __init__(
        self,
        store: Store,
        *,
        region: str = "us-west-2",
        authenticator: Authenticator | None = None,
        limits: ApiLimits = ApiLimits(),
        read_only: str | None = None,
        clock=time.time,
    ):
        self.store = store
        self.region = region
        self.auth = authenticator or Anonymous()
        self.rights = Rights(self.auth)  # the one authorization rule (operations, export, apply)
        self.limits = limits
        self.read_only = read_only  # why writes are refused (file mode), or None
        self.clock = clock
        self._lock = threading.Lock()  # the cached index
        self.apply_lock = threading.Lock()  # whole-model writes (apply) one at a time in this process
        # App Mesh writes: one writer per mesh at a time
        self._mesh_locks = KeyedLocks()
        self._revision = -1
        self._index: dict[ResourceKey, StoredResource] = {}
        self._by_mesh: dict[str, dict[ResourceKey, StoredResource]] = {}  # the same, by mesh ("": Cloud Map)

    # ------------------------------------------------------------------ entry point
    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
               peer: str | None = None) -> tuple[int, dict, bytes]:
        """``peer``: the client's IP address (the loopback-only authenticator needs it)."""
        request_id = str(uuid.uuid4())
        try:
            if len(body) > MAX_BODY_BYTES:
                raise bad_request(f"the request body is larger than {MAX_BODY_BYTES} bytes")
            caller = self.auth.authenticate(Request(method, path, query, headers, body, peer))
            if path.startswith(MESHPLANE_PREFIX):
                result = batch.handle(self, caller, method, path[len(MESHPLANE_PREFIX):], query, headers, body)
                return 200, {"Content-Type": "application/json", "x-amzn-RequestId": request_id}, _json(result)
            found = match(method, path)
            if found is None:
                return _unknown(404, f"no App Mesh operation at {path}", request_id)
            if found == "method":
                return _unknown(405, f"{method} is not an App Mesh operation at {path}", request_id)
            op, labels = found
            params = parse(op, labels, query, headers, body)
            result = self.call(caller, op, params, headers)
            payload = op.payload()
            out = result.get(payload, {}) if payload else result
            return 200, {"Content-Type": "application/json", "x-amzn-RequestId": request_id}, _json(out)
        except ApiError as err:
            return error_response(err, request_id)
        except StoreUnavailable as exc:
            return error_response(ApiError("ServiceUnavailableException", f"the store is unavailable: {exc}"), request_id)
        except Exception as exc:  # a bug answers 500, the server keeps running
            log.exception("API %s %s failed", method, path)
            return error_response(ApiError("InternalServerErrorException", f"internal error: {type(exc).__name__}"), request_id)

    def call(self, caller: Caller, op: Operation, params: dict, headers: Mapping[str, str]) -> dict:
        """Run one parsed operation; returns the output members as a dict."""
        if op.verb == "List" and op.kind:
            return self._list(caller, op, params)
        if op.verb == "Describe":
            key = key_of(op.kind, params)
            index = self.index()[1]
            self.rights.check_read(caller, op.name, key, index, params.get("meshOwner"))
            res = self._get(key, params, index)
            return {KINDS[op.kind].member: data(res, self.region)}
        if op.verb == "ListTagsForResource":
            key = parse_arn(params["resourceArn"])
            index = self.index()[1]
            self.rights.check_read(caller, op.name, key, index, params.get("meshOwner"))
            res = self._get(key, {}, index)
            tags = [{"key": k, "value": v} for k, v in res.tags]
            page, token = paginate(tags, lambda t: t["key"], params.get("limit"), params.get("nextToken"))
            return {"tags": page, **({"nextToken": token} if token else {})}
        return self._write(caller, op, params, headers)

    # ------------------------------------------------------------------ reads
    def index(self) -> tuple[int, dict[ResourceKey, StoredResource]]:
        """The store's resources by key, kept current with ``changes_since`` (a copy)."""
        with self._lock:
            self._catch_up()
            return self._revision, dict(self._index)

    def mesh_index(self, mesh: str) -> tuple[int, dict[ResourceKey, StoredResource]]:
        """What a write to ``mesh`` reads: that mesh's resources and the Cloud Map stand-ins (a
        copy), at one revision; its cost follows the mesh, not the store."""
        with self._lock:
            self._catch_up()
            return self._revision, {**self._by_mesh.get(mesh, {}), **self._by_mesh.get("", {})}

    def _catch_up(self) -> None:
        revision = self.store.revision()
        if revision == self._revision:
            return
        try:
            if self._revision < 0:
                raise RevisionGone()
            changes = self.store.changes_since(self._revision)
            for key, res in changes.changed:
                if res is None:
                    self._index.pop(key, None)
                    self._by_mesh.get(key.mesh, {}).pop(key, None)
                else:
                    self._index[key] = res
                    self._by_mesh.setdefault(key.mesh, {})[key] = res
            self._revision = changes.revision
        except RevisionGone:
            snap = self.store.read_all()
            self._index = {r.key: r for r in snap.resources}
            self._by_mesh = {}
            for r in snap.resources:
                self._by_mesh.setdefault(r.key.mesh, {})[r.key] = r
            self._revision = snap.revision

    def _get(self, key: ResourceKey, params: dict, index: dict | None = None) -> StoredResource:
        index = self.index()[1] if index is None else index
        res = index.get(key)
        owner = params.get("meshOwner")
        if res is None or (owner and res.metadata.get("meshOwner") != owner):
            raise not_found(f"{_label(key)} not found" + (f" (mesh owner {owner})" if owner else ""))
        return res

    def _list(self, caller: Caller, op: Operation, params: dict) -> dict:
        info = KINDS[op.kind]
        _, index = self.index()
        if op.kind == "Mesh":
            items = [r for r in index.values() if r.key.kind == "Mesh" and self.rights.may_read(caller, r.key, index)]
        else:
            mesh = params["meshName"]
            self.rights.check_read(caller, op.name, ResourceKey("Mesh", mesh, "", mesh), index, params.get("meshOwner"))
            self._get(ResourceKey("Mesh", mesh, "", mesh), params, index)
            parent = params.get(info.parent_param, "") if info.parent_param else ""
            if info.parent_kind:
                self._get(ResourceKey(info.parent_kind, mesh, "", parent), {}, index)
            items = [r for r in index.values() if r.key.kind == op.kind and r.key.mesh == mesh and r.key.parent == parent]
        page, token = paginate(items, lambda r: r.key.name, params.get("limit"), params.get("nextToken"))
        return {info.list_member: [ref(r, self.region) for r in page], **({"nextToken": token} if token else {})}

    # ------------------------------------------------------------------ writes
    def _write(self, caller: Caller, op: Operation, params: dict, headers: Mapping[str, str]) -> dict:
        key = parse_arn(params["resourceArn"]) if op.kind is None else key_of(op.kind, params)
        self.auth.authorize(caller, op.name, key.mesh, True)  # the key layer first: before any token lookup
        if self.read_only:
            raise forbidden(self.read_only)
        if_match = _if_match(headers)
        token = params.get("clientToken")
        scope = f"{caller.account}|{op.name}"
        digest = request_digest(op.name, params) if token else ""
        if token:
            record = self.store.get_idempotency(scope, token)
            if record is not None:
                return _replay(record, digest)
        # A write reads, validates and changes its own mesh only (and the Cloud Map stand-ins,
        # scope ""), so it waits for, and conflicts with, writers of that mesh alone; creating a
        # mesh also counts the account's meshes, so it conflicts with any change.
        read_scope = None if key.kind == "Mesh" and op.verb == "Create" else (key.mesh, "")
        def read():
            return self.index() if read_scope is None else self.mesh_index(key.mesh)

        def plan(revision: int, index: dict) -> Planned:
            if len(index) > fairness.LONG_MESH:
                fairness.demote()
            if token:  # read after the index: a retry whose first try committed meanwhile (here or on
                # another replica, in the same transaction as its resource) gets the first answer
                first = self.store.get_idempotency(scope, token)
                if first is not None:
                    return Planned([], _replay(first, digest), commit=False)
            ops, answer = self._plan(caller, op, key, params, index, if_match)
            record = IdempotencyRecord(scope, token, digest, answer, self.clock()) if token else None
            return Planned(ops, answer, read_scope, idempotency=record)

        with self._mesh_locks.hold(key.mesh):
            answer, _ = optimistic_write(self.store, read, plan, on_duplicate=lambda first: _replay(first, digest))
            return answer

    def _plan(self, caller: Caller, op: Operation, key: ResourceKey, params: dict, index: dict, if_match: int | None):
        """The store ops of one write and its answer; raises the App Mesh error if it may not happen."""
        now = self.clock()
        current = index.get(key)
        owner = params.get("meshOwner")
        self.rights.check_write(caller, op.name, op.verb, key, current, index, owner)
        if op.verb == "Create":
            if current is not None:
                raise conflict(f"{_label(key)} already exists")
            check_new_name(key)
            parent = parent_key(key)
            if parent is not None and parent not in index:
                raise not_found(f"{_label(parent)} not found")
            mesh_owner = caller.account if key.kind == "Mesh" else index[parent_key_mesh(key)].metadata.get("meshOwner", caller.account)
            if owner and owner != mesh_owner:
                raise not_found(f"{_label(parent_key_mesh(key))} not found (mesh owner {owner})")
            tags = _tags(params.get("tags") or [])
            sharing_auth.check_tags(key.kind, mesh_owner, tags)
            new = StoredResource(key, params.get("spec") or {}, 1, new_metadata(now, mesh_owner, caller.account),
                                 tuple(sorted(tags.items())))
            self._check_limits(caller, key, index)
            ops = [Put(new, expected_version=0)]
            self._validate(index, ops, key, deleting=False)
            return ops, {KINDS[key.kind].member: data(new, self.region)}
        if current is None or (owner and current.metadata.get("meshOwner") != owner):
            raise not_found(f"{_label(key)} not found")
        if if_match is not None and if_match != current.version:
            raise conflict(f"{_label(key)} is at version {current.version}, not {if_match} (If-Match); read it again and retry")
        if op.verb == "Update":
            new = StoredResource(key, params.get("spec") or {}, current.version + 1,
                                 {**current.metadata, "lastUpdatedAt": now}, current.tags)
            ops = [Put(new, expected_version=current.version)]
            if new.spec != current.spec:  # the same spec leaves the (valid) model as it is
                self._validate(index, ops, key, deleting=False)
            return ops, {KINDS[key.kind].member: data(new, self.region)}
        if op.verb == "Delete":
            children = _children(key, index)
            if children:
                shown = ", ".join(_label(c) for c in children[:10]) + (f" and {len(children) - 10} more" if len(children) > 10 else "")
                raise in_use(f"{_label(key)} is not empty: delete {shown} first")
            ops = [Delete(key, expected_version=current.version)]
            self._validate(index, ops, key, deleting=True)
            return ops, {KINDS[key.kind].member: data(current, self.region, status="DELETED")}
        if op.verb == "TagResource":
            tags = dict(current.tags)
            tags.update(_tags(params["tags"]))
            sharing_auth.check_tags(key.kind, current.metadata.get("meshOwner", caller.account), _tags(params["tags"]))
            if len(tags) > MAX_TAGS:
                raise ApiError("TooManyTagsException", f"{_label(key)} would have {len(tags)} tags; at most {MAX_TAGS} are allowed")
        elif op.verb == "UntagResource":
            tags = {k: v for k, v in current.tags if k not in set(params["tagKeys"])}
        else:  # pragma: no cover - the operation table has nothing else
            raise bad_request(f"unsupported operation {op.name}")
        new = StoredResource(key, current.spec, current.version, current.metadata, tuple(sorted(tags.items())))
        return [Put(new, expected_version=current.version)], {}

    def _validate(self, index: dict, ops: list, key: ResourceKey, *, deleting: bool) -> None:
        problems = issues_of(would_be(index, ops).values(), {key.mesh})
        if not problems:
            return
        messages = [describe(i) for i in problems]
        if deleting:  # "not found (did you mean ...)" of what is being deleted: the suggestion is noise here
            messages = [re.sub(r" \(did you mean [^)]*\)$", "", m) for m in messages]
            raise in_use(f"{_label(key)} is in use, deleting it would leave: " + "; ".join(messages))
        if all(is_missing_reference(i.message) for i in problems):
            # App Mesh: a reference it checks (a route's target node, a service's provider, a
            # gateway route's service) to a resource that does not exist is NotFoundException
            raise not_found(messages[0] if len(messages) == 1 else f"{len(messages)} problems: " + "; ".join(messages))
        raise bad_request(messages)

    def _check_limits(self, caller: Caller, key: ResourceKey, index: dict) -> None:
        if key.kind == "Mesh":
            owned = sum(1 for r in index.values() if r.key.kind == "Mesh" and r.metadata.get("meshOwner") == caller.account)
            if owned >= self.limits.meshes:
                raise ApiError("LimitExceededException", f"account {caller.account} has {owned} meshes, the limit is {self.limits.meshes}")
            return
        count = sum(1 for r in index if r.mesh == key.mesh and r.kind != "CloudMapService")
        if count >= self.limits.resources_per_mesh:
            raise ApiError("LimitExceededException",
                           f"mesh {key.mesh!r} has {count} resources, the limit is {self.limits.resources_per_mesh}")


def parent_key_mesh(key: ResourceKey) -> ResourceKey:
    return ResourceKey("Mesh", key.mesh, "", key.mesh)


def _children(key: ResourceKey, index: dict) -> list[ResourceKey]:
    if key.kind == "Mesh":
        return sorted(k for k in index if k.mesh == key.mesh and k.kind != "Mesh")
    if key.kind in ("VirtualRouter", "VirtualGateway"):
        child = "Route" if key.kind == "VirtualRouter" else "GatewayRoute"
        return sorted(k for k in index if k.kind == child and k.mesh == key.mesh and k.parent == key.name)
    return []


def _tags(items: list) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items}


def _if_match(headers: Mapping[str, str]) -> int | None:
    for name, value in headers.items():
        if name.lower() == "if-match":
            text = value.strip().strip('"')
            try:
                version = int(text)
            except ValueError:
                raise bad_request(f"If-Match: expected a resource version (an integer), got {value!r}") from None
            return version
    return None


def _replay(record: IdempotencyRecord, digest: str) -> dict:
    if record.digest != digest:
        raise conflict(f"clientToken {record.token!r} was used for a different request; use a new client token")
    return record.response


def _label(key: ResourceKey) -> str:
    return str(key)


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


def _unknown(status: int, message: str, request_id: str) -> tuple[int, dict, bytes]:
    err = ApiError("UnknownOperationException", message, status)
    return error_response(err, request_id)


__all__ = ["ApiLimits", "ApiService", "StoreError", "is_api_path"]
