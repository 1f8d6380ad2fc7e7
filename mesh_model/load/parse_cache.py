"""Reuse of per-file parse results across loads of the same files (a control plane reloads
the whole model on every change), and of per-document results across ``load_documents``
calls (an API validates the whole would-be model on every write).

Results are keyed by the file's label and a digest of its content, computed once per load
(``text_digest``), or by a document's label and content digest (``document_digest``). Inside
a changed YAML file, each document's text is a key too (``ChunkResult``): an edit of one
route in a file of hundreds of documents parses that document only.
"""
from __future__ import annotations

import hashlib
import marshal
import threading
from dataclasses import dataclass
from typing import Any

from mesh_model import adapters
from mesh_model.errors import Issue
from mesh_model.load.input_limits import Budget
from mesh_model.spec.model import Resource


@dataclass(frozen=True)
class FileResult:
    """What one file yielded: its resources (each validated on its own) and its issues."""

    resources: tuple[Resource, ...]
    issues: tuple[Issue, ...]
    complete: bool
    documents: int
    nodes: int
    origins: tuple[tuple[str, str, Any], ...] = ()  # converted documents: (native label, label naming the original, Origin)


@dataclass(frozen=True)
class ChunkResult:
    """The native documents of one piece of a YAML file (``yaml_scan.split_documents``) that
    parsed and validated on their own without a single issue: their resources."""

    resources: tuple[Resource, ...]
    documents: int
    nodes: int


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def chunk_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ParseCache:
    """Per-file results of parsing and per-document validation, keyed by the file's content.

    A control plane reloads the whole model on every change; with this, an edit of one file
    re-parses that file only, and in a YAML file of native documents only the documents
    whose text changed (the other ``Resource`` objects are reused as they are, which also
    makes "what changed" an identity check). The checks between resources and the model's
    assembly keep their state here too (``incremental``, see ``build.Incremental``), so
    they cost what changed as well. One entry per file label: memory stays proportional to
    the model.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, FileResult]] = {}
        self._facts: dict[str, tuple[bytes, tuple]] = {}  # Kubernetes custom resource identities per file
        self._chunks: dict[str, dict[bytes, ChunkResult]] = {}  # per file: the clean documents of its latest texts
        self._texts: dict[str, tuple[str, bytes, bool]] = {}  # per file: its latest text, digest, Kubernetes or not
        self.decoded: dict[str, tuple[bytes, str]] = {}  # per file: its latest bytes and their text (files.read_files)
        self.incremental: Any = None  # build.Incremental, made by the first load that uses this cache
        self.lock = threading.Lock()  # held by the load using this cache (loads in two threads take turns)

    def has_chunk(self, label: str, digest: bytes) -> bool:
        return digest in self._chunks.get(label, ())

    def get_chunk(self, label: str, digest: bytes, budget: Budget) -> ChunkResult | None:
        """The cached result of this piece of ``label``, if reusing it keeps the load within its limits."""
        cached = self._chunks.get(label, {}).get(digest)
        if cached is None:
            return None
        limits = budget.limits
        if budget.documents + cached.documents > limits.max_documents or budget.nodes + cached.nodes > limits.max_nodes:
            return None
        return cached

    def put_chunks(self, label: str, chunks: dict[bytes, ChunkResult], *, complete: bool) -> None:
        """The pieces of ``label``'s latest text: all of them (``complete``), or some of them
        (added to those of its earlier texts while they stay few: a file broken for a while
        keeps its valid documents)."""
        if not complete:
            kept = self._chunks.get(label, {})
            if len(kept) + len(chunks) <= 2 * len(chunks) + 64:
                chunks = {**kept, **chunks}
        self._chunks[label] = chunks

    def text_facts(self, label: str, text: str) -> tuple[bytes, bool]:
        """``text_digest(text)`` and whether the text holds Kubernetes custom resources; a text
        equal to the file's last one (a comparison, much cheaper than a hash) reuses both."""
        known = self._texts.get(label)
        if known is not None and known[0] == text:
            return known[1], known[2]
        facts = text_digest(text), adapters.K8S_API_PREFIX in text
        self._texts[label] = (text, *facts)
        return facts

    def get_facts(self, label: str, digest: bytes) -> tuple | None:
        entry = self._facts.get(label)
        return entry[1] if entry is not None and entry[0] == digest else None

    def put_facts(self, label: str, digest: bytes, facts: tuple) -> None:
        self._facts[label] = (digest, facts)

    def get(self, label: str, digest: bytes, budget: Budget) -> FileResult | None:
        """The cached result of this content, if any and if reusing it keeps the load within
        its per-load limits (its documents and values count as if parsed again)."""
        entry = self._files.get(label)
        if entry is None or entry[0] != digest:
            return None
        cached, limits = entry[1], budget.limits
        if budget.documents + cached.documents > limits.max_documents or budget.nodes + cached.nodes > limits.max_nodes:
            return None
        return cached

    def put(self, label: str, digest: bytes, result: FileResult) -> None:
        self._files[label] = (digest, result)

    def keep_only(self, labels: set[str]) -> None:
        for label in list(self._files):
            if label not in labels:
                del self._files[label]
        for label in list(self._facts):
            if label not in labels:
                del self._facts[label]
        for label in list(self._chunks):
            if label not in labels:
                del self._chunks[label]
        for label in list(self._texts):
            if label not in labels:
                del self._texts[label]
        for label in list(self.decoded):
            if label not in labels:
                del self.decoded[label]


