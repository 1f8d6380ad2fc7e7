"""Process management for the real-Envoy harness and the demo.

Rules enforced here (product standards):

* Every process is started in its own session / process group
  (``start_new_session=True``), so ``os.killpg(pid, ...)`` reaches the process
  *and* anything it forked (e.g. ``sh -c 'a & b'``).
* Processes are only ever killed by pid / pgid: SIGTERM, wait, SIGKILL after a
  timeout.  Never by name.
* stdout+stderr go to a log file (never a pipe that can fill up and block the
  child).
* ``ProcessGroup`` is a context manager; ``close()`` stops everything in reverse
  start order, also on exceptions and Ctrl-C.  As a last line of defence, any
  group still open at interpreter exit is closed by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "free_port",
    "wait_until",
    "ProcessGroup",
    "Proc",
    "pgid_members",
    "install_sigterm_handler",
]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is currently free on ``host``.

    Binds port 0 on ``host`` and reads the kernel's choice back.  There is an
    unavoidable (tiny) race between closing the probe socket and the caller
    binding the port; that is accepted.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    message: str = "",
    *,
    fatal: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Exceptions raised by the predicate are treated as "not yet".  On timeout a
    ``TimeoutError`` is raised whose text contains ``message`` and the last
    exception or falsy value seen.  Exceptions of the types in ``fatal``
    propagate immediately (e.g. "the process under test has exited").
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - deliberately "not yet"
            last_exc, last = exc, None
        else:
            if value:
                return value
            last_exc, last = None, value
        if time.monotonic() >= deadline:
            detail = (
                f"last exception: {type(last_exc).__name__}: {last_exc}"
                if last_exc is not None
                else f"last value: {last!r}"
            )
            prefix = message or "condition not met"
            raise TimeoutError(f"{prefix} (after {timeout:.1f}s; {detail})")
        time.sleep(interval)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, pgid) of ``pid`` from /proc, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces/parens: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    return rest[0], int(rest[2])


def pgid_members(pgid: int, *, include_zombies: bool = False) -> list[int]:
    """Pids whose process group is ``pgid`` (Linux /proc); zombies excluded
    unless ``include_zombies``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_stat(int(entry))
        if st is not None and st[1] == pgid and (include_zombies or st[0] not in ("Z", "X")):
            out.append(int(entry))
    return sorted(out)


_subreaper_done = False


def _become_subreaper() -> None:
    """Make this process a child subreaper (Linux prctl), so grandchildren
    orphaned when we kill a process group are re-parented to *us* and can be
    reaped (instead of lingering as zombies under a PID 1 that may not reap,
    as in containers/sandboxes).  Best effort; silently skipped elsewhere."""
    global _subreaper_done
    if _subreaper_done or not sys.platform.startswith("linux"):
        return
    _subreaper_done = True
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # noqa: BLE001
        pass


