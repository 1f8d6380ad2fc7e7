"""Validate a would-be model with meshplane's own loader (the checks and messages of
``meshplane validate``): every resource of the meshes a write touches, plus every Cloud Map
stand-in service, rendered as native documents and loaded together.

A write changes one or a few documents of the model it validates, so the documents are loaded
with one process-wide ``DocumentCache``: those unchanged since an earlier write are not
validated again (their ``Resource`` is reused), the checks between resources run on the whole
would-be model as before, and the issues are those of an uncached load."""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Iterable

from mesh_model import Issue, ModelError, load_texts
from mesh_model.validate.references import is_missing_reference  # noqa: F401 (the API's NotFound issues)

try:  # parsed documents straight in (no JSON round trip), where the loader offers it
    from mesh_model.load import load_documents
except ImportError:  # pragma: no cover - older loader
    load_documents = None
try:
    from mesh_model.load import DocumentCache
except ImportError:  # pragma: no cover - older loader
    DocumentCache = None

from mesh_model.load.parse_cache import document_digest

from xds_server.api.resources import native
from xds_server.store.base import StoredResource

LABEL = "request"


class CachesByScope:
    """One ``DocumentCache`` per set of meshes validated together (a write validates its own
    mesh): a cache keeps the state of its latest load only, so one shared by every mesh would be
    cold for a big mesh after each write to another mesh. Least recently used scopes beyond
    ``size`` are dropped."""

    def __init__(self, size: int = 256):
        self.size = size
        self._caches: OrderedDict[frozenset[str] | None, DocumentCache] = OrderedDict()
        # per scope, the native document and digest of each stored resource last validated: the
        # API's index keeps the same ``StoredResource`` objects between writes, so only the
        # resources a write changes are rendered and hashed again
        self.documents: dict[frozenset[str] | None, dict] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._caches)

    def for_scope(self, meshes: set[str] | None) -> "DocumentCache":
        scope = frozenset(meshes) if meshes is not None else None
        with self._lock:
            cache = self._caches.pop(scope, None)
            if cache is None:
                cache = DocumentCache()
            self._caches[scope] = cache
            while len(self._caches) > self.size:
                dropped, _ = self._caches.popitem(last=False)
                self.documents.pop(dropped, None)
            return cache


# content-keyed, so one set of caches serves every ApiService of the process; bounded by the models loaded.
# MESHPLANE_API_VALIDATION_CACHE=0 turns it off (the benchmarks' "before", bench/api_bench.py).
CACHE = (CachesByScope() if DocumentCache is not None and os.environ.get("MESHPLANE_API_VALIDATION_CACHE", "1") != "0"
         else None)


def issues_of(resources: Iterable[StoredResource], meshes: set[str] | None = None) -> list[Issue]:
    """Every problem of the model made of ``resources`` (only meshes in ``meshes`` if given)."""
    chosen = [r for r in resources if meshes is None or r.key.kind == "CloudMapService" or r.key.mesh in meshes]
    if not chosen:
        return []
    try:
        if load_documents is not None and CACHE is not None:
            cache = CACHE.for_scope(meshes)
            scope = frozenset(meshes) if meshes is not None else None
            known = CACHE.documents.get(scope, {})
            entries = {}
            for r in chosen:
                entry = known.get(r.key)
                if entry is None or entry[0] is not r:  # new or changed since the last validation
                    doc = native(r)
                    entry = (r, doc, document_digest(doc))
                entries[r.key] = entry
            CACHE.documents[scope] = entries
            load_documents([(LABEL, doc) for _, doc, _ in entries.values()], cache=cache,
                           digests=[digest for _, _, digest in entries.values()])
        elif load_documents is not None:
            load_documents([(LABEL, native(r)) for r in chosen])
        else:
            load_texts([(LABEL + ".json", json.dumps([native(r) for r in chosen]))])
    except ModelError as exc:
        return list(exc.issues)
    return []


def describe(issue: Issue) -> str:
    """``Route m/r/x: spec.httpRoute.action.weightedTargets[0].weight: message`` (no file label)."""
    return ": ".join(p for p in (issue.resource, issue.path, issue.message) if p)
