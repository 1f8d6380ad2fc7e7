"""A minimal client of meshplane's API for the CLI (``export``, ``apply``): JSON over HTTP(S),
signed with AWS Signature Version 4 when AWS credentials are configured (environment, profile:
botocore's usual chain), so it works against a server with ``--api-credentials`` too.

A signed request declares its body's SHA-256 in a signed ``x-amz-content-sha256`` header: the
server then verifies the signature before it reads the body, which it requires of bodies over
its App Mesh limit (1 MiB; a large ``apply``)."""
from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request


class ApiCallError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(f"{code}: {message}" if code else message)


def call(base_url: str, method: str, path: str, body: dict | None = None, *, region: str = "us-west-2",
         timeout: float = 60.0) -> dict:
    url = base_url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"}
    headers.update(_signature(method, url, data, headers, region))
    req = urllib.request.Request(url, data=data if body is not None else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            message = json.loads(raw).get("message", "")
        except ValueError:
            message = raw.decode("utf-8", "replace").strip()
        code = (err.headers.get("x-amzn-ErrorType") or "").split(":")[0]
        raise ApiCallError(err.code, code, message or f"HTTP {err.code}") from None
    except urllib.error.URLError as err:
        raise ApiCallError(0, "", f"cannot reach {base_url}: {err.reason}") from None


def _signature(method: str, url: str, data: bytes, headers: dict, region: str) -> dict:
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.session import Session

        credentials = Session().get_credentials()
    except Exception:  # no botocore configuration at all: send unsigned
        return {}
    if credentials is None:
        return {}
    request = AWSRequest(method=method, url=url, data=data,
                         headers={**headers, "X-Amz-Content-SHA256": hashlib.sha256(data).hexdigest()})
    SigV4Auth(credentials.get_frozen_credentials(), "appmesh", region).add_auth(request)
    return {k: v for k, v in request.headers.items() if k not in headers}
