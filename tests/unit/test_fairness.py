"""Short requests first (``xds_server.fairness``): long work waits at ``mesh_model.pacing``'s
yield points while a request is in flight, and always advances."""
from __future__ import annotations

import threading
import time

import pytest

from mesh_model import pacing
from xds_server import fairness
from xds_server.api.locks import KeyedLocks


@pytest.fixture
def installed():
    fairness.install()
    try:
        yield
    finally:
        pacing.install(None)


def _long_loop(stop: threading.Event, steps: list[float]) -> None:
    with fairness.long_work():
        while not stop.is_set():
            for _ in pacing.paced(range(64)):
                pass
            steps.append(time.monotonic())


def _run_long(steps: list[float]):
    stop = threading.Event()
    thread = threading.Thread(target=_long_loop, args=(stop, steps), daemon=True)
    thread.start()
    return stop, thread


def test_long_work_waits_while_a_request_is_in_flight(installed, monkeypatch):
    monkeypatch.setattr(fairness, "MAX_PAUSE", 2.0)  # a slow machine's sleeps do not run it out
    steps: list[float] = []
    stop, thread = _run_long(steps)
    try:
        time.sleep(0.05)
        assert steps, "the long work runs while nothing is in flight"
        with fairness.request():
            time.sleep(0.01)  # the long work reaches a yield point and waits
            during = len(steps)
            time.sleep(0.05)  # well within MAX_PAUSE: it must not have advanced
            assert len(steps) - during <= 1
        time.sleep(0.02)
        assert len(steps) > during + 1, "the long work goes on once the request is answered"
    finally:
        stop.set()
        thread.join(5)


def test_long_work_always_advances_under_a_request_that_never_ends(installed):
    steps: list[float] = []
    stop, thread = _run_long(steps)
    try:
        with fairness.request():
            time.sleep(fairness.MAX_PAUSE * 4)
            first = len(steps)
            time.sleep(fairness.MAX_PAUSE * 4)
            assert len(steps) > first, "a pause runs out after MAX_PAUSE, then the work has its slice"
    finally:
        stop.set()
        thread.join(5)


def test_work_outside_long_work_never_waits(installed):
    with fairness.request():
        started = time.monotonic()
        for _ in pacing.paced(range(10_000)):
            pass
        pacing.pace()
        assert time.monotonic() - started < fairness.MAX_PAUSE  # a request's own work, and plain threads, run on


def test_a_demoted_request_is_long_work_and_stops_counting(installed):
    with fairness.request():
        assert fairness.in_flight() == 1
        fairness.demote()
        assert fairness.in_flight() == 0
    assert fairness.in_flight() == 0


def test_a_request_waiting_for_a_lock_held_by_long_work_does_not_hold_it_back(installed, monkeypatch):
    """The deadlock this prevents: a big mesh's write holds a lock and pauses for a request,
    which waits for that lock."""
    monkeypatch.setattr(fairness, "MAX_PAUSE", 0.5)  # each pause the waiting request caused would cost this
    monkeypatch.setattr(fairness, "FRESH", 30.0)  # ... and it would not go stale meanwhile
    locks = KeyedLocks()
    held, done = threading.Event(), threading.Event()

    def long_writer():
        with fairness.request():
            fairness.demote()
            with locks.hold("shared"):
                held.set()
                for _ in pacing.paced(range(300_000)):
                    pass
        done.set()

    thread = threading.Thread(target=long_writer, daemon=True)
    thread.start()
    assert held.wait(5)
    with fairness.request():
        started = time.monotonic()
        with locks.hold("shared"):
            waited = time.monotonic() - started
    thread.join(5)
    assert done.is_set()
    assert waited < 1.0, f"waited {waited:.3f} s"


def test_keyed_locks_one_per_key_and_forgotten_when_free():
    locks = KeyedLocks()
    inside = threading.Event()
    release = threading.Event()

    def hold_a():
        with locks.hold("a"):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=hold_a, daemon=True)
    thread.start()
    assert inside.wait(5)
    started = time.monotonic()
    with locks.hold("b"):  # another mesh: never waits for "a"
        assert time.monotonic() - started < 0.5
    assert len(locks) == 1
    release.set()
    thread.join(5)
    assert len(locks) == 0


def test_a_request_older_than_fresh_no_longer_holds_long_work_back(installed, monkeypatch):
    """An idle or slow client (its connection accepted, nothing sent) counts as in flight for
    ``FRESH`` at most: after that, long work runs at full speed again (without the limit it
    would work 2 ms in every 52)."""
    monkeypatch.setattr(fairness, "FRESH", 0.05)
    steps: list[float] = []
    stop, thread = _run_long(steps)
    try:
        time.sleep(0.05)
        before = len(steps)
        time.sleep(0.2)
        free = len(steps) - before  # nothing in flight
        with fairness.request():  # the idle client's connection
            time.sleep(0.1)  # FRESH has passed (and at most one MAX_PAUSE was waited)
            before = len(steps)
            time.sleep(0.2)
            stale = len(steps) - before
        assert stale > free / 3, (stale, free)
    finally:
        stop.set()
        thread.join(5)
