"""SigV4 verification (xds_server/api/sigv4.py) against requests really signed by botocore and
by the AWS CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from xds_server.api.sigv4 import (
    Caller, CredentialsError, SignatureError, Verifier, load_credentials, parse_credentials,
)

KEY, SECRET, ACCOUNT = "AKIAMESHPLANETEST001", "s3cr3t/KEY+with=odd", "111122223333"
CREDENTIALS = f"""
{KEY}:
  secretAccessKey: "{SECRET}"
  accountId: "{ACCOUNT}"
  meshes:
    read: ["*"]
    write: ["shop", "team-*"]
AKIAREADONLY00000002:
  secretAccessKey: other
  accountId: "444455556666"
  meshes: {{read: [shop]}}
"""


@pytest.fixture
def verifier():
    return Verifier(parse_credentials(CREDENTIALS), regions="us-west-2")


def signed(method="GET", url="http://127.0.0.1:8080/v20190125/meshes", body=b"", headers=None, *,
           key=KEY, secret=SECRET, region="us-west-2", service="appmesh", when=None):
    """A request signed by botocore -> (method, path, query, headers, body)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    auth = SigV4Auth(Credentials(key, secret), service, region)
    if when is not None:  # sign at another time
        import botocore.auth as ba
        import datetime as dt
        real = ba.datetime.datetime

        class Fixed(real):
            @classmethod
            def utcnow(cls):
                return real.fromtimestamp(when, dt.timezone.utc).replace(tzinfo=None)

            @classmethod
            def now(cls, tz=None):
                return real.fromtimestamp(when, tz or dt.timezone.utc)

        ba.datetime.datetime = Fixed
        try:
            auth.add_auth(request)
        finally:
            ba.datetime.datetime = real
    else:
        auth.add_auth(request)
    parts = urlsplit(request.url)
    hdrs = dict(request.headers.items())
    hdrs["Host"] = parts.netloc
    return method, parts.path, parts.query, hdrs, body if isinstance(body, bytes) else body.encode()


def error_of(verifier, *request) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        verifier.verify(*request)
    assert info.value.status == 403
    return info.value


def test_botocore_signed_requests_verify(verifier):
    caller = verifier.verify(*signed())
    assert caller == Caller(ACCOUNT, KEY, ("*",), ("shop", "team-*"), "us-west-2")
    assert caller.can_read("anything") and caller.can_write("shop") and caller.can_write("team-a")
    assert not caller.can_write("other")
    body = json.dumps({"meshName": "shop", "spec": {}, "clientToken": "x"}).encode()
    assert verifier.verify(*signed("PUT", "http://h:1/v20190125/meshes", body, {"Content-Type": "application/json"}))
    # query strings (pagination): sorted, re-encoded
    assert verifier.verify(*signed("GET", "http://h/v20190125/meshes/shop/virtualNodes?nextToken=a%2Bb%3D%2F&limit=5"))
    # percent-encoded path segments (signed double-encoded, as every non-S3 client does)
    assert verifier.verify(*signed("DELETE", "http://h/v20190125/meshes/my%20mesh/virtualNodes/n%3A1"))
    ro = verifier.verify(*signed(key="AKIAREADONLY00000002", secret="other"))
    assert ro.account_id == "444455556666" and ro.can_read("shop") and not ro.can_write("shop")
    assert not ro.can_read("cart")


