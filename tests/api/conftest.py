"""Fixtures of the App Mesh API tests: a meshplane API server on a free port, boto3 clients
and the AWS CLI pointed at it.

``api`` runs a real ``meshplane serve --store sqlite:///...`` process (ports from ``free_port``,
stopped by ``procs``); a test marked ``@ON_BOTH_STORES`` runs twice, once with
``--store postgresql://...`` (a fresh database of the session's ``postgres`` fixture). ``inproc_api`` serves the same ``ApiService`` in a thread (fast unit-ish
tests of the core, and custom authenticators/limits).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.paths import REPO as REPO_ROOT

VENV_BIN = Path(sys.executable).parent
REGION = "us-west-2"


STORES = ("sqlite", "postgresql")
ON_BOTH_STORES = pytest.mark.parametrize("api_store", STORES, indirect=True)


def client(url: str, *, validate: bool = True, key: str = "x", secret: str = "y"):
    """A boto3 App Mesh client for ``url``; ``validate=False`` lets botocore send what it would
    refuse itself (so the server's own checks are seen)."""
    return boto3.client(
        "appmesh", endpoint_url=url, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=validate),
    )


def signed_json(url: str, method: str, key: str, secret: str, payload=None, timeout: float = 10) -> tuple[int, dict]:
    """A request to meshplane's own JSON endpoints (``/meshplane/v1/...``), signed by botocore's
    SigV4 signer as AWS clients sign: ``(status, answer)``; an error answer carries its
    ``x-amzn-ErrorType`` as ``code``."""
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps(payload).encode() if payload is not None else b""
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), "appmesh", REGION).add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=body or None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"code": (exc.headers.get("x-amzn-ErrorType") or "").split(":")[0], **json.loads(exc.read())}


@dataclass
class Api:
    url: str
    home: Path
    store_url: str = ""
    xds: str = ""
    http: str = ""
    extra: dict = field(default_factory=dict)

    def client(self, *, validate: bool = True):
        return client(self.url, validate=validate)

    def aws(self, *args: str, check: bool = True, key: str = "x", secret: str = "y") -> subprocess.CompletedProcess:
        """Run ``aws appmesh ARGS --endpoint-url URL --output json`` with a throwaway HOME
        (signed with ``key``/``secret``)."""
        env = {
            "HOME": str(self.home), "PATH": os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.home / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "credentials"),
            "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1",
        }
        proc = subprocess.run(
            [str(VENV_BIN / "aws"), "appmesh", *args, "--endpoint-url", self.url, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"aws appmesh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def aws_json(self, *args: str) -> dict:
        out = self.aws(*args).stdout
        return json.loads(out) if out.strip() else {}


def start_serve(procs, free_port, tmp_path: Path, *args: str, name: str = "meshplane",
                http_bind: str = "127.0.0.1") -> Api:
    """``meshplane serve ARGS --xds ... --http ...``; waits for /healthz. ``http_bind``: the
    address ``--http`` binds (``0.0.0.0`` for the exposure tests; the test still talks to it on
    127.0.0.1)."""
    from harness.processes import wait_until
    import urllib.request

    port = free_port()
    xds, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}"
    proc = procs.start(name, [sys.executable, "-m", "xds_server.cli", "serve", *args, "--xds", xds,
                              "--http", f"{http_bind}:{port}"], cwd=str(REPO_ROOT))

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://{http}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_until(healthy, timeout=30, message=f"{name} did not become healthy")
    home = tmp_path / f"home-{name}"
    home.mkdir(exist_ok=True)
    return Api(url=f"http://{http}", home=home, xds=xds, http=http, extra={"proc": proc})


@pytest.fixture
def api_store(request) -> str:
    """The store kind of ``api``: ``sqlite`` unless parametrized (``ON_BOTH_STORES``)."""
    return getattr(request, "param", "sqlite")


def store_url(request, tmp_path: Path, kind: str) -> str:
    if kind == "postgresql":
        return request.getfixturevalue("postgres").new_database()
    return f"sqlite:///{tmp_path}/meshplane.db"


@pytest.fixture
def api(procs, free_port, tmp_path, api_store, request) -> Api:
    store = store_url(request, tmp_path, api_store)
    server = start_serve(procs, free_port, tmp_path, "--store", store)
    server.store_url = store
    return server


@pytest.fixture
def inproc_api(tmp_path):
    """``make(**service_kwargs) -> Api`` serving an in-process ApiService over a fresh SQLite store."""
    from xds_server.api import ApiService
    from xds_server.store import open_store

    from tests.api.inproc import serve_in_thread

    started = []

    def make(**kwargs) -> Api:
        n = len(started)
        store = open_store(f"sqlite:///{tmp_path}/inproc{n}.db")
        service = ApiService(store, **kwargs)
        server, url = serve_in_thread(service)
        started.append((server, store))
        home = tmp_path / f"home-inproc{n}"
        home.mkdir()
        return Api(url=url, home=home, store_url=store.url, extra={"service": service, "store": store})

    yield make
    for server, store in started:
        server.shutdown()
        server.server_close()
        store.close()
