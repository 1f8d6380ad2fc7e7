"""podman's process helpers for demo/containers: commands run in a process group of their own
(killed whole on timeout or Ctrl-C), the tools of scripts/ensure-container-deps.sh, polling,
file locks and the cache directory.

podman's settings live in compose/containers.conf (CONTAINERS_CONF): the ulimits that fit this
sandbox's hard limits and the runc runtime; the ulimits are also passed as flags (images.ULIMITS).

(The face ``demo.containers`` re-exports this module's function :func:`podman` under the
module's own name: ``demo.containers.podman`` is the function there, while ``from
demo.containers.podman import ...`` reads this module as usual.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
CONTAINERS_CONF = COMPOSE_DIR / "containers.conf"

LOG: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)


class ContainerError(RuntimeError):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "meshplane"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tools_dir() -> Path:
    return Path(os.environ.get("MESHPLANE_CONTAINER_TOOLS") or cache_dir() / "container-tools")


def tool(name: str) -> str:
    """A tool of scripts/ensure-container-deps.sh's venv (podman-compose, check-jsonschema)."""
    path = tools_dir() / "bin" / name
    if not path.exists():
        raise ContainerError(f"{path} is missing: run `sh scripts/ensure-container-deps.sh` (make test does)")
    return str(path)


def podman_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    env.update(extra or {})
    return env


def run_cmd(args: list[str], *, check: bool = True, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a command in a process group of its own; on timeout or interruption (Ctrl-C) the
    whole group is killed, so that no podman started by podman-compose goes on creating
    containers after the run's cleanup has looked for them."""
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                env=env if env is not None else podman_env(), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise ContainerError(f"{args[0]} not found: run `sh scripts/ensure-container-deps.sh` (make test does)") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ContainerError(f"`{' '.join(args[:6])} ...` did not finish within {timeout:.0f} s") from None
        raise
    result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        out = (stdout + stderr).strip()
        raise ContainerError(f"`{' '.join(args[:6])}{' ...' if len(args) > 6 else ''}` exited {proc.returncode}:\n{out[-4000:]}")
    return result


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cmd(["podman", *args], check=check, timeout=timeout)


def podman_out(*args: str, timeout: float = 120) -> str:
    return podman(*args, timeout=timeout).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the probe's failure is reported at the deadline
            last = exc
        if time.monotonic() > deadline:
            raise ContainerError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


@contextlib.contextmanager
def file_lock(name: str):
    with open(cache_dir() / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