def test_content_sha256_header_is_checked(verifier):
    import hashlib
    body = b'{"spec": {}}'
    req = signed("PUT", "http://h/v20190125/meshes/shop", body, {"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    assert verifier.verify(*req)
    bad = signed("PUT", "http://h/v20190125/meshes/shop", body, {"X-Amz-Content-SHA256": hashlib.sha256(b"x").hexdigest()})
    assert "x-amz-content-sha256" in error_of(verifier, *bad).message


def _with(request, **changes):
    method, path, query, headers, body = request
    values = dict(method=method, path=path, query=query, headers=dict(headers), body=body)
    values.update(changes)
    return values["method"], values["path"], values["query"], values["headers"], values["body"]


@pytest.mark.parametrize("tamper", ["body", "header", "path", "query", "method", "date", "signature", "host"])
def test_tampered_requests_fail(verifier, tamper):
    req = signed("PUT", "http://h:9/v20190125/meshes/shop?x=1", b'{"spec":{}}',
                 {"Content-Type": "application/json"})
    headers = dict(req[3])
    if tamper == "body":
        bad = _with(req, body=b'{"spec":{"x":1}}')
    elif tamper == "header":
        headers["Content-Type"] = "text/plain"
        bad = _with(req, headers=headers)
    elif tamper == "path":
        bad = _with(req, path="/v20190125/meshes/shoq")
    elif tamper == "query":
        bad = _with(req, query="x=2")
    elif tamper == "method":
        bad = _with(req, method="DELETE")
    elif tamper == "date":
        stamp = headers["X-Amz-Date"]
        headers["X-Amz-Date"] = stamp[:-3] + ("00Z" if stamp[-3:] != "00Z" else "01Z")
        bad = _with(req, headers=headers)
    elif tamper == "signature":
        headers["Authorization"] = headers["Authorization"][:-4] + "0000"
        bad = _with(req, headers=headers)
    else:
        headers["Host"] = "evil:9"
        bad = _with(req, headers=headers)
    err = error_of(verifier, *bad)
    assert err.error_type == "InvalidSignatureException"
    assert err.message.startswith("The request signature we calculated does not match")
    assert "mismatch" in err.detail


def test_wrong_secret_unknown_key(verifier):
    err = error_of(verifier, *signed(secret="wrong"))
    assert err.error_type == "InvalidSignatureException"
    err = error_of(verifier, *signed(key="AKIANOBODY0000000000"))
    assert err.error_type == "UnrecognizedClientException"
    assert err.message == "The security token included in the request is invalid."
    assert "AKIANOBODY0000000000" in err.detail


def test_unsigned_and_malformed(verifier):
    method, path, query, headers, body = signed()
    headers.pop("Authorization")
    err = error_of(verifier, method, path, query, headers, body)
    assert (err.error_type, err.message) == ("MissingAuthenticationTokenException", "Missing Authentication Token")
    err = error_of(verifier, method, path, query, {**headers, "Authorization": "Basic dXNlcjpwYXNz"}, body)
    assert err.error_type == "IncompleteSignatureException" and "AWS4-HMAC-SHA256" in err.message
    err = error_of(verifier, method, path, query, {**headers, "Authorization": "AWS4-HMAC-SHA256 Credential=a/b"}, body)
    assert err.error_type == "IncompleteSignatureException" and "'SignedHeaders' parameter" in err.message


def test_expired_and_future_dates(verifier):
    err = error_of(verifier, *signed(when=time.time() - 16 * 60))
    assert err.error_type == "InvalidSignatureException" and err.message.startswith("Signature expired:")
    err = error_of(verifier, *signed(when=time.time() + 16 * 60))
    assert err.message.startswith("Signature not yet current:")
    assert verifier.verify(*signed(when=time.time() - 14 * 60))


def test_wrong_region_or_service(verifier):
    err = error_of(verifier, *signed(region="eu-west-1"))
    assert err.error_type == "InvalidSignatureException" and "region, not 'eu-west-1'" in err.message
    err = error_of(verifier, *signed(service="ec2"))
    assert "correct service: 'appmesh'" in err.message
    anywhere = Verifier(parse_credentials(CREDENTIALS))
    assert anywhere.verify(*signed(region="eu-west-1")).region == "eu-west-1"


def test_host_must_be_signed(verifier):
    method, path, query, headers, body = signed()
    headers["Authorization"] = headers["Authorization"].replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date")
    err = error_of(verifier, method, path, query, headers, body)
    assert err.error_type == "IncompleteSignatureException" and "'Host'" in err.message


def test_unnormalized_path_refused(verifier):
    req = signed("GET", "http://h/v20190125/meshes/a/../b")  # botocore signs /v20190125/meshes/b
    err = error_of(verifier, *_with(req, path="/v20190125/meshes/a/../b"))
    assert "not normalized" in err.detail


def test_http_message_headers(verifier):
    """Headers as the stdlib HTTP server hands them over (email.message.Message)."""
    from email.message import Message
    method, path, query, headers, body = signed()
    msg = Message()
    for k, v in headers.items():
        msg[k] = v
    assert verifier.verify(method, path, query, msg, body)


# ---------------------------------------------------------------- credentials file
def test_credentials_file_errors(tmp_path):
    f = tmp_path / "creds.yaml"
    with pytest.raises(CredentialsError, match=r"creds.yaml: cannot read"):
        load_credentials(f)
    cases = {
        "[1, 2]": "expected a mapping of access key id",
        "": "no access keys",
        "K1: {accountId: '111122223333'}": "K1.secretAccessKey: required",
        "K1: {secretAccessKey: s, accountId: '12'}": "K1.accountId: required, 12 digits",
        "K1: {secretAccessKey: s, accountId: '111122223333', mesh: {}}": "unknown field(s) mesh",
        "K1: {secretAccessKey: s, accountId: '111122223333', meshes: {read: [1]}}": "K1.meshes.read: expected a list",
        "K1: {secretAccessKey: s, accountId: '111122223333', meshes: {admin: []}}": "K1.meshes: unknown field(s) admin",
        "K1: {secretAccessKey: s, accountId: '111122223333'}\nK1: {secretAccessKey: t, accountId: '111122223333'}":
            "'K1' appears twice",
        "'a/b': {secretAccessKey: s, accountId: '111122223333'}": "access key id 'a/b' is invalid",
        "K1: [": "not valid YAML",
    }
    for text, expected in cases.items():
        f.write_text(text)
        with pytest.raises(CredentialsError) as info:
            load_credentials(f)
        assert str(f) in str(info.value) and expected in str(info.value), (text, str(info.value))
    f.write_text("K1: {secretAccessKey: s, accountId: 111122223333, meshes: {write: shop}}")
    cred = load_credentials(f)["K1"]
    assert cred.account_id == "111122223333" and cred.write == ("shop",) and cred.read == ()
    assert "secret_access_key" not in repr(cred)  # never logged


# ---------------------------------------------------------------- the real AWS CLI
class _Recorder(BaseHTTPRequestHandler):
    verifier: Verifier
    seen: list

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        record = {"method": self.command, "path": path, "query": query, "headers": self.headers.items(), "body": body}
        try:
            caller = self.verifier.verify(self.command, path, query, self.headers, body)
        except SignatureError as exc:
            record["error"] = (exc.error_type, exc.detail)
            payload, status = json.dumps({"message": exc.message}).encode(), exc.status
            extra = {"x-amzn-ErrorType": exc.error_type}
        else:
            record["caller"] = caller
            payload, status, extra = json.dumps({"meshes": []}).encode(), 200, {}
        self.seen.append(record)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = _handle

    def log_message(self, *args):
        pass


def _aws_cli(port: int, home: Path, secret: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_CONFIG_FILE": str(home / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": "",
    }
    aws = Path(sys.executable).parent / "aws"
    return subprocess.run(
        [str(aws), "appmesh", "list-meshes", "--endpoint-url", f"http://127.0.0.1:{port}", "--debug", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_aws_cli_signed_request_is_accepted(tmp_path):
    _Recorder.verifier = Verifier(parse_credentials(CREDENTIALS), regions="us-west-2")
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        ok = _aws_cli(port, tmp_path, SECRET, "--limit", "5")
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert json.loads(ok.stdout) == {"meshes": []}
        first = _Recorder.seen[-1]
        assert "caller" in first, first
        assert first["query"] == "limit=5" and first["caller"].account_id == ACCOUNT
        assert "AWS4-HMAC-SHA256" in ok.stderr  # --debug shows the signing
        bad = _aws_cli(port, tmp_path, "not-the-secret")
        assert bad.returncode != 0
        assert "InvalidSignatureException" in bad.stderr
        assert _Recorder.seen[-1]["error"][0] == "InvalidSignatureException"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
