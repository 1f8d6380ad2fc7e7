"""`meshplane diff --api URL PATH...`: the model a real `meshplane serve --store sqlite:///...`
holds against local files (what `apply --prune` would do to each node), and the other way round."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.api.conftest import start_serve
from tests.paths import REPO, golden_model

FRONT = "mesh/retail/virtualNode/front"


def meshplane(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xds_server.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture
def served(procs, free_port, tmp_path):
    server = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/meshplane.db")
    applied = meshplane("apply", str(golden_model("retail")), "--api", server.url)
    assert applied.returncode == 0, applied.stderr
    return server


def test_diff_against_the_served_model(served, tmp_path):
    retail = golden_model("retail")
    same = meshplane("diff", "--api", served.url, str(retail), "--summary")
    assert (same.returncode, same.stdout) == (0, "no changes\n"), same.stderr

    edited = tmp_path / "edited"
    shutil.copytree(retail, edited)
    routers = edited / "routers.yaml"
    routers.write_text(routers.read_text().replace("weight: 90}", "weight: 50}", 1).replace("weight: 10}", "weight: 50}", 1))
    forward = meshplane("diff", "--api", served.url, str(edited), "--summary")
    assert forward.returncode == 2, forward.stderr
    lines = forward.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{FRONT}: route catalog-router/"), lines
    assert "catalog-v1 90% -> 50%, catalog-v2 10% -> 50%" in lines[0]

    backward = meshplane("diff", "--api", served.url, str(edited), "--api-side", "new", "--node", FRONT)
    assert backward.returncode == 2, backward.stderr
    assert "catalog-v1 50% -> 90%, catalog-v2 50% -> 10%" in backward.stdout
    assert ".weight: 50 -> 90" in backward.stdout  # the field-level diff, as for two folders


def test_diff_api_errors(procs, free_port, tmp_path):
    unreachable = meshplane("diff", "--api", f"http://127.0.0.1:{free_port()}", str(golden_model("retail")))
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    two_paths_needed = meshplane("diff", str(golden_model("retail")))
    assert two_paths_needed.returncode == 1 and "give OLD and NEW" in two_paths_needed.stderr