def document_digest(data: Any) -> bytes | None:
    """A content hash of one parsed document (None when it is not plain data: such a document
    is then simply validated again). ``1``, ``1.0`` and ``true`` hash differently.

    ``marshal`` (format 2: no back-references, so the bytes depend on the values alone) is
    several times faster than sorted JSON, and exact: equal bytes are equal values of the same
    types, with their keys in the same order. The same document with its keys in another order
    only misses the cache (it is validated again), which never changes a result."""
    try:
        data_bytes = marshal.dumps(data, 2)
    except (ValueError, RecursionError):  # not plain data (e.g. a date from YAML), or too deep
        return None
    return hashlib.blake2b(data_bytes, digest_size=20).digest()


@dataclass(frozen=True)
class DocumentResult:
    """A document that validated on its own without a single issue: its ``Resource``."""

    resource: Resource
    nodes: int


class DocumentCache:
    """Per-document results of ``load_documents``, keyed by the label and the document's content.

    An API validating every write loads the whole would-be model each time, though a write
    changes one or a few documents; with this, only the documents whose content changed are
    checked again (envelope, identity, spec), and the others' validated ``Resource`` objects
    are reused as they are. Only documents that yielded a resource and no issue are kept, so
    every message (which names a document by its position) is produced afresh, and checks
    between resources always run on the whole model: the result is that of an uncached load.

    The checks between resources and the model's assembly keep their state here too
    (``incremental``, see ``build.Incremental``; ``check_lock``: one load at a time uses it),
    so they cost what changed since the last load, with the result of a load without them.

    Memory stays proportional to the models loaded: entries not used by the latest load are
    dropped once they outnumber the latest load's documents. Safe to share between threads.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, bytes], DocumentResult] = {}
        self._lock = threading.Lock()
        self.incremental: Any = None  # build.Incremental, made by the first load that uses this cache
        self.check_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, label: str, digest: bytes | None, budget: Budget) -> DocumentResult | None:
        """The cached result, if any and if reusing it keeps the load within its per-load limits
        (the document and its values count as if walked again)."""
        if digest is None:
            return None
        entry = self._entries.get((label, digest))
        limits = budget.limits
        if entry is None or budget.documents + 1 > limits.max_documents or budget.nodes + entry.nodes > limits.max_nodes:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, label: str, digest: bytes | None, result: DocumentResult) -> None:
        if digest is not None:
            with self._lock:
                self._entries[(label, digest)] = result

    def keep_only(self, used: set[tuple[str, bytes]]) -> None:
        """After a load: forget what it did not use once the unused entries outnumber the used."""
        with self._lock:
            if len(self._entries) > 2 * len(used) + 64:
                self._entries = {key: value for key, value in self._entries.items() if key in used}
