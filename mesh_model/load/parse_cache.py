"""Reuse of per-file parse results across loads of the same files (a control plane reloads
the whole model on every change).

Results are keyed by the file's label and a digest of its content, computed once per load
(``text_digest``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

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


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class ParseCache:
    """Per-file results of parsing and per-document validation, keyed by the file's content.

    A control plane reloads the whole model on every change; with this, an edit of one file
    re-parses that file only (the other files' ``Resource`` objects are reused as they are,
    which also makes "what changed" an identity check). Cross-file checks always run on the
    whole model. One entry per file label: memory stays proportional to the model.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, FileResult]] = {}
        self._facts: dict[str, tuple[bytes, tuple]] = {}  # Kubernetes custom resource identities per file

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
