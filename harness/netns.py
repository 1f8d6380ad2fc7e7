"""Network namespaces for data-path tests: App Mesh's iptables rules + the sidecar entrypoint,
for real (tests/e2e/test_transparent_netns.py explains why namespaces and not 127.x).

A test creates its own namespaces (named with its pid, deleted in its finalizer) joined by
veth pairs on documentation addresses that exist only inside them. The test process never
leaves its namespace: calls "from" a namespace run on a worker thread that entered it with
setns(2) (network namespaces are per thread); every process runs as ``ip netns exec NS ...``
in a ProcessGroup and is killed by pid. The root namespace's iptables are never touched.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.apps import AppProcess
from harness.envoy import EnvoyProcess
from harness.processes import ProcessGroup

REPO = Path(__file__).resolve().parents[1]

IPTABLES_SH = REPO / "envoy" / "iptables.sh"
ENTRYPOINT_SH = REPO / "envoy" / "entrypoint.sh"
ENVOY_UID = 1337

REQUIRED_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "setpriv": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
    "bash": "bash",
}

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace ``name``."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Netns:
    """A network namespace this test created, and a worker thread living inside it."""

    def __init__(self, name: str):
        self.name = name
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None

    def exec_argv(self, *argv) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(self, *argv, env: dict | None = None, check: bool = True, timeout: float = 20) -> str:
        """Run a short command inside the namespace; its output (stdout+stderr)."""
        result = subprocess.run(
            self.exec_argv(*argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(map(str, argv))} exited {result.returncode}:\n{result.stdout}")
        return result.stdout

    def call(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a thread inside the namespace (its sockets are the namespace's)."""
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"netns-{self.name}", initializer=enter_netns, initargs=(self.name,),
            )
        return self._worker.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None


def ip(*argv) -> None:
    subprocess.run(["ip", *argv], check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)


def create_netns(*namespaces: Netns) -> None:
    """Create the namespaces (after removing a leftover of a crashed run with the same name), lo up."""
    for ns in namespaces:
        delete_netns(ns.name)
        ip("netns", "add", ns.name)
        ip("-n", ns.name, "link", "set", "lo", "up")


def veth(a: Netns, a_addresses, b: Netns, b_addresses, *, ifname: str = "eth0") -> None:
    """A veth pair ``ifname`` between two namespaces, with the given addresses (CIDR) on each end, up."""
    ip("-n", a.name, "link", "add", ifname, "type", "veth", "peer", "name", ifname, "netns", b.name)
    for ns, addresses in ((a, a_addresses), (b, b_addresses)):
        for address in addresses:
            ip("-n", ns.name, "addr", "add", address, "dev", ifname)
        ip("-n", ns.name, "link", "set", ifname, "up")


def require_tools(what: str = "the transparent data-path test") -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root (network namespaces, iptables, setpriv); "
                    "run the tests as root", pytrace=False)
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool, path=path) is None})
    if missing:
        pytest.fail(f"{what} needs {', '.join(missing)} (missing tools); "
                    f"run scripts/ensure-test-deps.sh (or: apt-get install -y {' '.join(missing)})", pytrace=False)


# --- processes --------------------------------------------------------------------------

def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    return env


def iptables_env(variables: dict) -> dict:
    """The environment for ``envoy/iptables.sh`` with App Mesh's APPMESH_* ``variables``."""
    return {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin", **variables}


def start_app(group: ProcessGroup, ns: Netns, name: str, host: str, port: int, *, prefix=(), extra=()) -> AppProcess:
    argv = ns.exec_argv(*prefix, sys.executable, "-m", "harness.apps", "--name", name,
                        "--host", host, "--port", port, "--quiet", *extra)
    return AppProcess(name, host, port, group.start(f"app-{name}", argv, env=python_env()))


def start_serve(group: ProcessGroup, ns: Netns, model_dir: Path, xds: tuple[str, int], status: tuple[str, int]):
    """``meshplane serve`` of ``model_dir`` inside ``ns`` (watching the files)."""
    return group.start("meshplane-serve", ns.exec_argv(
        sys.executable, "-m", "xds_server.cli", "serve", model_dir,
        "--xds", "%s:%d" % xds, "--http", "%s:%d" % status), env=python_env())


def envoy_for_uid(envoy: Path, shared: Path) -> Path:
    """Envoy's binary as a path uid 1337 can execute (the venv may sit under a 0700 home)."""
    probe = subprocess.run(["setpriv", f"--reuid={ENVOY_UID}", f"--regid={ENVOY_UID}", "--clear-groups",
                            "test", "-x", str(envoy)], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    if probe.returncode == 0:
        return envoy
    target = shared / "envoy"
    if envoy.stat().st_mode & 0o001:  # others may execute the file, only a directory is in the way
        try:
            os.link(envoy, target)
            return target
        except OSError:
            pass
    shutil.copy2(envoy, target)
    target.chmod(0o755)
    return target


def start_sidecar(group: ProcessGroup, ns: Netns, shared: Path, envoy_binary: Path, *, node_arn: str,
                  xds: tuple[str, int], admin: tuple[str, int], name: str = "envoy-sidecar") -> EnvoyProcess:
    """The sidecar as the image runs it: ``envoy/entrypoint.sh`` writes the bootstrap, then runs
    Envoy as uid 1337. ``shared`` is a world-readable directory (files Envoy reads)."""
    bindir = shared / "bin"
    bindir.mkdir()
    (bindir / "meshplane").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m xds_server.cli "$@"\n')
    (bindir / "meshplane").chmod(0o755)
    (bindir / "envoy").symlink_to(envoy_for_uid(envoy_binary, shared))
    sidecar_env = {
        **python_env(),
        "PATH": f"{bindir}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin",
        "APPMESH_RESOURCE_ARN": node_arn,
        "MESHPLANE_XDS": "%s:%d" % xds,
        "ENVOY_ADMIN_ACCESS_PORT": str(admin[1]),
        "ENVOY_LOG_LEVEL": "info",
        "ENVOY_CONCURRENCY": "1",
        "MESHPLANE_BOOTSTRAP_FILE": str(shared / "envoy.yaml"),
    }
    proc = group.start(name, ns.exec_argv("sh", ENTRYPOINT_SH), env=sidecar_env)
    return EnvoyProcess(proc, admin, shared / "envoy.yaml")


def probe(group: ProcessGroup, ns: Netns, ip: str, port: int, host: str, *, uid: int = 0) -> dict:
    """One raw HTTP/1.1 request from a bash process of ``uid`` inside ``ns`` (bash's /dev/tcp).

    A uid-1337 process can't run this interpreter (it may live under a 0700 home); bash can.
    Returns {"status", "headers", "body"}.
    """
    script = textwrap.dedent("""\
        exec 3<>"/dev/tcp/$1/$2" || exit 3
        printf 'GET /probe HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n' "$3" >&3
        timeout 10 cat <&3
    """)
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid else []
    proc = group.start(f"probe-uid{uid}-{ip}-{port}", ns.exec_argv(*drop, "bash", "-c", script, "probe", ip, port, host))
    try:
        proc.popen.wait(timeout=15)
    finally:
        proc.stop()
    raw = proc.output()
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    if proc.returncode != 0 or not lines or not lines[0].startswith("HTTP/1.1 "):
        raise AssertionError(f"probe uid {uid} -> {ip}:{port} failed ({proc.returncode}):\n{raw}")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return {"status": int(lines[0].split()[1]), "headers": headers, "body": body}
