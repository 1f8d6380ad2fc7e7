"""Build once, share many times: caller-independent pieces of a model's compilation.

In a mesh of 2,000 nodes with 10 backends each, every egress cluster, endpoint assignment
and backend service route table is needed by ~10 callers. A ``CompileCache`` holds them for
ONE model object (keys are names, unique only within a model). Each entry records the model
resources it was built from (dependency keys, see ``dependencies.py``), so that after a
change ``successor(new_model, changed)`` carries every untouched entry over to the next
model: a one-route edit then rebuilds that route's virtual host, not every cluster of the
nodes that call it. The cached protos are shared read-only: callers must never mutate them
(the snapshot only serializes them).
"""
from __future__ import annotations

from typing import Callable, Hashable, Iterable, TypeVar

from mesh_model.spec.model import MeshModel

T = TypeVar("T")


class CompileCache:
    def __init__(self, model: MeshModel):
        self.model = model
        self._items: dict[Hashable, tuple[object, frozenset]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], T], depends_on: Iterable[tuple] | Callable[[], Iterable[tuple]] = ()) -> T:
        """The cached value of ``key``, or ``build()`` it. ``depends_on`` (dependency keys, or a
        function computing them, only called on a miss) lets ``successor`` keep it across models;
        an entry without dependencies is dropped by every ``successor``."""
        entry = self._items.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]  # type: ignore[return-value]
        self.misses += 1
        value = build()
        deps = depends_on() if callable(depends_on) else depends_on
        self._items[key] = (value, frozenset(deps))
        return value

    def successor(self, model: MeshModel, changed: set) -> "CompileCache":
        """A cache for ``model`` holding every entry whose dependencies ``changed`` does not touch."""
        nxt = CompileCache(model)
        # list(): one C-level copy, safe while another thread (the control plane's event loop
        # compiling a newly connected node) adds entries to this cache.
        nxt._items = {key: entry for key, entry in list(self._items.items()) if entry[1] and not (entry[1] & changed)}
        return nxt

    def check(self, model: MeshModel) -> None:
        if model is not self.model:
            raise ValueError("a CompileCache serves exactly one model object; make a new one (or a successor) for a new model")

    def __len__(self) -> int:
        return len(self._items)
