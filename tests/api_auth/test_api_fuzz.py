"""No input gives a 500 (issue 17, 10): hostile requests to a real ``meshplane serve`` always get
App Mesh's error shape with a 4xx (``x-amzn-ErrorType`` and ``{"message": ...}``).

The regressions first (JSON nested ~1,000 deep, a ``clientToken`` with a lone surrogate or NUL
on SQLite and PostgreSQL, apply documents whose name/mesh/kind is not a string, non-UTF-8
bodies, bad query strings), then seeded random requests: raw bytes and structures to every
App Mesh path and meshplane's own, and boto3 calls of every operation with hostile values."""
from __future__ import annotations

import json
import random

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ON_BOTH_STORES, api, api_store, client  # noqa: F401 - fixtures
from tests.api.specs import node_spec
from harness.traffic import raw_exchange
from xds_server.api.operations import operations

SEED = 17
DEEP = 1000


def send(http: str, method: str, target: str, body: bytes = b"", headers: dict | None = None,
         raw_head: bytes | None = None) -> tuple[int, dict, bytes]:
    head = raw_head
    if head is None:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {http}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items()), "", ""]
        head = "\r\n".join(lines).encode("latin-1", "replace")
    return raw_exchange(http, head + body)  # (0, {}, b""): the server dropped a malformed head, no 500


def assert_app_mesh_4xx(answer, what="", head_only: bool = False) -> None:
    code, headers, body = answer
    if code == 0:
        return
    assert code < 500, (what, code, body[:300])
    if code >= 400:
        assert headers.get("x-amzn-errortype"), (what, code, headers, body[:300])
        if not body and head_only:
            return
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            raise AssertionError(("not App Mesh's error shape", what, code, headers, body[:300])) from None
        assert isinstance(message, str) and message, (what, body[:300])


def nested(depth: int) -> bytes:
    return b'{"spec": ' + b"[" * depth + b"]" * depth + b"}"


