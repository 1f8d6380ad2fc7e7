"""The installed package is the product: build the wheel, install it into a clean venv and
run the installed ``meshplane`` far from the checkout.

Everything else in the suite runs against the editable checkout, where a module left out of
the wheel (as ``mesh_model.adapters`` once was) or a data file that is not package data goes
unnoticed. Here the wheel is built with ``python -m build`` (what a release does), its file
list is compared with the source tree, and the console script from a fresh venv validates
every one of the project's App Mesh inputs (tests/inputs/appmesh) and renders golden nodes
byte for byte.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.paths import GOLDEN, REPO
from tests.appmesh_inputs import CASES, input_paths, prepared_inputs

PACKAGES = ("mesh_model", "xds_server")


def _run(argv, *, cwd, timeout=600, env=None):
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(map(str, argv))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy of the files git knows (tracked, or new and not ignored): a stale
    # build/ folder or egg-info in the checkout could otherwise slip old modules into the wheel
    source = tmp_path_factory.mktemp("source")
    listed = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)], cwd=out)
    wheels = sorted(out.glob("meshplane-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A clean venv (no access to the checkout or the test venv) with only the wheel and its dependencies."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], cwd=env_dir)
    return env_dir


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return env


def test_wheel_holds_every_module_and_no_test_code(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    source = {str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".j2", ".json", ".yaml")}
    missing = sorted(source - names)
    assert not missing, f"files of the source tree missing from {wheel.name}: {missing}"
    stray = sorted(n for n in names if n.split("/")[0] in ("tests", "harness", "demo", "bench"))
    assert not stray, f"test, demo or benchmark code in the wheel: {stray}"


def test_installed_meshplane_runs_outside_the_checkout(installed, tmp_path):
    meshplane = installed / "bin" / "meshplane"
    python = installed / "bin" / "python"
    where = _run([str(python), "-c", "import mesh_model, xds_server; print(mesh_model.__file__, xds_server.__file__)"],
                 cwd=tmp_path, env=_clean_env()).stdout
    assert str(REPO) not in where and str(installed) in where, where  # the wheel's copy, not the checkout's
    help_text = _run([str(meshplane), "--help"], cwd=tmp_path, env=_clean_env()).stdout
    for command in ("validate", "render", "bootstrap", "serve", "ca"):
        assert command in help_text


def test_installed_meshplane_validates_every_app_mesh_input(installed, tmp_path):
    prepared = prepared_inputs(tmp_path)
    assert sorted(prepared) == sorted(CASES) and len(prepared) == 8, sorted(prepared)
    meshplane = str(installed / "bin" / "meshplane")
    for number in sorted(prepared):
        paths = [str(p) for p in input_paths(prepared, number)]
        result = subprocess.run([meshplane, "validate", *paths], cwd=tmp_path, env=_clean_env(),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (number, result.stderr)


@pytest.mark.parametrize("case,node", [("retail", "front"), ("gateway", "gateway"), ("mtls", "client")])
def test_installed_render_matches_the_golden_files(installed, tmp_path, case, node):
    """The installed compiler gives byte-identical output to the checked-in golden files."""
    node_kind = "virtualGateway" if case == "gateway" else "virtualNode"
    mesh = {"retail": "retail", "gateway": None, "mtls": None}[case]
    expected = GOLDEN / case / "expected" / f"{node}--transparent.yaml"
    assert expected.exists(), expected
    if mesh is None:
        import yaml
        mesh = next(d["name"] for f in sorted((GOLDEN / case / "model").glob("*.yaml"))
                    for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") == "Mesh")
    result = _run([str(installed / "bin" / "meshplane"), "render", str(GOLDEN / case / "model"),
                   "--node", f"mesh/{mesh}/{node_kind}/{node}", "--resources"], cwd=REPO, env=_clean_env())
    assert result.stdout == expected.read_text()
