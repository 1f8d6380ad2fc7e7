"""Watch the model files and reload when they change.

Polling (file list, size, mtime) rather than inotify: no extra dependency, works on every
filesystem including bind mounts and ConfigMap symlink swaps, and costs microseconds for a
few hundred files. Changes are debounced: a reload runs after ``quiet`` seconds without a
further change, or at most ``max_delay`` after the first one, so an editor's save-in-steps
or a `git checkout` of many files becomes one reload.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from mesh_model.load import MODEL_FILE_SUFFIXES


def model_files_state(paths: Sequence[str]) -> tuple:
    """A cheap value that changes whenever a model file is added, removed or written."""
    entries = []
    for root in paths:
        path = Path(root)
        files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.suffix in MODEL_FILE_SUFFIXES)
        for file in files:
            try:
                st = os.stat(file)
                entries.append((str(file), st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                entries.append((str(file), None, None, None))
    return tuple(entries)


async def watch(
    paths: Sequence[str],
    on_change: Callable[[], Awaitable[object]],
    *,
    interval: float = 0.1,
    quiet: float = 0.1,
    max_delay: float = 1.0,
) -> None:
    """Run forever (until cancelled), calling ``on_change`` after debounced changes."""
    loop = asyncio.get_running_loop()
    seen = await asyncio.to_thread(model_files_state, paths)
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(model_files_state, paths)
        if current == seen:
            continue
        first_change = last_change = loop.time()
        seen = current
        while loop.time() - last_change < quiet and loop.time() - first_change < max_delay:
            await asyncio.sleep(min(interval, quiet))
            current = await asyncio.to_thread(model_files_state, paths)
            if current != seen:
                seen, last_change = current, loop.time()
        await on_change()
