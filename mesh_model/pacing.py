"""Yield points in the long loops of loading, checking and compiling a model.

A server that loads a 10,000-resource mesh after every write to it shares one interpreter
(one GIL) with requests to small meshes; without a point where the long work can step aside,
a small request waits for the big one's slices of the interpreter. ``pace()`` is that point:
it calls the hook the embedding program installed (``install``), and does nothing without
one. ``mesh_model`` stays pure: it knows nothing of threads or requests, it only says "a
good moment to wait, if someone wants me to".
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

_hook: Callable[[], None] | None = None
EVERY = 32  # items between two yield points in ``paced``: well under a millisecond of work


def install(hook: Callable[[], None] | None) -> None:
    """The function ``pace`` calls (``None``: nothing)."""
    global _hook
    _hook = hook


def pace() -> None:
    """A moment where the caller's loop may wait for more urgent work."""
    hook = _hook
    if hook is not None:
        hook()


def paced(items: Iterable[T]) -> Iterable[T]:
    """``items``, with a yield point every ``EVERY`` of them (``items`` itself without a hook:
    the CLI, the benchmarks and the tests pay nothing)."""
    if _hook is None:
        return items
    return _paced(items)


def _paced(items: Iterable[T]) -> Iterator[T]:
    for n, item in enumerate(items):
        if n % EVERY == 0:
            pace()
        yield item