# ---------------------------------------------------------------------------- regressions
@ON_BOTH_STORES
def test_regressions(api):
    http = api.http
    api.client().create_mesh(meshName="m")
    api.client().create_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec())
    # JSON nested ~1,000 deep, on an App Mesh path and on apply
    for depth in (100, DEEP, 5000):
        assert_app_mesh_4xx(send(http, "PUT", "/v20190125/meshes", nested(depth)), f"nested {depth}")
        assert_app_mesh_4xx(send(http, "PUT", "/v20190125/meshes/m/virtualNodes", b'{"virtualNodeName": "x", "spec": '
                                 + b'{"listeners": ' + b"[" * depth + b"]" * depth + b"}}"), f"nested spec {depth}")
        assert_app_mesh_4xx(send(http, "POST", "/meshplane/v1/apply", b'{"documents": ' + b"[" * depth + b"]" * depth
                                 + b"}"), f"nested apply {depth}")
    # clientToken with a lone surrogate, a NUL (raw JSON escapes, as any client can send them)
    for token in ("\\ud800", "a\\udfffb", "nul\\u0000token", "\\u0000"):
        body = ('{"meshName": "t1", "clientToken": "%s"}' % token).encode()
        code, headers, out = send(http, "PUT", "/v20190125/meshes", body)
        assert_app_mesh_4xx((code, headers, out), token)
        assert code == 400 and "clientToken" in json.loads(out)["message"]
        body = ('{"spec": {}, "clientToken": "%s"}' % token).encode()
        assert_app_mesh_4xx(send(http, "PUT", "/v20190125/meshes/m", body), token)
    # names with NUL through the path (percent-encoded) and the body
    assert_app_mesh_4xx(send(http, "GET", "/v20190125/meshes/a%00b"), "NUL in a label")
    assert_app_mesh_4xx(send(http, "PUT", "/v20190125/meshes", b'{"meshName": "a\\u0000b"}'), "NUL in a name")
    assert_app_mesh_4xx(send(http, "PUT", "/v20190125/meshes", b'{"meshName": "\\udc80"}'), "surrogate name")
    # apply documents whose kind/name/mesh is not a string
    for doc in ({"kind": ["Mesh"], "name": "x"}, {"kind": {"a": 1}, "name": "x"}, {"kind": "Mesh", "name": 5},
                {"kind": "VirtualNode", "mesh": ["m"], "name": "n", "spec": {}}, {"kind": "Mesh", "name": None},
                {"kind": "Route", "mesh": "m", "virtualRouter": 7, "name": "r", "spec": {}},
                {"kind": "Mesh", "name": "x", "spec": []}, {"kind": "Mesh", "name": "\udc80"}, 5, None, "Mesh"):
        body = json.dumps({"documents": [doc]}).encode()
        code, headers, out = send(http, "POST", "/meshplane/v1/apply", body)
        assert_app_mesh_4xx((code, headers, out), repr(doc))
        assert code == 400, (doc, code, out)
    for body in (b'{"documents": {}}', b'{"documents": [], "expectedRevision": "x"}', b'[]', b'"x"', b"null",
                 b'{"documents": [], "prune": "yes"}'):
        assert_app_mesh_4xx(send(http, "POST", "/meshplane/v1/apply", body), body)
    # non-UTF-8 and non-JSON bodies
    for body in (b"\xff\xfe\x00garbage", b'{"meshName": "\xff"}', b"\x80" * 100, b"{" * 10, b'{"a": 1e999999}'):
        for method, path in (("PUT", "/v20190125/meshes"), ("POST", "/meshplane/v1/apply"),
                             ("PUT", "/v20190125/meshes/m/virtualNodes/n")):
            assert_app_mesh_4xx(send(http, method, path, body), (path, body))
    # bad query strings
    for query in ("limit=abc", "limit=-1", "limit=99999999999999999999999", "nextToken=%ff%fe", "limit=%00",
                  "nextToken=" + "A" * 5000, "&&&==&", "limit=1&limit=2", "meshOwner=%00", "%zz=%zz"):
        assert_app_mesh_4xx(send(http, "GET", f"/v20190125/meshes?{query}"), query)
        assert_app_mesh_4xx(send(http, "GET", f"/v20190125/meshes/m/virtualNodes?{query}"), query)
    assert send(http, "GET", "/healthz")[0] == 200


# ---------------------------------------------------------------------------- random requests
def _hostile_scalar(rng: random.Random):
    return rng.choice([
        "", "x" * rng.randint(1, 3000), "\ud800", "a\x00b", "../..", "%00", "😀" * 50, "\u202e", " ", "*", "-1",
        0, -1, 2 ** 63, 2 ** 70, 1.5, float("1e308"), True, False, None, [], {}, [[[]]], {"a": {"b": {}}},
        rng.randbytes(rng.randint(0, 40)).decode("latin-1"),
    ])


