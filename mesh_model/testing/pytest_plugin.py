"""meshplane's pytest plugin (a ``pytest11`` entry point, active wherever meshplane is installed).

Fixtures:

* ``meshplane_snapshot``: ``meshplane_snapshot.check(MODEL, NODE_ID, [snapshot], placement=...)``
  renders the node (as ``meshplane render --resources``) and compares it with a committed
  snapshot file (default ``__snapshots__/<mesh>--<node>--<mode>.yaml`` next to the test file).
  ``pytest --meshplane-update`` writes the snapshots; a mismatch fails with ``meshplane diff``'s
  output (what changed, in Envoy terms, with a one-line App Mesh summary).
* ``meshplane``: helpers to load a model, ``explain`` a request and run route test case files.

Kept import-light: nothing of meshplane is imported until a fixture is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("meshplane")
    group.addoption("--meshplane-update", action="store_true", default=False,
                    help="meshplane: (re)write snapshot files instead of comparing with them")


class SnapshotFixture:
    def __init__(self, update: bool, base: Path):
        self.update = update
        self.base = base
        self.written: list[Path] = []

    def path_for(self, node_id: str, snapshot=None, placement=None) -> Path:
        from mesh_model.testing.snapshots import snapshot_name

        if snapshot is None:
            return self.base / "__snapshots__" / snapshot_name(node_id, placement)
        path = Path(snapshot)
        return path if path.is_absolute() else self.base / path

    def check(self, model, node_id: str, snapshot=None, *, placement=None) -> Path:
        """Compare ``node_id`` of ``model`` (a MeshModel or model paths) with its snapshot."""
        from mesh_model.testing.snapshots import compare_snapshot

        if not hasattr(model, "meshes"):
            items = [model] if isinstance(model, (str, Path)) else list(model)
            model = [p if Path(p).is_absolute() else self.base / p for p in items]
        path = self.path_for(node_id, snapshot, placement)
        result = compare_snapshot(model, node_id, path, placement=placement, update=self.update)
        if result.status == "written":
            self.written.append(path)
        elif result.status != "match":
            pytest.fail(result.message, pytrace=False)
        return path

    __call__ = check


@pytest.fixture
def meshplane_snapshot(request) -> SnapshotFixture:
    return SnapshotFixture(bool(request.config.getoption("meshplane_update")), Path(request.fspath).parent)


class MeshplaneHelpers:
    """``meshplane.load(paths)``, ``meshplane.explain(model, node, request)``,
    ``meshplane.run_cases(file)``, ``meshplane.assert_cases(file)``."""

    def __init__(self, base: Path):
        self.base = base

    def _path(self, p) -> Path:
        return Path(p) if Path(p).is_absolute() else self.base / p

    def load(self, *paths):
        from mesh_model import load_paths

        return load_paths([self._path(p) for p in paths])

    def explain(self, model, node_id: str, request: Any, placement=None):
        from mesh_model.testing import explain_request

        if not hasattr(model, "meshes"):
            model = self.load(*([model] if isinstance(model, (str, Path)) else model))
        return explain_request(model, node_id, request, placement)

    def run_cases(self, case_file, *paths):
        from mesh_model.testing import run_route_cases

        return run_route_cases(self._path(case_file), [self._path(p) for p in paths])

    def assert_cases(self, case_file, *paths) -> None:
        from mesh_model.testing import assert_route_cases

        __tracebackhide__ = True
        try:
            assert_route_cases(self._path(case_file), [self._path(p) for p in paths])
        except AssertionError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def meshplane(request) -> MeshplaneHelpers:
    return MeshplaneHelpers(Path(request.fspath).parent)
