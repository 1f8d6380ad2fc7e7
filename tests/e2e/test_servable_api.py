"""Issue 17 as the attacker did it: boto3 writes through the App Mesh API. Each write that
validated and then froze config delivery (or was NACKed by Envoy) is now a
BadRequestException naming the field; the same route with servable values is accepted."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from xds_server.api import ApiService
from xds_server.store import open_store

from tests.api.conftest import client
from tests.api.inproc import serve_in_thread


@pytest.fixture
def appmesh(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/api.db")
    server, url = serve_in_thread(ApiService(store))
    try:
        c = client(url)
        c.create_mesh(meshName="m")
        c.create_virtual_node(meshName="m", virtualNodeName="b", spec={
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "b.m.local"}}})
        c.create_virtual_router(meshName="m", virtualRouterName="r", spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]})
        c.create_route(meshName="m", virtualRouterName="r", routeName="rt", spec=_route())
        yield c
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def _route(**http) -> dict:
    body = {"match": {"prefix": "/"}, "action": {"weightedTargets": [{"virtualNode": "b", "weight": 1}]}}
    body.update(http)
    return {"httpRoute": body}


ATTACKS = [
    (_route(timeout={"perRequest": {"unit": "s", "value": 10**12}}), "spec.httpRoute.timeout.perRequest.value"),
    (_route(retryPolicy={"maxRetries": 2**40, "perRetryTimeout": {"unit": "ms", "value": 100}, "httpRetryEvents": ["server-error"]}),
     "spec.httpRoute.retryPolicy.maxRetries"),
    (_route(match={"prefix": "/", "headers": [{"name": "x", "match": {"range": {"start": 0, "end": 2**64 - 1}}}]}),
     "spec.httpRoute.match.headers[0].match.range.end"),
    (_route(match={"path": {"regex": "("}}), "spec.httpRoute.match.path.regex"),
    (_route(match={"prefix": "/", "headers": [{"name": "x\r\ny"}]}), "spec.httpRoute.match.headers[0].name"),
    (_route(match={"prefix": "/", "queryParameters": [{"name": ""}]}), "spec.httpRoute.match.queryParameters[0].name"),
]


@pytest.mark.parametrize("spec,path", ATTACKS, ids=[p for _, p in ATTACKS])
def test_unservable_route_update_is_refused(appmesh, spec, path):
    with pytest.raises(ClientError) as err:
        appmesh.update_route(meshName="m", virtualRouterName="r", routeName="rt", spec=spec)
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    assert path in err.value.response["Error"]["Message"], err.value.response["Error"]["Message"]


def test_servable_extremes_are_accepted(appmesh):
    appmesh.update_route(meshName="m", virtualRouterName="r", routeName="rt", spec=_route(
        timeout={"perRequest": {"unit": "s", "value": 9_223_372_035}},
        retryPolicy={"maxRetries": 2**32 - 1, "perRetryTimeout": {"unit": "ms", "value": 100}, "httpRetryEvents": ["server-error"]}))
