"""Validation problems, reported all at once.

Every problem names where it is (file), what it is about (``Kind mesh/name``) and
which field (a dotted path with ``[i]`` list indexes, App Mesh camelCase names), so a
person can fix a 2,000-resource model in one pass instead of one error per run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in the input.

    ``file``: the path as the user gave it (or ``<input>``); ``resource``: a label such as
    ``Route shop/catalog-router/main`` (empty when the document has no identity yet);
    ``path``: a field path such as ``spec.httpRoute.action.weightedTargets[0].weight``
    (empty for document-level problems).
    """

    file: str
    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.resource, self.path) if p]
        parts.append(self.message)
        return ": ".join(parts)


class ModelError(Exception):
    """The input is not a valid mesh; ``issues`` lists every problem found (sorted)."""

    def __init__(self, issues: Iterable[Issue]):
        self.issues: tuple[Issue, ...] = tuple(sorted(set(issues)))
        super().__init__("\n".join(str(i) for i in self.issues))
