"""The admin endpoints of ``meshplane serve`` (issue 17, 5): with ``--api-credentials``,
``/status`` and ``/config_dump`` take SigV4-signed requests only and show only the meshes the
key may read (and whose members include its account); ``/metrics`` takes SigV4 or the
``--metrics-token-file`` bearer token; ``/healthz``/``/readyz`` stay open; a non-loopback
``--http`` without credentials is refused unless ``--insecure-http``."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.api.conftest import client, start_serve
from tests.api.specs import node_spec
from tests.paths import REPO as REPO_ROOT

OWNER, PARTNER, STRANGER = "111111111111", "222222222222", "333333333333"
CREDENTIALS = f"""
AKOWNER:
  secretAccessKey: owner-secret
  accountId: "{OWNER}"
  meshes: {{write: ["*"]}}
AKPARTNER:
  secretAccessKey: partner-secret
  accountId: "{PARTNER}"
  meshes: {{write: ["*"]}}
AKSTRANGER:
  secretAccessKey: stranger-secret
  accountId: "{STRANGER}"
  meshes: {{write: ["*"]}}
AKOWNERBANK:
  secretAccessKey: owner-bank-secret
  accountId: "{OWNER}"
  meshes: {{read: ["bank"]}}
"""
KEYS = {"owner": ("AKOWNER", "owner-secret"), "partner": ("AKPARTNER", "partner-secret"),
        "stranger": ("AKSTRANGER", "stranger-secret"), "owner_bank": ("AKOWNERBANK", "owner-bank-secret")}
SHOP, BANK = "mesh/shop/virtualNode/web", "mesh/bank/virtualNode/teller"


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def signed_get(url: str, who: str | None, secret: str | None = None) -> tuple[int, dict, bytes]:
    if who is None:
        return get(url)
    key, real_secret = KEYS[who]
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(key, secret or real_secret), "appmesh", "us-west-2").add_auth(request)
    return get(url, dict(request.headers.items()))


def refused(answer, error_type: str) -> None:
    code, headers, body = answer
    lower = {k.lower(): v for k, v in headers.items()}
    assert code == 403, (code, body)
    assert lower["x-amzn-errortype"].split(":")[0] == error_type, lower
    assert isinstance(json.loads(body)["message"], str)


@pytest.fixture
def signed_server(procs, free_port, tmp_path):
    creds = tmp_path / "credentials.yaml"
    creds.write_text(CREDENTIALS)
    server = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/m.db",
                         "--api-credentials", str(creds))
    owner = client(server.url, key="AKOWNER", secret="owner-secret")
    owner.create_mesh(meshName="shop", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
    owner.create_mesh(meshName="bank")
    owner.create_virtual_node(meshName="shop", virtualNodeName="web", spec=node_spec())
    owner.create_virtual_node(meshName="bank", virtualNodeName="teller", spec=node_spec("t.local"))
    return server


async def _with_streams(xds: str, fn):
    """Run ``fn()`` (blocking) while two ADS streams (a shop node, a bank node) are open."""
    from tests.xds_client import AdsClient, make_node

    cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    async with AdsClient(xds, node=make_node(SHOP)) as shop, AdsClient(xds, node=make_node(BANK)) as bank:
        for c in (shop, bank):
            c.send(cds)
            c.ack(await asyncio.wait_for(c.recv(), 20))
        return await asyncio.to_thread(fn)


def test_status_and_config_dump_need_a_signature_and_show_only_readable_meshes(signed_server):
    base = f"http://{signed_server.http}"
    # probes stay open
    assert get(f"{base}/healthz")[0] == 200 and get(f"{base}/readyz")[0] == 200
    # unsigned, badly signed: App Mesh's 403, nothing shown
    for path in ("/status", f"/config_dump?node={quote(SHOP, safe='')}", "/metrics"):
        refused(get(base + path), "MissingAuthenticationTokenException")
        refused(signed_get(base + path, "owner", secret="wrong"), "InvalidSignatureException")
    assert signed_get(f"{base}/metrics", "stranger")[0] == 200

    def statuses():
        return {who: json.loads(signed_get(f"{base}/status", who)[2]) for who in KEYS}

    seen = asyncio.run(_with_streams(signed_server.xds, statuses))
    assert sorted(seen["owner"]["nodes"]) == sorted([SHOP, BANK])
    assert sorted(seen["owner"]["model"]["meshes"]) == ["bank", "shop"]
    assert sorted(seen["partner"]["nodes"]) == [SHOP] and seen["partner"]["model"]["meshes"] == ["shop"]
    assert seen["stranger"]["nodes"] == {} and seen["stranger"]["model"]["meshes"] == []
    assert sorted(seen["owner_bank"]["nodes"]) == [BANK] and seen["owner_bank"]["model"]["meshes"] == ["bank"]
    for who in ("partner", "stranger", "owner_bank"):
        assert "teller" not in json.dumps(seen[who]) or who == "owner_bank"

    # config_dump: a node of a mesh the key may not read is answered as one that does not exist
    def dump(who, node):
        # signed as AWS signers sign: the query percent-encoded as sent
        code, _, body = signed_get(f"{base}/config_dump?node={quote(node, safe='')}", who)
        return code, body.decode()

    assert dump("owner", SHOP)[0] == 200 and dump("owner", BANK)[0] == 200
    assert dump("partner", SHOP)[0] == 200
    code, body = dump("partner", BANK)
    assert code == 404 and "teller" not in body.replace(BANK, "")
    assert dump("stranger", SHOP)[0] == 404 and dump("owner_bank", SHOP)[0] == 404
    assert dump("owner_bank", BANK)[0] == 200
    code, body = dump("stranger", "")
    assert code == 400 and "web" not in body and "teller" not in body


def test_metrics_bearer_token(procs, free_port, tmp_path):
    token = tmp_path / "metrics.token"
    token.write_text("0123456789abcdef-metrics\n")
    server = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/m.db",
                         "--metrics-token-file", str(token))
    base = f"http://{server.http}"
    refused(get(f"{base}/metrics"), "ForbiddenException")
    refused(get(f"{base}/metrics", {"Authorization": "Bearer wrong-token-wrong-token"}), "ForbiddenException")
    code, _, body = get(f"{base}/metrics", {"Authorization": "Bearer 0123456789abcdef-metrics"})
    assert code == 200 and b"meshplane_xds_streams_opened_total" in body
    # without credentials, on loopback, /status stays open as before
    assert get(f"{base}/status")[0] == 200


def test_non_loopback_http_needs_credentials_or_insecure_http(procs, free_port, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xds_server.cli", "serve", "--store", f"sqlite:///{tmp_path}/m.db",
                           "--xds", f"127.0.0.1:{free_port()}", "--http", f"0.0.0.0:{free_port()}"],
                          cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stderr
    assert "--api-credentials" in proc.stderr and "--insecure-http" in proc.stderr and "0.0.0.0" in proc.stderr

    # the operator says so: it serves (and warns)
    insecure = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/insecure.db", "--insecure-http",
                           name="insecure", http_bind="0.0.0.0")
    assert get(f"{insecure.url}/status")[0] == 200
    # with credentials: it serves, the admin endpoints signed
    creds = tmp_path / "credentials.yaml"
    creds.write_text(CREDENTIALS)
    signed = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/signed.db", "--api-credentials",
                         str(creds), name="signed", http_bind="0.0.0.0")
    refused(get(f"{signed.url}/status"), "MissingAuthenticationTokenException")
