"""Watch the model files and reload when they change.

File events first (inotify through ``watchfiles``): a write is seen within a few
milliseconds, and a reload starts as soon as the events stop for ``event_quiet`` (5 ms), so
a single save reaches the control plane at once while an editor's save-in-steps or a
``git checkout`` of many files (events milliseconds apart) is still one reload; events that
keep coming are cut at ``max_delay``. Events arriving during a reload make one more reload
after it. Only what a load reads matters: a model file (``MODEL_FILE_SUFFIXES``) added,
removed or written; other events (a ConfigMap's ``..data`` symlink swapped, a folder moved)
reload only when the model files' state (``model_files_state``) changed.

Polling stays as the safety net, because events do not arrive everywhere (some bind mounts
and network filesystems, a watched folder replaced as a whole): the state is also compared
every ``safety_interval`` seconds. A change that no event reported restarts the event
watch once; a second one (or ``watchfiles`` missing, or failing) switches to polling every
``interval`` seconds with the old debounce (a reload after ``quiet`` seconds without a
further change, at most ``max_delay`` after the first). ``events=False`` polls from the start.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from mesh_model.load import MODEL_FILE_SUFFIXES
from mesh_model.load.files import model_files

log = logging.getLogger("meshplane.watch")
if logging.getLogger("watchfiles").level == logging.NOTSET:
    logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not "1 change detected" at every edit


def model_files_state(paths: Sequence[str]) -> tuple:
    """A cheap value that changes whenever a model file is added, removed or written (the
    files a load reads; symlinks followed, so a ConfigMap swap changes it too)."""
    entries = []
    for file in model_files(paths):
        try:
            st = os.stat(file)
            entries.append((file, st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns))
        except OSError:
            entries.append((file, None, None, None, None))
    return tuple(entries)


async def watch(
    paths: Sequence[str],
    on_change: Callable[[], Awaitable[object]],
    *,
    interval: float = 0.1,
    quiet: float = 0.1,
    max_delay: float = 1.0,
    events: bool = True,
    event_quiet: float = 0.005,
    safety_interval: float = 1.0,
) -> None:
    """Run forever (until cancelled), calling ``on_change`` after debounced changes.

    ``events=False`` (or ``watchfiles`` not installed) polls every ``interval`` seconds.
    """
    paths = [os.fspath(p) for p in paths]
    seen = await asyncio.to_thread(model_files_state, paths)
    if events:
        try:
            import watchfiles
        except ImportError:
            log.warning("watchfiles is not installed: polling the model files every %gs", interval)
        else:
            watcher = _EventWatch(watchfiles, paths, on_change, seen, event_quiet=event_quiet, max_delay=max_delay,
                                  safety_interval=safety_interval, poll_quiet=quiet)
            seen = await watcher.run()
            if watcher.pending:  # a change seen while switching over
                await on_change()
    await _poll(paths, on_change, seen, interval=interval, quiet=quiet, max_delay=max_delay)


async def _poll(paths: Sequence[str], on_change: Callable[[], Awaitable[object]], seen: tuple, *,
                interval: float, quiet: float, max_delay: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        current = await asyncio.to_thread(model_files_state, paths)
        if current == seen:
            continue
        seen = await _settle(paths, current, quiet=quiet, interval=interval, max_delay=max_delay, started=loop.time())
        await on_change()


async def _settle(paths: Sequence[str], seen: tuple, *, quiet: float, interval: float, max_delay: float,
                  started: float) -> tuple:
    """Wait until the state stays the same for ``quiet`` seconds (at most ``max_delay`` after
    ``started``); returns the last state."""
    loop = asyncio.get_running_loop()
    last_change = loop.time()
    while loop.time() - last_change < quiet and loop.time() - started < max_delay:
        await asyncio.sleep(min(interval, quiet))
        current = await asyncio.to_thread(model_files_state, paths)
        if current != seen:
            seen, last_change = current, loop.time()
    return seen


class _Roots:
    """Where to listen for events, and which event paths matter.

    A folder is watched recursively; a file given on its own through its folder (not
    recursively: a file can be a ConfigMap's symlink, whose target is swapped beside it).
    """

    def __init__(self, paths: Sequence[str]):
        self.folders: list[str] = []
        self.files: set[str] = set()
        self.file_folders: list[str] = []
        for path in paths:
            absolute = os.path.abspath(path)
            if os.path.isdir(absolute):
                self.folders.append(absolute)
            else:  # a file, or a path that does not exist yet: its folder tells when it appears
                self.files.add(absolute)
                parent = os.path.dirname(absolute)
                if parent not in self.file_folders:
                    self.file_folders.append(parent)

    def classify(self, changed: str) -> str | None:
        """``"file"``: a model file the load reads was added, removed or written (reload);
        ``"maybe"``: something that can change what the load reads (a folder, a ConfigMap's
        ``..data`` swap: reload if the state changed); None: nothing a load reads."""
        changed = os.path.abspath(changed)
        if changed in self.files:
            return "file"
        result = None
        parent = os.path.dirname(changed)
        if parent in self.file_folders and os.path.basename(changed).startswith(".."):
            result = "maybe"
        for folder in self.folders:
            if changed == folder:
                return "maybe"
            if not changed.startswith(folder.rstrip(os.sep) + os.sep):
                continue
            parts = Path(os.path.relpath(changed, folder)).parts
            if any(part.startswith("..") for part in parts):
                result = "maybe"  # a ConfigMap's ..data / ..<timestamp> folders (the load skips them, not their targets)
            elif any(part.startswith(".") for part in parts):
                continue  # hidden: editor temp files, .git (the load skips them)
            elif changed.endswith(MODEL_FILE_SUFFIXES):
                return "file"
            else:
                result = "maybe"  # a folder created, moved or removed; or a file the load does not read
        return result


class _EventWatch:
    """File events, with a slow safety poll beside them; ``run`` returns (with the last
    state) when polling must take over."""

    def __init__(self, watchfiles, paths: Sequence[str], on_change: Callable[[], Awaitable[object]], seen: tuple, *,
                 event_quiet: float, max_delay: float, safety_interval: float, poll_quiet: float):
        self.watchfiles = watchfiles
        self.paths = list(paths)
        self.on_change = on_change
        self.seen = seen
        self.step_ms = max(1, round(event_quiet * 1000))
        self.debounce_ms = max(self.step_ms, round(max_delay * 1000))
        self.safety_interval = safety_interval
        self.poll_quiet = poll_quiet
        self.pending = False  # the state changed and no reload ran for it yet
        self.reloads = 0

    async def run(self) -> tuple:
        restarts = 0
        while True:
            outcome = await self._listen()
            if outcome == "missed" and restarts == 0:
                restarts += 1
                log.warning("file events missed a change of the model files; watching them again")
                continue
            if outcome == "missed":
                log.warning("file events keep missing changes of the model files (a bind mount or network filesystem?): "
                            "polling them from now on")
            return self.seen

    async def _listen(self) -> str:
        roots = _Roots(self.paths)
        queue: asyncio.Queue = asyncio.Queue()
        stop = asyncio.Event()
        producers = []
        for folders, recursive in ((roots.folders, True), (roots.file_folders, False)):
            if folders:
                producers.append(asyncio.create_task(self._produce(folders, recursive, queue, stop)))
        try:
            return await self._consume(roots, queue)
        finally:
            stop.set()
            for task in producers:
                task.cancel()
            await asyncio.gather(*producers, return_exceptions=True)

    async def _produce(self, folders: list[str], recursive: bool, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        try:
            async for changes in self.watchfiles.awatch(
                *folders, watch_filter=None, debounce=self.debounce_ms, step=self.step_ms, stop_event=stop,
                rust_timeout=5_000, recursive=recursive, ignore_permission_denied=True,
            ):
                queue.put_nowait(changes)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - a watcher that cannot start or dies: polling takes over
            queue.put_nowait(exc)
            return
        queue.put_nowait(RuntimeError("file event watch ended"))

    async def _consume(self, roots: _Roots, queue: asyncio.Queue) -> str:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self.safety_interval)
            except asyncio.TimeoutError:
                current = await asyncio.to_thread(model_files_state, self.paths)
                if current == self.seen:
                    continue
                # an event may still be on its way (it waits event_quiet for more): give it time
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.2, 20 * self.step_ms / 1000))
                except asyncio.TimeoutError:
                    await self._reload_after_settling(current)
                    return "missed"
            batches = [item]
            while not queue.empty():
                batches.append(queue.get_nowait())
            failure = next((b for b in batches if isinstance(b, BaseException)), None)
            if failure is not None:
                log.warning("file events unavailable (%s: %s): polling the model files", type(failure).__name__, failure)
                current = await asyncio.to_thread(model_files_state, self.paths)
                self.pending = self.pending or current != self.seen
                self.seen = current
                return "failed"
            kinds = {roots.classify(path) for batch in batches for _, path in batch}
            if "file" not in kinds and "maybe" not in kinds:
                continue
            current = await asyncio.to_thread(model_files_state, self.paths)
            if "file" in kinds or current != self.seen:
                self.seen = current
                await self._reload()

    async def _reload_after_settling(self, current: tuple) -> None:
        loop = asyncio.get_running_loop()
        self.seen = await _settle(self.paths, current, quiet=self.poll_quiet, interval=min(0.1, self.poll_quiet),
                                  max_delay=self.debounce_ms / 1000, started=loop.time())
        await self._reload()

    async def _reload(self) -> None:
        self.pending = False
        self.reloads += 1
        await self.on_change()
