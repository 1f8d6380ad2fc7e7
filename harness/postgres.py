"""A real PostgreSQL for the store tests: find one, or start a throwaway cluster.

``TestPostgres.open()`` picks, in this order:

1. ``MESHPLANE_TEST_POSTGRES`` (a DSN, URL or ``key=value``, of a server where the user may
   ``CREATE DATABASE``) if set;
2. a server on ``127.0.0.1:5432`` if it answers and a throwaway database can be created on it
   (user ``$PGUSER`` or ``postgres``, password ``$PGPASSWORD`` if set);
3. a throwaway cluster: ``initdb`` in a fresh temp dir and ``postgres`` listening on
   127.0.0.1 on a free port (no Unix socket), run as the ``postgres`` user (``setpriv``) when
   we are root; stopped by pid and deleted at ``close()``.

It never skips: if none of this works, ``PostgresUnavailable`` says why (each attempt's reason).

Every test gets its own database (``new_database()`` -> a ``postgresql://`` URL), dropped at
``close()``. ``stop()`` / ``start()`` (or ``with pg.outage():``) make PostgreSQL go away and
come back mid-test: with our own cluster the server really stops (fast shutdown, SIGINT to
the postmaster's pid) and restarts on the same port and data directory; with an external
server (1, 2) the URLs handed out go through a TCP proxy on 127.0.0.1 that drops every
connection and refuses new ones while "stopped", since we must not stop someone else's server.
"""
from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from harness.processes import ProcessGroup, free_port, wait_until

__all__ = ["PostgresServer", "PostgresUnavailable", "TcpProxy", "TestPostgres", "server_binaries"]

ENV_VAR = "MESHPLANE_TEST_POSTGRES"


class PostgresUnavailable(RuntimeError):
    pass


