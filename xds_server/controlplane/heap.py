"""Keeping Python's cycle collector off the control plane's hot paths (``serve`` only).

A model of 10,000 nodes is millions of objects. CPython's cycle collector walks every tracked
object of the oldest generation on each full collection: on the development machine that
was 0.75 s per collection, ~5 s of an 18 s model load and ~19 s of a 10,000-stream
reconnect storm. None of it finds garbage: the model, the compile cache and the snapshots
hold no reference cycles, so they are freed by reference counting when replaced
(``tests/unit/test_heap.py``).

So, when enabled (``HeapPolicy(True)``, process-wide, hence only when ``serve`` asks):

- ``building()``: no cycle collection while a model is loaded and compiled (start-up and
  every reload, also on a worker thread); what they build is long-lived and acyclic, and
  is frozen when the build ends (``gc.freeze``: the permanent generation, where no
  collection looks again), before the collector runs again. A build that fails (a rejected
  model) freezes nothing: what it leaves is garbage, and the collector must see it.
- ``settle()``: freeze what is alive now (after a reload has published its snapshots).
- ``compiled(n)``: while Envoys connect, each new node's snapshot and stream are more
  long-lived objects; every ``settle_every`` newly compiled nodes, one collection of what is
  not yet frozen (small: only what came since the last settle) frees any cyclic garbage
  among it, then it is frozen too. The collector thus never walks the model again.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

# new node placements compiled between two settles while Envoys connect: a collection of
# what 1,000 nodes and their streams allocated takes a few milliseconds
SETTLE_EVERY = 1000


class HeapPolicy:
    """``enabled=False`` (tests, the CLI's one-shot commands): every method does nothing."""

    def __init__(self, enabled: bool, settle_every: int = SETTLE_EVERY) -> None:
        self.enabled = enabled
        self.settle_every = settle_every
        self._since_settle = 0
        self._paused = 0
        self._lock = threading.Lock()  # building() runs on the event loop and on reload threads

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """No cycle collection inside (nested and concurrent uses count)."""
        if not self.enabled:
            yield
            return
        with self._lock:
            self._paused += 1
            if self._paused == 1:
                gc.disable()
        failed = False
        try:
            yield
        except BaseException:
            # a rejected model: what it left is garbage, some of it in reference cycles (an
            # error raised from a local holds its frame, and the frame the half-loaded model);
            # frozen, it would never be collected, so nothing is frozen after a failure
            failed = True
            raise
        finally:
            with self._lock:
                self._paused -= 1
                if self._paused == 0:
                    # what the build left alive (the new model, its cache and snapshots) is
                    # long-lived: frozen before the collector runs again, or its first
                    # collection would walk all of it (a stall of every stream)
                    if not failed:
                        gc.freeze()
                    gc.enable()

    def settle(self, *, collect: bool = False) -> None:
        """Freeze what is alive now; ``collect``: first free the cyclic garbage not yet frozen
        (without it, cyclic garbage alive at this moment would be kept for good)."""
        if not self.enabled:
            return
        if collect:
            gc.collect()
        gc.freeze()
        self._since_settle = 0

    def compiled(self, count: int = 1) -> None:
        """``count`` node placements were compiled for newly connected Envoys."""
        if not self.enabled:
            return
        self._since_settle += count
        if self._since_settle >= self.settle_every:
            self.settle(collect=True)
