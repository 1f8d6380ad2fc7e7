"""The model file watcher: file events first (fast), polling as the fallback; one reload per
burst of writes; only what a load reads triggers a reload."""
from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest

from xds_server.controlplane import watch as watch_module
from xds_server.controlplane.watch import model_files_state, watch

pytest.importorskip("watchfiles")

# how long a change may take to be reported: generous for a loaded CI machine, and still far
# below what the safety poll would take in these tests (SLOW_POLL)
EVENT_BOUND = 1.0
SLOW_POLL = 30.0


class Recorder:
    """An ``on_change`` that records when it ran (and takes ``takes`` seconds, like a reload)."""

    def __init__(self, takes: float = 0.0) -> None:
        self.times: list[float] = []
        self.event = asyncio.Event()
        self.takes = takes

    async def __call__(self) -> None:
        self.times.append(time.monotonic())
        self.event.set()
        if self.takes:
            await asyncio.sleep(self.takes)

    async def next(self, timeout: float) -> float:
        """Seconds until the next call (raises on timeout)."""
        started = time.monotonic()
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
        return self.times[-1] - started

    async def none_within(self, seconds: float) -> bool:
        count = len(self.times)
        await asyncio.sleep(seconds)
        return len(self.times) == count


def run_watching(paths, body, takes: float = 0.0, **options) -> None:
    """Run ``body(recorder)`` while ``watch(paths, recorder, **options)`` runs; then stop it."""

    async def main() -> None:
        recorder = Recorder(takes)
        task = asyncio.create_task(watch([str(p) for p in paths], recorder, **options))
        try:
            await asyncio.sleep(0.3)  # the watch is set up
            assert not task.done(), task.exception()
            await body(recorder)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def replace(path: Path, text: str) -> None:
    """Write atomically, as deploy tools do."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_events_report_an_edit_within_milliseconds(tmp_path):
    model = tmp_path / "mesh.yaml"
    model.write_text("a: 0\n")
    latencies = []

    async def body(recorder: Recorder) -> None:
        for i in range(7):
            replace(model, f"a: {i + 1}\n")
            latencies.append(await recorder.next(EVENT_BOUND))
            assert await recorder.none_within(0.15), "one edit, one reload"
        model.write_text("a: 0\n")  # in place (truncate, write): as fast
        latencies.append(await recorder.next(EVENT_BOUND))

    run_watching([tmp_path], body, safety_interval=SLOW_POLL)
    # typically ~10 ms (5 ms of quiet after the last event); polling took 100-200 ms
    assert statistics.median(latencies) < 0.25, latencies


def test_a_burst_of_writes_is_one_reload(tmp_path):
    (tmp_path / "mesh.yaml").write_text("a: 0\n")

    async def body(recorder: Recorder) -> None:
        for i in range(50):
            (tmp_path / f"part-{i}.yaml").write_text(f"kind: x\nname: n{i}\n")
        await recorder.next(EVENT_BOUND)
        await asyncio.sleep(0.5)
        # one reload; a machine stalling mid-burst (events more than 5 ms apart) may make a
        # second, with what arrived during the first
        assert 1 <= len(recorder.times) <= 3, len(recorder.times)

    run_watching([tmp_path], body, takes=0.05, safety_interval=SLOW_POLL)


def test_new_and_removed_files_reload_others_do_not(tmp_path):
    (tmp_path / "mesh.yaml").write_text("a: 0\n")
    (tmp_path / "sub").mkdir()

    async def body(recorder: Recorder) -> None:
        (tmp_path / "sub" / "more.yml").write_text("b: 1\n")
        await recorder.next(EVENT_BOUND)
        (tmp_path / "sub" / "more.yml").unlink()
        await recorder.next(EVENT_BOUND)
        (tmp_path / "new.json").write_text("{}")
        await recorder.next(EVENT_BOUND)
        # what a load does not read: other files, hidden files (editor swap files, .git)
        (tmp_path / "README.md").write_text("hello\n")
        (tmp_path / ".mesh.yaml.swp").write_text("swap\n")
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "x.yaml").write_text("c: 1\n")
        assert await recorder.none_within(0.3)

    run_watching([tmp_path], body, safety_interval=SLOW_POLL)


def test_configmap_symlink_swap_reloads(tmp_path):
    """Kubernetes updates a ConfigMap volume by writing a new ..<timestamp> folder and
    renaming a new ..data symlink over the old one; the files are symlinks through ..data."""
    mount = tmp_path / "mount"
    mount.mkdir()

    def publish(version: int) -> None:
        data = mount / f"..2024_{version}"
        data.mkdir()
        (data / "mesh.yaml").write_text(f"version: {version}\n")
        os.symlink(data.name, mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")

    publish(1)
    os.symlink("..data/mesh.yaml", mount / "mesh.yaml")

    for given in (mount, mount / "mesh.yaml"):  # the mount folder, or its file on its own

        async def body(recorder: Recorder) -> None:
            version = len(list(mount.glob("..2024_*"))) + 1
            publish(version)
            await recorder.next(EVENT_BOUND)
            assert (mount / "mesh.yaml").read_text() == f"version: {version}\n"

        run_watching([given], body, safety_interval=SLOW_POLL)


def test_a_file_given_on_its_own_is_watched_through_its_folder(tmp_path):
    model = tmp_path / "mesh.yaml"
    model.write_text("a: 0\n")
    (tmp_path / "sub").mkdir()

    async def body(recorder: Recorder) -> None:
        (tmp_path / "other.yaml").write_text("not loaded\n")  # beside it, not given
        (tmp_path / "sub" / "deeper.yaml").write_text("not loaded\n")
        assert await recorder.none_within(0.3)
        replace(model, "a: 1\n")
        await recorder.next(EVENT_BOUND)
        model.unlink()
        await recorder.next(EVENT_BOUND)
        model.write_text("a: 2\n")
        await recorder.next(EVENT_BOUND)

    run_watching([model], body, safety_interval=SLOW_POLL)


def test_polling_when_events_are_off(tmp_path):
    model = tmp_path / "mesh.yaml"
    model.write_text("a: 0\n")

    async def body(recorder: Recorder) -> None:
        replace(model, "a: 1\n")
        took = await recorder.next(5)
        assert took >= 0.09, "polling waits for quiet before reloading"
        for i in range(5):  # an edit in steps: one reload
            model.write_text(f"a: 1{i}\n" + "x" * i)
            await asyncio.sleep(0.02)
        await recorder.next(5)
        assert await recorder.none_within(0.4)

    run_watching([tmp_path], body, events=False)


def test_changes_events_miss_are_found_by_the_safety_poll(tmp_path, monkeypatch, caplog):
    """Where events do not arrive (some bind mounts), the safety poll sees the change,
    reloads, and polling takes over after a second miss."""
    import watchfiles

    async def silent(*paths, stop_event, **kwargs):
        await stop_event.wait()
        return
        yield  # an async generator that never reports anything

    monkeypatch.setattr(watchfiles, "awatch", silent)
    model = tmp_path / "mesh.yaml"
    model.write_text("a: 0\n")

    async def body(recorder: Recorder) -> None:
        for i in range(3):
            replace(model, f"a: {i + 1}\n")
            await recorder.next(3)
        assert len(recorder.times) == 3

    with caplog.at_level("WARNING", logger="meshplane.watch"):
        run_watching([tmp_path], body, safety_interval=0.2)
    messages = [record.getMessage() for record in caplog.records]
    assert any("watching them again" in m for m in messages), messages
    assert any("polling them from now on" in m for m in messages), messages


def test_watchfiles_failing_falls_back_to_polling(tmp_path, monkeypatch, caplog):
    import watchfiles

    async def broken(*paths, **kwargs):
        raise OSError(28, "inotify watch limit reached")
        yield

    monkeypatch.setattr(watchfiles, "awatch", broken)
    model = tmp_path / "mesh.yaml"
    model.write_text("a: 0\n")

    async def body(recorder: Recorder) -> None:
        replace(model, "a: 1\n")
        await recorder.next(3)

    with caplog.at_level("WARNING", logger="meshplane.watch"):
        run_watching([tmp_path], body, safety_interval=SLOW_POLL)
    assert any("inotify watch limit reached" in record.getMessage() for record in caplog.records)


def test_state_is_what_a_load_reads(tmp_path):
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "b.txt").write_text("b\n")
    (tmp_path / ".hidden.yaml").write_text("c\n")
    state = model_files_state([str(tmp_path)])
    assert [entry[0] for entry in state] == [str(tmp_path / "a.yaml")]
    assert watch_module.model_files_state([str(tmp_path / "a.yaml")])[0][0] == str(tmp_path / "a.yaml")