def _version_key(path: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", path)) or (0,)


def server_binaries() -> Path:
    """The directory holding ``postgres`` and ``initdb`` (newest Debian version first, then PATH)."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if os.access(f"{bindir}/postgres", os.X_OK) and os.access(f"{bindir}/initdb", os.X_OK):
            return Path(bindir)
    postgres, initdb = shutil.which("postgres"), shutil.which("initdb")
    if postgres and initdb:
        return Path(os.path.realpath(postgres)).parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (postgres, initdb) under /usr/lib/postgresql/*/bin or on PATH: "
        "run `make test` as root (scripts/ensure-test-deps.sh installs Debian's postgresql package) "
        f"or set {ENV_VAR} to a server where you may CREATE DATABASE"
    )


def _connect(dsn: str, timeout: float = 3):
    import psycopg

    return psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True)


def _conninfo(dsn: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    return {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}


def url_from(info: dict[str, str]) -> str:
    """A ``postgresql://`` URL from conninfo parts (``open_store`` picks stores by URL scheme)."""
    info = dict(info)
    user, password = info.pop("user", ""), info.pop("password", "")
    host, port, dbname = info.pop("host", "127.0.0.1"), info.pop("port", "5432"), info.pop("dbname", "postgres")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@" if user else ""
    hostpart = f"[{host}]" if ":" in host else host
    query = ("?" + urlencode(sorted(info.items()))) if info else ""
    return f"postgresql://{auth}{hostpart}:{port}/{quote(dbname, safe='')}{query}"


# ---------------------------------------------------------------------------- our own cluster
class PostgresServer:
    """A throwaway cluster in a temp dir, on 127.0.0.1:``port``. ``start``/``stop`` any number
    of times (same port, same data); ``close`` stops it and deletes the directory."""

    def __init__(self, bindir: Path | None = None, *, port: int | None = None):
        self.bindir = bindir or server_binaries()
        self.port = port or free_port()
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no 'postgres' user to run a throwaway PostgreSQL as "
                    "(initdb/postgres refuse root): install Debian's postgresql package (it creates the user) "
                    f"or set {ENV_VAR}"
                ) from None
            self.run_as = "postgres"
        # /tmp, not pytest's tmp_path: that one is 0700 root, the postgres user could not reach it.
        self.base = Path(tempfile.mkdtemp(prefix="meshplane-pg-"))
        self.datadir = self.base / "data"
        self.procs = ProcessGroup(log_dir=self.base / "logs")
        self.proc = None
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.user = "postgres"
        self._initdb()

    def _as_user(self, argv: list[str]) -> list[str]:
        if not self.run_as:
            return argv
        return ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups", "--", *argv]

    def _initdb(self) -> None:
        argv = self._as_user([
            str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.base,
                                env={**os.environ, "LC_ALL": "C"})
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({' '.join(argv)}):\n{result.stdout}\n{result.stderr}")

    @property
    def admin_url(self) -> str:
        return url_from({"user": self.user, "host": "127.0.0.1", "port": str(self.port), "dbname": "postgres"})

    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def start(self, timeout: float = 60) -> None:
        if self.running():
            return
        argv = self._as_user([
            str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300", "-c", "shared_buffers=32MB",
            "-c", "log_min_messages=warning", "-c", "log_connections=off",
        ])
        self.proc = self.procs.start("postgres", argv, cwd=self.base)
        try:
            wait_until(self._answers, timeout, interval=0.1, message=f"PostgreSQL on 127.0.0.1:{self.port}",
                       fatal=(PostgresUnavailable,))
        except TimeoutError as exc:
            raise PostgresUnavailable(f"{exc}\n--- postgres log:\n{self.proc.tail()}") from None

    def _answers(self) -> bool:
        if not self.proc.alive():
            raise PostgresUnavailable(f"postgres exited ({self.proc.returncode}):\n{self.proc.tail()}")
        with _connect(self.admin_url, timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, a checkpoint is written), by pid."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.alive():
            os.kill(proc.pid, signal.SIGINT)
            try:
                proc.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        proc.stop(timeout=5)  # SIGTERM/SIGKILL whatever is left of its process group

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.procs.close()
            shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------------------- a cuttable proxy
class TcpProxy:
    """127.0.0.1:``port`` -> ``upstream``. ``stop()`` closes every connection and the listener
    (new connections are refused); ``start()`` listens again on the same port."""

    def __init__(self, upstream: tuple[str, int], port: int | None = None):
        self.upstream = upstream
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(128)
            self._listener = sock
        self._thread = threading.Thread(target=self._accept, args=(sock,), name="pg-proxy", daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = set(self._conns), set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    close = stop


# ---------------------------------------------------------------------------- what tests use
class TestPostgres:
    """A PostgreSQL to test against; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, admin_dsn: str, *, server: PostgresServer | None = None, source: str = ""):
        self.admin_dsn = admin_dsn
        self.server = server
        self.source = source
        self._databases: list[str] = []
        self._counter = itertools.count(1)
        self.proxy: TcpProxy | None = None
        if server is None:
            info = _conninfo(admin_dsn)
            self.proxy = TcpProxy((info.get("host") or "127.0.0.1", int(info.get("port") or 5432)))
            self.proxy.start()

    # -- finding a server
    @classmethod
    def open(cls) -> "TestPostgres":
        reasons = []
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            try:
                _probe(env)
            except Exception as exc:  # noqa: BLE001
                raise PostgresUnavailable(f"{ENV_VAR}={env!r} is set but unusable: {exc}") from None
            return cls(env, source=f"{ENV_VAR}")
        local = url_from({"user": os.environ.get("PGUSER", "postgres"), "host": "127.0.0.1", "port": "5432",
                          "dbname": "postgres"})
        try:
            _probe(local)
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"127.0.0.1:5432: {type(exc).__name__}: {str(exc).strip()}")
        else:
            return cls(local, source="127.0.0.1:5432")
        try:
            server = PostgresServer()
            try:
                server.start()
            except BaseException:
                server.close()
                raise
        except PostgresUnavailable as exc:
            reasons.append(f"throwaway cluster: {exc}")
            raise PostgresUnavailable("no PostgreSQL for the tests:\n  " + "\n  ".join(reasons)) from None
        return cls(server.admin_url, server=server, source=f"throwaway cluster {server.base} on port {server.port}")

    # -- databases
    def _url_for(self, dbname: str) -> str:
        info = _conninfo(self.admin_dsn)
        info["dbname"] = dbname
        if self.proxy is not None:
            info["host"], info["port"] = "127.0.0.1", str(self.proxy.port)
        return url_from(info)

    def new_database(self, prefix: str = "meshplane_test") -> str:
        """Create an empty database (dropped at ``close()``); its ``postgresql://`` URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with _connect(self.admin_dsn) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        return self._url_for(name)

    # -- outages
    def stop(self) -> None:
        """PostgreSQL goes away: connections are cut and new ones refused."""
        if self.server is not None:
            self.server.stop()
        else:
            self.proxy.stop()

    def start(self) -> None:
        """PostgreSQL comes back (same address, same data)."""
        if self.server is not None:
            self.server.start()
        else:
            self.proxy.start()

    def running(self) -> bool:
        if self.server is not None:
            return self.server.running()
        return self.proxy._listener is not None

    @contextlib.contextmanager
    def outage(self):
        self.stop()
        try:
            yield self
        finally:
            self.start()

    def close(self) -> None:
        try:
            if not self.running():
                self.start()
            if self._databases:
                with _connect(self.admin_dsn) as conn:
                    for name in self._databases:
                        with contextlib.suppress(Exception):
                            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                self._databases.clear()
        finally:
            if self.proxy is not None:
                self.proxy.stop()
            if self.server is not None:
                self.server.close()


def _probe(dsn: str) -> None:
    """Connect and create + drop a database: can the tests use this server?"""
    name = f"meshplane_probe_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    with _connect(dsn, timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute(f'DROP DATABASE "{name}"')
