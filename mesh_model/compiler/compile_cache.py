"""Build once, share many times: every piece of a model's compilation, with what it read.

In a mesh of 2,000 nodes with 10 backends each, every egress cluster, endpoint assignment
and backend service route table is needed by ~10 callers; with one popular service, by all
of them. A ``CompileCache`` holds every piece compiled for ONE model object (keys are names,
unique only within a model): service and node plans, the shared pieces, and each node's own
resources. Each entry records the model resources it was built from (dependency keys, see
``dependencies.py``), so that after a change ``successor(new_model, changed)`` carries every
untouched entry over to the next model. An edit of one service's VirtualNode then rebuilds
the one egress cluster every caller shares, and each caller's snapshot is reassembled from
cached pieces (``Built``: serialized and hashed once) instead of being recompiled.

Entries built for one placement of a node (its listeners, its local-app cluster) carry that
placement, so ``retain_placements`` can drop them when no Envoy uses the placement any more.
The cached values are shared read-only: callers must never mutate them.
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Hashable, Iterable, TypeVar

from mesh_model import pacing
from mesh_model.spec.model import MeshModel

T = TypeVar("T")

CONTENT_LIMIT = 100_000

Dependencies = Iterable[tuple] | Callable[[Any], Iterable[tuple]]  # the keys, or a function of the built value


class CompileCache:
    def __init__(self, model: MeshModel):
        self.model = model
        # key -> (value, dependency keys, placement it was built for or None)
        self._items: dict[Hashable, tuple[object, frozenset, object]] = {}
        # content-addressed pieces (``by_content``): valid for any model, handed on to successors
        self._content: dict[Hashable, object] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], T], depends_on: Dependencies = (), *,
            into: set | None = None, placement: object = None) -> T:
        """The cached value of ``key``, or ``build()`` it.

        ``depends_on``: the dependency keys of what ``build`` reads, or a function of the
        built value giving them (only called on a miss); they let ``successor`` keep the entry
        across models, and an entry without dependencies is dropped by every ``successor``.
        ``into``: a set that collects the entry's dependencies, hit or miss (what a node's
        compilation read, piece by piece). ``placement``: the placement the entry is specific
        to (see ``retain_placements``).
        """
        entry = self._items.get(key)
        if entry is not None:
            self.hits += 1
        else:
            self.misses += 1
            value = build()
            deps = depends_on(value) if callable(depends_on) else depends_on
            entry = self._items[key] = (value, frozenset(deps), placement)
        if into is not None:
            into |= entry[1]
        return entry[0]  # type: ignore[return-value]

    def by_content(self, key: Hashable, build: Callable[[], T]) -> T:
        """A piece that is a function of ``key`` alone (e.g. the pickled JSON form of a listener):
        built once for every node and every model that needs the same content. Bounded: past
        ``CONTENT_LIMIT`` entries the memo starts afresh (it only ever saves work)."""
        value = self._content.get(key)
        if value is None:
            if len(self._content) >= CONTENT_LIMIT:
                self._content = {}
            value = self._content[key] = build()
        return value  # type: ignore[return-value]

    def lookup(self, key: Hashable) -> tuple[Any, frozenset] | None:
        """``(value, dependency keys)`` of a cached ``key``, or ``None``; counts nothing. For a
        hot loop that records the dependencies itself."""
        entry = self._items.get(key)
        return None if entry is None else (entry[0], entry[1])

    def replace_value(self, key: Hashable, value: object) -> None:
        """Swap an entry's value for an equivalent one (same dependencies), e.g. a carried-over
        plan pointed at the new model's objects."""
        _old, deps, placement = self._items[key]
        self._items[key] = (value, deps, placement)

    def successor(self, model: MeshModel, changed: set) -> "CompileCache":
        """A cache for ``model`` holding every entry whose dependencies ``changed`` does not touch."""
        nxt = CompileCache(model)
        nxt._content = self._content
        # copy() is one C-level pass that reuses the stored hashes (and is atomic under the GIL,
        # so safe while the event loop adds entries to this cache for a newly connected node);
        # then only the entries the change touches are removed
        items = nxt._items = self._items.copy()
        stale = [key for key, entry in pacing.paced(items.items()) if not entry[1] or not entry[1].isdisjoint(changed)]
        for key in stale:
            del items[key]
        return nxt

    def retain_placements(self, placements: Collection[object]) -> int:
        """Drop the entries built for a placement not in ``placements``; returns how many."""
        dropped = [key for key, entry in list(self._items.items()) if entry[2] is not None and entry[2] not in placements]
        for key in dropped:
            self._items.pop(key, None)
        return len(dropped)

    def check(self, model: MeshModel) -> None:
        if model is not self.model:
            raise ValueError("a CompileCache serves exactly one model object; make a new one (or a successor) for a new model")

    def __len__(self) -> int:
        return len(self._items)