def _hostile(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 4 and roll < 0.2:
        return [_hostile(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 4 and roll < 0.4:
        return {rng.choice(["spec", "meshName", "listeners", "tags", "x", "\ud800", ""]): _hostile(rng, depth + 1)
                for _ in range(rng.randint(0, 4))}
    return _hostile_scalar(rng)


def _fill(template: str, rng: random.Random) -> str:
    import re

    segment = lambda: rng.choice(["m", "n", "x" * 300, "%00", "%ff", "%2F", "a%20b", "..", "%", "%e2%82", "\u00e9"])  # noqa: E731
    return re.sub(r"\{[^}]+\}", lambda _: segment(), template.split("?", 1)[0])


def test_random_raw_requests(api):
    """Random bytes and JSON structures to every API path and method (seeded, bounded)."""
    rng = random.Random(SEED)
    http = api.http
    api.client().create_mesh(meshName="m")
    ops = operations()
    targets = [(op.method, op.uri) for op in ops] + [("GET", "/meshplane/v1/model"), ("POST", "/meshplane/v1/apply"),
                                                     ("PUT", "/meshplane/v1/apply"), ("GET", "/meshplane/v1/nothing")]
    for i in range(400):
        method, uri = rng.choice(targets)
        if rng.random() < 0.1:
            method = rng.choice(["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "X" * 40])
        path = _fill(uri, rng)
        query = rng.choice(["", "?limit=5", "?limit=x", "?nextToken=%ff", "?meshOwner=" + "9" * 30, "?" + "&" * 20,
                            "?tagKeys=a&tagKeys=%00", "?resourceArn=arn:aws:appmesh:x:1:mesh/m%00"])
        kind = rng.random()
        if kind < 0.3:
            body = rng.randbytes(rng.randint(0, 2000))
        elif kind < 0.8:
            doc = _hostile(rng)
            if isinstance(doc, dict) and rng.random() < 0.5 and "documents" not in doc:
                doc = {"documents": [_hostile(rng) for _ in range(rng.randint(0, 3))]} if "apply" in uri else doc
            body = json.dumps(doc, allow_nan=True).encode()
        else:
            body = b"[" * rng.randint(500, 3000)
        headers = rng.choice([{}, {"If-Match": rng.choice(["x", "-1", "9" * 40, "\"3\""])},
                              {"Authorization": "AWS4-HMAC-SHA256 garbage"}, {"X-Amz-Date": "nope"}])
        assert_app_mesh_4xx(send(http, method, path + query, body, headers), (i, method, path, query, body[:80]),
                            head_only=method == "HEAD")
    # malformed heads (no API request at all): closed or a 4xx, never a 500
    for head in (b"GARBAGE\r\n\r\n", b"GET /v20190125/meshes\r\n\r\n", b"GET /v20190125/meshes HTTP/1.1\r\n"
                 b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", b"\xff\xfe /v20190125/meshes HTTP/1.1\r\n\r\n",
                 b"PUT /v20190125/meshes HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n"):
        code, _, body = send(http, "", "", raw_head=head)
        assert code == 0 or 400 <= code < 500, (head, code, body)
    assert send(http, "GET", "/healthz")[0] == 200


def test_boto3_operations_with_hostile_values(api):
    """Every operation through boto3 (client-side validation off), its members hostile values."""
    from botocore.exceptions import BotoCoreError

    rng = random.Random(SEED + 1)
    c = client(api.url, validate=False)
    c.create_mesh(meshName="m")
    model = c.meta.service_model
    for i in range(300):
        name = rng.choice(model.operation_names)
        shape = model.operation_model(name).input_shape
        params = {}
        for member, member_shape in shape.members.items():
            if member in shape.required_members or rng.random() < 0.5:
                if member_shape.serialization.get("location") == "uri" and rng.random() < 0.5:
                    params[member] = rng.choice(["m", "n", "\ud800", "a\x00b", "x" * 500, "..", "%2e%2e"])
                else:
                    params[member] = _hostile(rng)
        method = getattr(c, _snake(name))
        try:
            method(**params)
        except ClientError as err:
            status = err.response["ResponseMetadata"]["HTTPStatusCode"]
            assert status < 500, (i, name, params, err.response)
            assert err.response["Error"]["Code"] and err.response["Error"]["Message"], (name, err.response)
        except (BotoCoreError, TypeError, ValueError, AttributeError, UnicodeError, OverflowError, KeyError):
            pass  # botocore could not send it: not the server's doing
    assert send(api.http, "GET", "/healthz")[0] == 200


def _snake(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("api_store", ["postgresql"], indirect=True)
def test_client_token_on_postgres_through_boto3(api):
    """botocore escapes a lone surrogate and NUL in JSON; PostgreSQL refuses both in text."""
    c = client(api.url, validate=False)
    for token in ("\ud800", "nul\x00token"):
        with pytest.raises(ClientError) as info:
            c.create_mesh(meshName="pg", clientToken=token)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "clientToken" in info.value.response["Error"]["Message"]
    assert c.create_mesh(meshName="pg", clientToken="ok-token")["mesh"]["meshName"] == "pg"


@pytest.fixture
def signed_api(procs, free_port, tmp_path):
    from tests.api.conftest import start_serve

    creds = tmp_path / "credentials.yaml"
    creds.write_text('AKFUZZ:\n  secretAccessKey: fuzz-secret\n  accountId: "111111111111"\n  meshes: {write: ["*"]}\n')
    return start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/m.db", "--api-credentials",
                       str(creds))


def test_signed_requests_with_hostile_values(signed_api):
    """With --api-credentials: correctly signed boto3 calls with hostile values, and raw requests
    with hostile signatures (garbage Authorization, dates, payload hashes)."""
    from botocore.exceptions import BotoCoreError

    rng = random.Random(SEED + 2)
    c = client(signed_api.url, validate=False, key="AKFUZZ", secret="fuzz-secret")
    c.create_mesh(meshName="m")
    model = c.meta.service_model
    for i in range(150):
        name = rng.choice(model.operation_names)
        shape = model.operation_model(name).input_shape
        params = {m: _hostile(rng) for m in shape.members if m in shape.required_members or rng.random() < 0.5}
        try:
            getattr(c, _snake(name))(**params)
        except ClientError as err:
            assert err.response["ResponseMetadata"]["HTTPStatusCode"] < 500, (i, name, params, err.response)
        except (BotoCoreError, TypeError, ValueError, AttributeError, UnicodeError, OverflowError, KeyError):
            pass
    bodies = [b"", b"{}", nested(DEEP), b'{"meshName": "\\ud800"}', rng.randbytes(300)]
    for i in range(150):
        auth = rng.choice([
            "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=AKFUZZ/20200101/us-west-2/appmesh/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00", "AWS4-HMAC-SHA256 Credential=AKFUZZ/" + "/" * 10,
            "AWS4-HMAC-SHA256 Credential=\xff\xfe, SignedHeaders=\x00, Signature=\u00e9", "Bearer x", "x" * 5000,
            "AWS4-HMAC-SHA256 Credential=AKFUZZ/%s/us-west-2/appmesh/aws4_request, SignedHeaders=host;x-amz-date;"
            "x-amz-content-sha256, Signature=%s" % (time_stamp()[:8], "ab" * 32)])
        headers = {"Authorization": auth, "X-Amz-Date": rng.choice([time_stamp(), "nope", "99999999T999999Z", ""]),
                   "X-Amz-Content-SHA256": rng.choice(["UNSIGNED-PAYLOAD", "zz", "a" * 64, "\u00e9"])}
        method, uri = rng.choice([("PUT", "/v20190125/meshes"), ("POST", "/meshplane/v1/apply"),
                                  ("GET", "/v20190125/meshes"), ("GET", "/status"), ("GET", "/metrics")])
        code, out_headers, out = send(signed_api.http, method, uri, rng.choice(bodies), headers)
        assert code in (0, 400, 403, 404, 411, 413), (i, auth, headers, code, out[:200])
        assert_app_mesh_4xx((code, out_headers, out), (i, auth))


def time_stamp() -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def test_sql_stores_keep_odd_client_tokens(tmp_path, postgres):
    """The stores' own guard: a clientToken with a lone surrogate or NUL is one distinct key."""
    from xds_server.store import IdempotencyRecord, open_store

    for url in (f"sqlite:///{tmp_path}/t.db", postgres.new_database()):
        store = open_store(url)
        try:
            for n, token in enumerate(("\ud800", "nul\x00token", "\x00", "plain")):
                assert store.get_idempotency("111111111111|CreateMesh", token) is None
                store.commit([], idempotency=IdempotencyRecord("111111111111|CreateMesh", token, f"d{n}", {"n": n}, 1.0))
                found = store.get_idempotency("111111111111|CreateMesh", token)
                assert found is not None and found.digest == f"d{n}" and found.response == {"n": n}, (url, token)
        finally:
            store.close()
