"""Validate a would-be model with meshplane's own loader (the checks and messages of
``meshplane validate``): every resource of the meshes a write touches, plus every Cloud Map
stand-in service, rendered as native documents and loaded together.

A write changes one or a few documents of the model it validates, so each set of meshes
validated together keeps a ``ScopeCache`` between writes: the rendered document and digest of
each stored resource (the API's index keeps the same ``StoredResource`` objects between writes,
so only the changed ones are rendered and hashed again) and a ``DocumentCache`` (documents
unchanged since an earlier write are not validated again, the checks between resources redo
what changed). The issues are those of an uncached load."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable

from mesh_model import pacing
from mesh_model import Issue, ModelError
from mesh_model.load import DocumentCache, load_documents
from mesh_model.load.parse_cache import document_digest
from mesh_model.validate.references import is_missing_reference  # noqa: F401 (the API's NotFound issues)

from xds_server.api.resources import native
from xds_server.store.base import ResourceKey, StoredResource

LABEL = "request"


@dataclass
class ScopeCache:
    """What the validations of one set of meshes keep between writes."""

    documents: DocumentCache = field(default_factory=DocumentCache)
    rendered: dict[ResourceKey, tuple[StoredResource, dict, bytes | None]] = field(default_factory=dict)


class CachesByScope:
    """One ``ScopeCache`` per set of meshes validated together (a write validates its own
    mesh): a ``DocumentCache`` keeps the state of its latest load only, so one shared by every
    mesh would be cold for a big mesh after each write to another mesh. Least recently used
    scopes beyond ``size`` are dropped."""

    def __init__(self, size: int = 256):
        self.size = size
        self._scopes: OrderedDict[frozenset[str] | None, ScopeCache] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._scopes)

    def for_scope(self, meshes: set[str] | None) -> ScopeCache:
        scope = frozenset(meshes) if meshes is not None else None
        with self._lock:
            cache = self._scopes.pop(scope, None) or ScopeCache()
            self._scopes[scope] = cache
            while len(self._scopes) > self.size:
                self._scopes.popitem(last=False)
            return cache


# one set of caches serves every ApiService of the process; bounded by the models loaded.
# MESHPLANE_API_VALIDATION_CACHE=0 turns it off (the benchmarks' "before", bench/api_bench.py).
CACHE = CachesByScope() if os.environ.get("MESHPLANE_API_VALIDATION_CACHE", "1") != "0" else None


def issues_of(resources: Iterable[StoredResource], meshes: set[str] | None = None) -> list[Issue]:
    """Every problem of the model made of ``resources`` (only meshes in ``meshes`` if given)."""
    chosen = [r for r in resources if meshes is None or r.key.kind == "CloudMapService" or r.key.mesh in meshes]
    if not chosen:
        return []
    try:
        if CACHE is None:
            load_documents([(LABEL, native(r)) for r in chosen])
        else:
            scope = CACHE.for_scope(meshes)
            entries = {}
            for r in pacing.paced(chosen):
                entry = scope.rendered.get(r.key)
                if entry is None or entry[0] is not r:  # new or changed since the last validation
                    doc = native(r)
                    entry = (r, doc, document_digest(doc))
                entries[r.key] = entry
            scope.rendered = entries
            load_documents([(LABEL, doc) for _, doc, _ in entries.values()], cache=scope.documents,
                           digests=[digest for _, _, digest in entries.values()])
    except ModelError as exc:
        return list(exc.issues)
    return []


def describe(issue: Issue) -> str:
    """``Route m/r/x: spec.httpRoute.action.weightedTargets[0].weight: message`` (no file label)."""
    return ": ".join(p for p in (issue.resource, issue.path, issue.message) if p)
