"""The pure core ``ApiService.handle(method, path, query, headers, body)`` without HTTP: routing,
error wire format, If-Match parsing, the operation table from botocore's model, ARNs."""
from __future__ import annotations

import json

import pytest

from xds_server.api import ApiService
from xds_server.api.operations import operations
from xds_server.api.resources import arn, parse_arn
from xds_server.store import ResourceKey, open_store


@pytest.fixture
def service(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/core.db")
    yield ApiService(store, region="eu-west-1")
    store.close()


def call(service, method, path, body=None, query="", headers=None):
    status, out_headers, out = service.handle(method, path, query, headers or {}, json.dumps(body).encode() if body is not None else b"")
    return status, out_headers, json.loads(out) if out else None


def test_operation_table_has_all_38():
    ops = operations()
    assert len(ops) == 38 and len({(o.method, o.uri) for o in ops}) == 38
    assert {o.verb for o in ops} == {"Create", "Describe", "Update", "Delete", "List", "TagResource", "UntagResource",
                                     "ListTagsForResource"}


def test_routing_and_error_wire_format(service):
    status, headers, body = call(service, "GET", "/v20190125/nothing")
    assert status == 404 and headers["x-amzn-ErrorType"].startswith("UnknownOperationException")
    status, _, _ = call(service, "POST", "/v20190125/meshes")
    assert status == 405
    status, headers, body = call(service, "PUT", "/v20190125/meshes", {"meshName": "m"})
    assert status == 200 and body["metadata"]["arn"] == "arn:aws:appmesh:eu-west-1:111122223333:mesh/m"
    status, headers, body = call(service, "PUT", "/v20190125/meshes/m", {"spec": {}}, headers={"If-Match": "one"})
    assert status == 400 and "If-Match" in body["message"]
    status, headers, body = call(service, "GET", "/v20190125/meshes", query="limit=abc")
    assert status == 400 and "limit" in body["message"]
    status, headers, body = call(service, "GET", "/v20190125/meshes", query="limit=0")
    assert status == 400
    status, _, body = call(service, "PUT", "/v20190125/meshes/m", {"spec": {}}, headers={"if-match": '"1"'})
    assert status == 200 and body["metadata"]["version"] == 2


def test_arns_round_trip():
    for key in (ResourceKey("Mesh", "m", "", "m"), ResourceKey("VirtualNode", "m", "", "n"),
                ResourceKey("Route", "m", "r", "x"), ResourceKey("GatewayRoute", "m", "g", "x"),
                ResourceKey("VirtualService", "m", "", "svc.local"), ResourceKey("VirtualGateway", "m", "", "g"),
                ResourceKey("VirtualRouter", "m", "", "r")):
        assert parse_arn(arn(key, "us-west-2", "111122223333")) == key
    assert arn(ResourceKey("Route", "m", "r", "x"), "us-west-2", "1") == "arn:aws:appmesh:us-west-2:1:mesh/m/virtualRouter/r/route/x"


def test_whole_model_endpoints(service):
    call(service, "PUT", "/v20190125/meshes", {"meshName": "m"})
    status, _, body = call(service, "GET", "/meshplane/v1/model")
    assert status == 200 and body["documents"] == [{"kind": "Mesh", "name": "m", "spec": {}}]
    node = {"kind": "VirtualNode", "mesh": "m", "name": "n", "spec": {
        "listeners": [{"portMapping": {"port": 80, "protocol": "http"}}], "serviceDiscovery": {"dns": {"hostname": "n.local"}}}}
    status, _, body = call(service, "POST", "/meshplane/v1/apply", {"documents": [body["documents"][0], node], "dryRun": True})
    assert status == 200 and body["changes"] == [{"action": "create", "resource": "VirtualNode m/n"}]
    status, _, body = call(service, "POST", "/meshplane/v1/apply", {"documents": [node], "expectedRevision": 99})
    assert status == 409
    status, _, body = call(service, "POST", "/meshplane/v1/apply", {"documents": [node], "prune": True})
    assert status == 400 and "VirtualNode m/n" in body["message"]  # pruning the mesh would orphan the node
    status, _, body = call(service, "POST", "/meshplane/v1/apply", {"documents": [{"kind": "Mesh", "name": "m"}, node]})
    assert status == 200 and body["changes"] == [{"action": "create", "resource": "VirtualNode m/n"}]
