"""``/healthz`` (the process serves), ``/readyz`` (writes can be taken) and ``/status`` (store
state) of ``meshplane serve``; a bad ``--api-credentials`` file stops ``serve`` at start."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

from tests.api.conftest import start_serve
from tests.paths import REPO as REPO_ROOT
from tests.paths import golden_model


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_store_mode_is_ready_and_reports_the_store(api):
    api.client().create_mesh(meshName="m")
    code, body = get(f"http://{api.http}/healthz")
    assert code == 200 and body.startswith("ok\n") and "store sqlite: available" in body
    code, body = get(f"http://{api.http}/readyz")
    assert code == 200 and body.startswith("ready\n")
    status = json.loads(get(f"http://{api.http}/status")[1])
    assert status["store"]["available"] is True and status["store"]["revision"] >= 1 and status["store"]["error"] is None


def test_file_mode_is_healthy_but_not_ready_for_writes(procs, free_port, tmp_path):
    server = start_serve(procs, free_port, tmp_path, str(golden_model("retail")))
    assert get(f"http://{server.http}/healthz") == (200, "ok\n")
    code, body = get(f"http://{server.http}/readyz")
    assert code == 503 and "managed by files" in body
    assert json.loads(get(f"http://{server.http}/status")[1])["store"]["store"] == "files"


def test_bad_credentials_file_stops_serve(tmp_path):
    creds = tmp_path / "creds.yaml"
    creds.write_text("AKID:\n  secretAccessKey: s\n  accountId: '12'\n")
    proc = subprocess.run([sys.executable, "-m", "xds_server.cli", "serve", "--store", f"sqlite:///{tmp_path}/m.db",
                           "--api-credentials", str(creds), "--xds", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                          cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "accountId" in proc.stderr and str(creds) in proc.stderr, proc.stderr
