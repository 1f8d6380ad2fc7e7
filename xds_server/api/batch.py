"""meshplane's own whole-model endpoints (an extension beside App Mesh's operations):

``GET /meshplane/v1/model`` -> ``{"revision": N, "documents": [...]}``: every resource the caller
may read, as native documents (what ``meshplane export`` prints).

``POST /meshplane/v1/apply`` with ``{"documents": [native documents], "prune": false,
"dryRun": false, "expectedRevision": null}``: make the store hold these documents. Resources
not in the store are created (version 1), changed specs are updated (version + 1), and with
``prune`` stored resources the documents no longer hold are deleted. The result is validated as
a whole model (``BadRequestException`` with every problem) and committed as ONE transaction
(all-or-nothing; ``ConflictException`` if ``expectedRevision`` is given and the store moved on).
Answer: ``{"revision": N, "dryRun": bool, "changes": [{"action": "create"|"update"|"delete",
"resource": "Route m/r/x"}]}``.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from xds_server import fairness
from xds_server.api.errors import ApiError, bad_request, conflict, forbidden
from xds_server.api.locks import holding
from xds_server.api.parsing import loads_json, text_problem
from xds_server.api.resources import check_new_name, key_of_native, native
from xds_server.api.transaction import Planned, new_metadata, optimistic_write, would_be
from xds_server.api.validation import describe, issues_of
from xds_server.store.base import KINDS, Delete, Put, StoredResource

if TYPE_CHECKING:  # pragma: no cover
    from xds_server.api.auth import Caller
    from xds_server.api.rights import Rights
    from xds_server.store.base import ResourceKey, Store


class ModelService(Protocol):
    """What the whole-model endpoints need of the API (``ApiService`` is one; this module does not
    import it, so the API's modules import each other in one direction only)."""

    store: "Store"
    auth: Any
    rights: "Rights"
    read_only: str | None
    clock: Callable[[], float]
    apply_lock: threading.Lock

    def index(self) -> tuple[int, dict["ResourceKey", StoredResource]]: ...


def handle(service: ModelService, caller: "Caller", method: str, sub: str, query: str, headers: Mapping[str, str],
           body: bytes) -> dict:
    if sub == "model" and method == "GET":
        revision, index = service.index()
        docs = [native(r) for k, r in sorted(index.items()) if service.rights.may_read(caller, k, index)]
        return {"revision": revision, "documents": docs}
    if sub == "apply" and method == "POST":
        request = loads_json(body or b"{}")
        _check_request(request)
        return apply(service, caller, request.get("documents", []), prune=bool(request.get("prune")),
                     dry_run=bool(request.get("dryRun")), expected_revision=request.get("expectedRevision"))
    raise ApiError("UnknownOperationException", f"no meshplane operation {method} /meshplane/v1/{sub}", 404)


# the identity fields of a native document, by kind (each must be a non-empty string)
_IDENTITY = {"Mesh": ("name",), "CloudMapService": ("namespaceName", "name"), "Route": ("mesh", "virtualRouter", "name"),
             "GatewayRoute": ("mesh", "virtualGateway", "name")}
_STRINGS = ("kind", "name", "mesh", "virtualRouter", "virtualGateway", "namespaceName")  # strings wherever given
_SHOWN_PROBLEMS = 20


def _check_request(request) -> None:
    """``BadRequestException`` listing every problem of an apply request's shape (its documents'
    own, too), so that nothing of a wrong type reaches the store or a 500."""
    if not isinstance(request, dict):
        raise bad_request("expected {\"documents\": [...], \"prune\": bool, \"dryRun\": bool}")
    documents = request.get("documents", [])
    if not isinstance(documents, list):
        raise bad_request("documents: expected a list of resource documents")
    problems = [f"{name}: expected true or false" for name in ("prune", "dryRun")
                if request.get(name) is not None and not isinstance(request[name], bool)]
    expected = request.get("expectedRevision")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        problems.append(f"expectedRevision: expected an integer revision, got {expected!r}")
    problems += [f"documents[{i}]: {problem}" for i, doc in enumerate(documents) if (problem := _document_problem(doc))]
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        raise bad_request(problems[:_SHOWN_PROBLEMS] + ([f"... and {more} more"] if more > 0 else []))


def _document_problem(doc) -> str | None:
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
        return "not a native meshplane resource document (kind, name, spec...)"
    if not isinstance(doc.get("spec", {}), (dict, type(None))):
        return f"spec: expected a mapping, got {type(doc['spec']).__name__}"
    for field in _STRINGS:
        value = doc.get(field)
        if value is not None and not isinstance(value, str):
            return f"{field}: expected a string, got {value!r}"
        if isinstance(value, str) and text_problem(value):
            return f"{field}: {text_problem(value)}"
    for field in _IDENTITY.get(doc["kind"], ("mesh", "name")):
        if not doc.get(field):
            return f"{field}: required, a non-empty string"
    return None


def apply(service: ModelService, caller: "Caller", documents: list, *, prune: bool, dry_run: bool,
          expected_revision: int | None) -> dict:
    """Each create/update/delete is allowed exactly when the equivalent App Mesh operation by
    ``caller`` would be (``service.rights``); ``prune`` deletes only what the caller could
    delete, and leaves everything else alone."""
    problems = []
    wanted = {}
    for i, doc in enumerate(documents):
        problem = _document_problem(doc)
        if problem:
            problems.append(f"documents[{i}]: {problem}")
            continue
        key = key_of_native(doc)
        if key in wanted:
            problems.append(f"documents[{i}]: {key} is given twice")
        wanted[key] = doc.get("spec") or {}
    if problems:
        raise bad_request(problems)
    rights = service.rights
    for key in wanted:  # the key layer first, before anything is read
        if key.kind != "CloudMapService":
            service.auth.authorize(caller, "Apply", key.mesh, True)
    if service.read_only and not dry_run:
        raise forbidden(service.read_only)
    def plan(revision: int, index: dict) -> Planned:
        if expected_revision is not None and expected_revision != revision:
            raise conflict(f"the store is at revision {revision}, not {expected_revision}; export again and retry")
        now = service.clock()
        ops, changes = [], []
        owners = {k.mesh: r.metadata.get("meshOwner", caller.account) for k, r in index.items() if k.kind == "Mesh"}
        for key, spec in sorted(wanted.items()):
            current = index.get(key)
            if current is None:
                check_new_name(key)
                rights.check_write(caller, "Apply", "Create", key, None, index)
                owner = caller.account if key.kind == "Mesh" else owners.get(key.mesh, caller.account)
                ops.append(Put(StoredResource(key, spec, 1, new_metadata(now, owner, caller.account)), expected_version=0))
                changes.append({"action": "create", "resource": str(key)})
            elif current.spec != spec:
                rights.check_write(caller, "Apply", "Update", key, current, index)
                res = StoredResource(key, spec, current.version + 1, {**current.metadata, "lastUpdatedAt": now}, current.tags)
                ops.append(Put(res, expected_version=current.version))
                changes.append({"action": "update", "resource": str(key)})
            else:  # unchanged: the caller must at least be able to read it (or it learns it exists)
                rights.check_read(caller, "Apply", key, index)
        if prune:
            for key, current in sorted(index.items()):
                if key not in wanted and rights.may_write(caller, "Delete", key, current, index):
                    ops.append(Delete(key, expected_version=current.version))
                    changes.append({"action": "delete", "resource": str(key)})
        checked = _meshes_to_check(ops)
        after = would_be(index, ops)
        if sum(1 for key in after if checked is None or key.mesh in checked) > fairness.LONG_MESH:
            fairness.demote()  # validating a big mesh is long work: requests to small ones go first
        issues = issues_of(after.values(), checked)
        if issues:
            raise bad_request([describe(i) for i in issues])
        # what was read: the checked meshes (and the Cloud Map stand-ins); with prune, everything
        scope = None if prune or checked is None else checked | {""}
        return Planned(ops, changes, scope, commit=not dry_run)

    def moved() -> None:
        if expected_revision is not None:
            raise conflict("the store changed while applying; export again and retry")

    with holding(service.apply_lock):
        changes, revision = optimistic_write(service.store, service.index, plan, on_moved=moved)
    return {"revision": revision, "dryRun": dry_run, "changes": changes}


def _meshes_to_check(ops: list) -> set[str] | None:
    """The meshes a change can break (a Cloud Map stand-in is read by any mesh: all of them)."""
    keys = [op.key for op in ops]
    if any(k.kind == "CloudMapService" for k in keys):
        return None
    return {k.mesh for k in keys}
