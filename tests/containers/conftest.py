"""Fixtures of the container stage: one labelled run per session, meshplane's image built once.

Everything a session creates (containers, networks, the image) carries the run's labels and is
removed by the run label at the end -- also when the session is interrupted; what a killed
session left behind is swept when the next one starts (demo.containers.Run.sweep_stale).
The base and dependency images are caches: built once per recipe, kept.
Missing tools (podman, mmdebstrap, podman-compose) are an error, never a skip:
`make test` installs them (scripts/ensure-container-deps.sh).
"""

from __future__ import annotations

import shutil
import time

import pytest

from demo.containers import ContainerError, Run, build_image, ensure_base_image, leftovers

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def container_run():
    run = Run(project="meshplane-test")
    try:
        run.sweep_stale()
    except ContainerError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield run
    removed = run.cleanup()
    left = {kind: names for kind, names in leftovers(run.filter).items() if names}
    assert not left, f"run {run.id} left {left} behind after removing {removed}"


@pytest.fixture(scope="session")
def meshplane_image(container_run: Run) -> str:
    """envoy/Dockerfile built offline from the local base (see demo/containers)."""
    return _timed_image("", "meshplane's image", ensure_base_image, lambda base: build_image(container_run, base))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line(
            "container stage: " + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in TIMINGS.items()))


@pytest.fixture(scope="session")
def postgres_image(container_run: Run) -> str:
    """compose/postgres/Containerfile built offline from Debian + postgresql (mmdebstrap, cached
    by recipe like the base image); for compose/docker-compose.replicas.yaml."""
    from demo.containers import build_postgres_image, ensure_postgres_base_image

    return _timed_image("postgres ", "PostgreSQL's image", ensure_postgres_base_image,
                        lambda base: build_postgres_image(container_run, base))


def _timed_image(prefix: str, what: str, ensure_base, build) -> str:
    """Build an image on its cached base, recording both times in the stage's TIMINGS."""
    started = time.monotonic()
    try:
        base = ensure_base()
        TIMINGS[f"{prefix}base image"] = time.monotonic() - started
        image = build(base)
    except ContainerError as exc:
        pytest.fail(f"building {what} failed: {exc}", pytrace=False)
    TIMINGS[f"{prefix}image build"] = time.monotonic() - started - TIMINGS[f"{prefix}base image"]
    return image


def running_mesh(mesh, workdir, what: str, prefix: str = ""):
    """Yield ``mesh`` up and running; afterwards remove it and ``workdir``. A mesh that does not
    come up fails the test with its logs. Times go to the stage's TIMINGS."""
    started = time.monotonic()
    try:
        mesh.up()
    except ContainerError as exc:
        logs = mesh.logs()
        mesh.remove()
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"the {what} did not come up: {exc}\n{logs}", pytrace=False)
    TIMINGS[f"{prefix}compose up"] = time.monotonic() - started
    try:
        yield mesh
    finally:
        started = time.monotonic()
        mesh.remove()
        TIMINGS[f"{prefix}compose removal"] = time.monotonic() - started
        shutil.rmtree(workdir, ignore_errors=True)