def _reap(pids: list[int], timeout: float = 1.0) -> None:
    """waitpid() specific (non-Popen) pids that are our children; ignore others."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (or already reaped)
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def _killpg(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    except OSError as exc:  # pragma: no cover
        if exc.errno == errno.ESRCH:
            return False
        raise


class Proc:
    """One started process (the leader of its own process group)."""

    def __init__(self, name: str, argv: list[str], popen: subprocess.Popen, log_path: Path):
        self.name = name
        self.argv = list(argv)
        self.popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session=True -> pgid == sid == pid
        self.log_path = log_path
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "alive" if self.alive() else f"exited({self.popen.returncode})"
        return f"<Proc {self.name} pid={self.pid} {state} log={self.log_path}>"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote to stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (if it still exists)."""
        _killpg(self.pgid, sig)

    def stop(self, timeout: float = 5) -> int | None:
        """SIGTERM the process group, wait up to ``timeout``, then SIGKILL.

        Also makes sure no other member of the group survives the leader
        (e.g. a backgrounded child of a shell).  Idempotent.  Returns the
        leader's exit code.
        """
        with self._lock:
            members_before = pgid_members(self.pgid, include_zombies=True)
            if self.popen.poll() is None:
                _killpg(self.pgid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _killpg(self.pgid, signal.SIGKILL)
                    try:
                        self.popen.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:  # pragma: no cover - D state
                        pass
            # The leader is gone; stragglers of the group (pgid cannot be
            # reused as a pid while the group has members) get TERM, then KILL.
            if pgid_members(self.pgid):
                _killpg(self.pgid, signal.SIGTERM)
                deadline = time.monotonic() + min(timeout, 2.0)
                while pgid_members(self.pgid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if pgid_members(self.pgid):
                    _killpg(self.pgid, signal.SIGKILL)
            # Reap orphaned group members re-parented to us (we are a subreaper).
            stragglers = [p for p in set(members_before) | set(pgid_members(self.pgid, include_zombies=True))
                          if p != self.pid]
            if stragglers:
                _reap(stragglers)
            return self.popen.returncode


_LIVE_GROUPS: "weakref.WeakSet[ProcessGroup]" = weakref.WeakSet()


class ProcessGroup:
    """Starts processes and guarantees they are all stopped on ``close()``.

    Usage::

        with ProcessGroup() as procs:
            app = procs.start("app", [sys.executable, "-m", "..."])
            ...
        # everything is stopped here, also after an exception / Ctrl-C

    ``log_dir``: where ``<name>.log`` files go (default: a fresh temp dir,
    kept after close so logs can be inspected).
    """

    def __init__(self, log_dir: Path | str | None = None, *, stop_timeout: float = 5):
        self._default_log_dir = Path(log_dir) if log_dir is not None else None
        self.stop_timeout = stop_timeout
        self.procs: list[Proc] = []
        self._lock = threading.Lock()
        self._closed = False
        _LIVE_GROUPS.add(self)
        _become_subreaper()

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __iter__(self):
        return iter(list(self.procs))

    @property
    def log_dir(self) -> Path:
        if self._default_log_dir is None:
            self._default_log_dir = Path(tempfile.mkdtemp(prefix="meshplane-logs-"))
        self._default_log_dir.mkdir(parents=True, exist_ok=True)
        return self._default_log_dir

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict | None = None,
        cwd: Path | str | None = None,
        log_dir: Path | None = None,
    ) -> Proc:
        """Start ``argv`` in a new session; output goes to ``<log_dir>/<name>.log``.

        ``env`` replaces the environment entirely if given (pass
        ``{**os.environ, ...}`` to extend it).
        """
        if self._closed:
            raise RuntimeError("ProcessGroup is closed")
        ldir = Path(log_dir) if log_dir is not None else self.log_dir
        ldir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "proc"
        log_path = ldir / f"{safe}.log"
        n = 1
        with self._lock:
            while any(p.log_path == log_path for p in self.procs):
                n += 1
                log_path = ldir / f"{safe}.{n}.log"
            with open(log_path, "ab") as logf:
                popen = subprocess.Popen(
                    [str(a) for a in argv],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    close_fds=True,
                )
            proc = Proc(name, argv, popen, log_path)
            self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop every started process, most recently started first."""
        with self._lock:
            self._closed = True
            procs = list(reversed(self.procs))
        first_exc: BaseException | None = None
        for p in procs:
            try:
                p.stop(timeout=self.stop_timeout)
            except BaseException as exc:  # keep going; make sure all get killed
                if first_exc is None:
                    first_exc = exc
                _killpg(p.pgid, signal.SIGKILL)
        _LIVE_GROUPS.discard(self)
        if first_exc is not None:
            raise first_exc


@atexit.register
def _close_all_groups() -> None:  # pragma: no cover - last line of defence
    for g in list(_LIVE_GROUPS):
        try:
            g.close()
        except BaseException:
            pass


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``with ProcessGroup()`` blocks
    unwind (and kill their children) when the demo itself is terminated."""

    def _handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _handler)

