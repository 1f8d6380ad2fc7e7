"""Tiny upstream apps for tests and the demo.

Every app answers any path/method with ``200`` and a JSON body::

    {"app": <name>, "method": ..., "path": ..., "host": <Host header>, "headers": {...}}

plus the response header ``x-app: <name>``.

Failure control (to exercise retries / outlier detection):

* in-process: ``app.fail_next(n, status=503)``, ``app.set_failing(503 | None)``,
  ``app.set_delay(seconds)``, ``app.requests`` (thread-safe counter), ``app.reset()``
* over HTTP (subprocess mode, or in-process too):
  ``POST /_control`` with JSON ``{"fail_next": n, "status": 503}``,
  ``{"failing": 503}`` / ``{"failing": null}``, ``{"delay": 0.5}``, ``{"reset": true}``;
  ``GET /_stats`` -> ``{"requests": n, "by_path": {...}}``.
  Control paths are not counted as requests.

Subprocess mode::

    python -m harness.apps --name v1 --host 127.0.0.21 --port 8080

prints ``meshplane-app <name> listening on http://host:port`` once serving.
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness.processes import ProcessGroup, Proc, free_port, wait_until
from harness.traffic import http_request

__all__ = ["AppServer", "start_app", "AppProcess", "start_app_process", "CONTROL_PATH", "STATS_PATH"]

CONTROL_PATH = "/_control"
STATS_PATH = "/_stats"


class _Behaviour:
    """Mutable, thread-safe failure/latency behaviour + request counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.fail_next_n = 0
            self.fail_next_status = 503
            self.failing: int | None = None
            self.delay = 0.0
            self.requests = 0
            self.by_path: collections.Counter = collections.Counter()

    def on_request(self, path: str) -> tuple[int, float]:
        """Count the request; return (status to send, delay)."""
        with self.lock:
            self.requests += 1
            self.by_path[path] += 1
            if self.fail_next_n > 0:
                self.fail_next_n -= 1
                return self.fail_next_status, self.delay
            if self.failing is not None:
                return self.failing, self.delay
            return 200, self.delay

    def apply(self, ctl: dict) -> None:
        with self.lock:
            if ctl.get("reset"):
                self.fail_next_n, self.failing, self.delay = 0, None, 0.0
                self.requests = 0
                self.by_path.clear()
            if "fail_next" in ctl:
                self.fail_next_n = int(ctl["fail_next"])
                self.fail_next_status = int(ctl.get("status", 503))
            if "failing" in ctl:
                self.failing = None if ctl["failing"] is None else int(ctl["failing"])
            if "delay" in ctl:
                self.delay = float(ctl["delay"] or 0.0)

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests": self.requests,
                "by_path": dict(self.by_path),
                "fail_next": self.fail_next_n,
                "failing": self.failing,
                "delay": self.delay,
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive (Envoy pools upstream connections)
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection
    # waits for the peer's delayed ACK (~40 ms) before the body. Real servers set NODELAY too.
    disable_nagle_algorithm = True
    server_version = "meshplane-app"
    sys_version = ""

    # quiet by default; the subprocess mode turns access logging on
    def log_message(self, fmt: str, *args: Any) -> None:
        if getattr(self.server, "access_log", False):
            sys.stderr.write(f"[{self.server.app_name}] {self.address_string()} {fmt % args}\n")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: dict, *, head: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-app", self.server.app_name)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._read_body()
        app: str = self.server.app_name
        beh: _Behaviour = self.server.behaviour
        path_only = self.path.split("?", 1)[0]
        if path_only == CONTROL_PATH and self.command == "POST":
            try:
                ctl = json.loads(body or b"{}")
                if not isinstance(ctl, dict):
                    raise ValueError("control body must be a JSON object")
                beh.apply(ctl)
            except (ValueError, TypeError) as exc:
                self._send(400, {"app": app, "error": str(exc)})
                return
            self._send(200, {"app": app, **beh.snapshot()})
            return
        if path_only == STATS_PATH and self.command == "GET":
            self._send(200, {"app": app, **beh.snapshot()})
            return
        status, delay = beh.on_request(path_only)
        if delay > 0:
            time.sleep(delay)
        payload = {
            "app": app,
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        if status != 200:
            payload["injected_failure"] = status
        call = getattr(self.server, "call", None)
        if call is not None and status == 200:
            status, payload["upstream"] = _call_upstream(call, self.path)
        self._send(status, payload, head=self.command == "HEAD")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def _call_upstream(call: tuple[str, str | None], path: str) -> tuple[int, dict]:
    """A "front" app calls its backend through its sidecar, as a real app would.

    ``call`` is (base URL to connect to, Host header): in the explicit data path the app
    connects to its sidecar's egress address and names the virtual service in Host, which is
    what resolving the service name to the egress address (a hosts entry) amounts to.
    """
    from harness.traffic import http_get

    base, host = call
    try:
        response = http_get(base.rstrip("/") + path, host_header=host, timeout=20)
    except OSError as exc:
        return 502, {"error": f"{type(exc).__name__}: {exc}"}
    return response.status, {"status": response.status, "app": response.headers.get("x-app")}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall on
        # DNS for 127.0.0.x addresses in a sandbox; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


class _AppControls:
    """What the in-process app and the app subprocess share: failure injection and their
    address. Each provides ``host``, ``port``, ``_control(payload)`` (apply a control
    document) and ``stats()``."""

    def _control(self, payload: dict) -> dict:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def stats(self) -> dict:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def fail_next(self, n: int, status: int = 503) -> None:
        self._control({"fail_next": n, "status": status})

    def set_failing(self, status: int | None) -> None:
        self._control({"failing": status})

    def set_delay(self, seconds: float) -> None:
        self._control({"delay": seconds})

    def reset(self) -> None:
        """Clear failure/delay settings and zero the counters."""
        self._control({"reset": True})

    @property
    def requests(self) -> int:
        return int(self.stats()["requests"])

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class AppServer(_AppControls):
    """A threaded HTTP/1.1 app served from a background thread of this process."""

    def __init__(
        self, name: str, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False,
        call: tuple[str, str | None] | None = None,
    ):
        self.name = name
        self.call = call
        self.host = host
        self._requested_port = port
        self.access_log = access_log
        self.behaviour = _Behaviour()
        self._server: _Server | None = None
        self._port: int | None = port or None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "AppServer":
        if self._server is not None:
            return self
        srv = _Server((self.host, self._requested_port), _Handler)
        srv.app_name = self.name
        srv.behaviour = self.behaviour
        srv.access_log = self.access_log
        srv.call = self.call
        self._server = srv
        self._port = srv.server_address[1]
        self._thread = threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"app-{self.name}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addressing ----------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("AppServer not started (port 0 not yet assigned)")
        return self._port

    # -- behaviour (the controls themselves are _AppControls') --------------------
    def _control(self, payload: dict) -> dict:
        self.behaviour.apply(payload)
        return self.behaviour.snapshot()

    def stats(self) -> dict:
        return self.behaviour.snapshot()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._server else "stopped"
        return f"<AppServer {self.name} {where}>"


def start_app(name: str, host: str = "127.0.0.1", port: int = 0, *, call: tuple[str, str | None] | None = None) -> AppServer:
    """Start an in-process app (port 0 = pick a free one) and return it."""
    return AppServer(name, host, port, call=call).start()


class AppProcess(_AppControls):
    """An app running as a subprocess (``python -m harness.apps``),
    controlled over HTTP.  Same control surface as ``AppServer``."""

    def __init__(self, name: str, host: str, port: int, proc: Proc):
        self.name, self.host, self.port, self.proc = name, host, port, proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _control(self, payload: dict) -> dict:
        r = http_request("POST", self.url + CONTROL_PATH, body=payload, timeout=5)
        if r.status != 200:
            raise RuntimeError(f"{self.name}: control {payload} -> {r.status} {r.text}")
        return r.json()

    def stats(self) -> dict:
        return http_request("GET", self.url + STATS_PATH, timeout=5).json()

    def alive(self) -> bool:
        return self.proc.alive()

    def stop(self, timeout: float = 5) -> None:
        self.proc.stop(timeout)

    def wait_ready(self, timeout: float = 10) -> None:
        def up() -> bool:
            if not self.proc.alive():
                raise RuntimeError(
                    f"app {self.name} exited ({self.proc.returncode}):\n{self.proc.tail()}"
                )
            return http_request("GET", self.url + STATS_PATH, timeout=1).status == 200

        wait_until(up, timeout, message=f"app {self.name} at {self.url} not serving",
                   fatal=(RuntimeError,))

    def __repr__(self) -> str:
        return f"<AppProcess {self.name} pid={self.pid} {self.host}:{self.port}>"


def start_app_process(
    group: ProcessGroup,
    name: str,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    python: str | None = None,
    env: dict | None = None,
    log_dir: Path | None = None,
    wait: bool = True,
    extra_args: tuple[str, ...] = (),
) -> AppProcess:
    """Start an app as a subprocess in ``group`` (so it is always killed)."""
    import os

    port = port or free_port(host)
    argv = [python or sys.executable, "-m", "harness.apps",
            "--name", name, "--host", host, "--port", str(port), *extra_args]
    if env is None:
        env = dict(os.environ)
        # make sure the child can import this very package
        pkg_root = str(Path(__file__).resolve().parents[1])
        pp = env.get("PYTHONPATH", "")
        if pkg_root not in pp.split(os.pathsep):
            env["PYTHONPATH"] = pkg_root + (os.pathsep + pp if pp else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = group.start(f"app-{name}", argv, env=env, log_dir=log_dir)
    app = AppProcess(name, host, port, proc)
    if wait:
        app.wait_ready()
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.apps",
                                 description="meshplane demo/test upstream app")
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--quiet", action="store_true", help="no access log")
    ap.add_argument("--call", metavar="URL", help="on each request, call this backend URL (+ the request path) and report its answer")
    ap.add_argument("--call-host", metavar="HOST", help="Host header for --call (the virtual service name)")
    args = ap.parse_args(argv)

    def _term(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    call = (args.call, args.call_host) if args.call else None
    app = AppServer(args.name, args.host, args.port, access_log=not args.quiet, call=call)
    app.start()
    print(f"meshplane-app {args.name} listening on http://{args.host}:{app.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
