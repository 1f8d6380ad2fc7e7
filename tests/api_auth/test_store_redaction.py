"""Store URLs never show their secrets (issue 17, 7): every password form libpq takes
(``user:pw@``, ``?password=``, ``&password=``, ``sslpassword``, a percent-encoded parameter
name) is redacted in ``/status``, the start-up log and error messages."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pytest

from tests.api.conftest import start_serve
from tests.paths import REPO as REPO_ROOT
from xds_server.controlplane.store_source import redacted
from xds_server.store.postgres import redact
from xds_server.store.redact import redact_url, scrub

SECRET = "Zq9-s3cr3t-pw"


@pytest.mark.parametrize("url", [
    f"postgresql://app:{SECRET}@db.example:5432/mesh",
    f"postgresql://app@db.example/mesh?password={SECRET}",
    f"postgresql://app@db.example/mesh?sslmode=require&password={SECRET}",
    f"postgresql://app@db.example/mesh?sslmode=require&sslpassword={SECRET}&sslkey=/k.pem",
    f"postgresql://app@db.example/mesh?pass%77ord={SECRET}",
    f"postgresql://app@db.example/mesh?PASSWORD={quote(SECRET + '&x')}",
    f"postgres://app:{quote(SECRET + '@:/')}@h1:5432,h2:5433/mesh?password={SECRET}&password={SECRET}2",
    f"postgresql:///mesh?host=/run/pg&password={SECRET}#frag",
])
def test_every_password_form_is_redacted(url):
    for shown in (redact_url(url), redact(url), redacted(url)):
        assert SECRET not in unquote(shown) and "***" in shown, shown
        assert "mesh" in shown  # the rest stays readable
    assert SECRET not in scrub(f"connection to {url} failed: password={SECRET} rejected", url)


def test_other_urls_unchanged():
    for url in ("postgresql://app@db.example:5432/mesh?sslmode=require&application_name=x", "sqlite:///tmp/m.db"):
        assert redact_url(url) == url


def test_unreachable_store_error_shows_no_password(free_port, tmp_path):
    url = f"postgresql://app@127.0.0.1:{free_port()}/mesh?connect_timeout=1&password={SECRET}"
    proc = subprocess.run([sys.executable, "-m", "xds_server.cli", "serve", "--store", url, "--xds",
                           f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}"],
                          cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert SECRET not in proc.stderr + proc.stdout and "127.0.0.1" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "xds_server.cli", "serve", "--store", f"mysql://u:{SECRET}@h/db",
                           "--xds", f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}"],
                          cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "unsupported store URL" in proc.stderr and SECRET not in proc.stderr


def test_query_password_not_in_status_nor_log(procs, free_port, tmp_path, postgres):
    parts = urlsplit(postgres.new_database())
    password = unquote(parts.password) if parts.password else SECRET  # trust auth ignores a password
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    query = "&".join(filter(None, [parts.query, f"password={quote(password, safe='')}"]))
    url = urlunsplit((parts.scheme, f"{user}@{netloc}" if user else netloc, parts.path, query, ""))
    server = start_serve(procs, free_port, tmp_path, "--store", url)
    with urllib.request.urlopen(f"http://{server.http}/status", timeout=10) as r:
        status = r.read().decode()
    assert password not in status and quote(password, safe="") not in status
    assert json.loads(status)["store"]["url"].endswith("password=***")
    log = (tmp_path / "logs" / "meshplane.log").read_text()
    assert "password=***" in log and password not in log and quote(password, safe="") not in log
