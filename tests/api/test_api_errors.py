"""Every App Mesh error class, as App Mesh sends it (``x-amzn-ErrorType``, ``{"message"}``, status),
and a refused write changes nothing."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from mesh_model import ModelError, load_texts
from tests.api.conftest import ON_BOTH_STORES, start_serve
from tests.api.specs import build_mesh, node_spec, route_spec, router_spec, service_by_router


def error_of(call, *args, **kwargs) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def state(c) -> dict:
    """Everything the API shows of mesh m (names, versions, specs)."""
    out = {}
    for n in c.list_virtual_nodes(meshName="m")["virtualNodes"]:
        d = c.describe_virtual_node(meshName="m", virtualNodeName=n["virtualNodeName"])["virtualNode"]
        out[("node", n["virtualNodeName"])] = (d["metadata"]["version"], d["spec"])
    for r in c.list_routes(meshName="m", virtualRouterName="r")["routes"]:
        d = c.describe_route(meshName="m", virtualRouterName="r", routeName=r["routeName"])["route"]
        out[("route", r["routeName"])] = (d["metadata"]["version"], d["spec"])
    out["routers"] = [r["virtualRouterName"] for r in c.list_virtual_routers(meshName="m")["virtualRouters"]]
    out["services"] = [s["virtualServiceName"] for s in c.list_virtual_services(meshName="m")["virtualServices"]]
    return out


@ON_BOTH_STORES
def test_wire_format_of_an_error(api):
    req = urllib.request.Request(api.url + "/v20190125/meshes/nope", method="GET")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 404
    assert info.value.headers["x-amzn-ErrorType"].split(":")[0] == "NotFoundException"
    assert json.loads(info.value.read()) == {"message": "Mesh nope not found"}


@ON_BOTH_STORES
def test_bad_request_lists_every_problem_like_validate(api):
    c = api.client()
    build_mesh(c)
    before = state(c)
    bad = {"httpRoute": {"match": {"prefix": "/"},
                         "action": {"weightedTargets": [{"virtualNode": "nope", "weight": 1},
                                                        {"virtualNode": "blue", "weight": 1000}]}}}
    code, message, status = error_of(c.update_route, meshName="m", virtualRouterName="r", routeName="main", spec=bad)
    assert (code, status) == ("BadRequestException", 400)
    # the very messages `meshplane validate` gives for the same model, field paths included
    doc = {"kind": "Route", "mesh": "m", "virtualRouter": "r", "name": "main", "spec": bad}
    others = [{"kind": "Mesh", "name": "m"}, {"kind": "VirtualRouter", "mesh": "m", "name": "r", "spec": router_spec()},
              {"kind": "VirtualNode", "mesh": "m", "name": "blue", "spec": node_spec("blue.local")}]
    with pytest.raises(ModelError) as expected:
        load_texts([("x.json", json.dumps(others + [doc]))])
    wanted = [": ".join(p for p in (i.resource, i.path, i.message) if p) for i in expected.value.issues]
    assert len(wanted) >= 1
    for w in wanted:
        assert w in message, (w, message)
    assert "spec.httpRoute.action.weightedTargets[1].weight" in message or "weightedTargets[0].virtualNode" in message
    # several problems in one request are all reported
    code, message, _ = error_of(api.client(validate=False).create_virtual_node, meshName="m", virtualNodeName="bad",
                                spec={"listeners": [{"portMapping": {"port": 0, "protocol": "ftp"}}],
                                      "serviceDiscovery": {"dns": {"hostname": "x"}},
                                      "backends": [{"virtualService": {"virtualServiceName": "ghost.local"}}]})
    assert code == "BadRequestException"
    assert "VirtualNode m/bad: spec.listeners[0].portMapping.port" in message and "spec.listeners[0].portMapping.protocol" in message, message
    body = {"virtualNodeName": "bad", "spec": {**node_spec(), "bogus": 1, "listeners": [{"portMapping": {"port": "80"}}]}}
    req = urllib.request.Request(api.url + "/v20190125/meshes/m/virtualNodes", data=json.dumps(body).encode(), method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    message = json.loads(info.value.read())["message"]
    assert "VirtualNode m/bad: spec: unknown field 'bogus'" in message and "portMapping.protocol: required field missing" in message and "spec.listeners[0].portMapping.port" in message, message
    assert state(c) == before and "bad" not in [n["virtualNodeName"] for n in c.list_virtual_nodes(meshName="m")["virtualNodes"]]


@ON_BOTH_STORES
def test_not_found(api):
    c = api.client()
    build_mesh(c)
    assert error_of(c.describe_mesh, meshName="nope")[:1] == ("NotFoundException",)
    code, message, status = error_of(c.describe_route, meshName="m", virtualRouterName="r", routeName="nope")
    assert (code, status, message) == ("NotFoundException", 404, "Route m/r/nope not found")
    assert error_of(c.create_route, meshName="m", virtualRouterName="ghost", routeName="x",
                    spec=route_spec(("blue", 1)))[:2] == ("NotFoundException", "VirtualRouter m/ghost not found")
    assert error_of(c.create_virtual_node, meshName="ghost", virtualNodeName="x", spec=node_spec())[:2] \
        == ("NotFoundException", "Mesh ghost not found")
    assert error_of(c.update_virtual_node, meshName="m", virtualNodeName="ghost", spec=node_spec())[0] == "NotFoundException"
    assert error_of(c.delete_virtual_node, meshName="m", virtualNodeName="ghost")[0] == "NotFoundException"
    assert error_of(c.list_virtual_nodes, meshName="ghost")[0] == "NotFoundException"
    assert error_of(c.list_routes, meshName="m", virtualRouterName="ghost")[0] == "NotFoundException"
    assert error_of(c.list_tags_for_resource, resourceArn="arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/ghost")[0] \
        == "NotFoundException"
    assert error_of(c.list_tags_for_resource, resourceArn="arn:aws:s3:::bucket")[0] == "BadRequestException"


@ON_BOTH_STORES
def test_conflict_exists_already(api):
    c = api.client()
    build_mesh(c)
    code, message, status = error_of(c.create_virtual_node, meshName="m", virtualNodeName="blue", spec=node_spec("other.local"))
    assert (code, status, message) == ("ConflictException", 409, "VirtualNode m/blue already exists")
    assert error_of(c.create_mesh, meshName="m")[0] == "ConflictException"
    assert c.describe_virtual_node(meshName="m", virtualNodeName="blue")["virtualNode"]["spec"] == node_spec("blue.local")


@ON_BOTH_STORES
def test_resource_in_use(api):
    c = api.client()
    build_mesh(c)
    before = state(c)
    code, message, status = error_of(c.delete_virtual_node, meshName="m", virtualNodeName="blue")  # the route targets it
    assert (code, status) == ("ResourceInUseException", 409) and "Route m/r/main" in message, message
    code, message, _ = error_of(c.delete_mesh, meshName="m")  # not empty
    assert code == "ResourceInUseException" and "not empty" in message
    code, message, _ = error_of(c.delete_virtual_router, meshName="m", virtualRouterName="r")  # has a route
    assert code == "ResourceInUseException"
    c.delete_route(meshName="m", virtualRouterName="r", routeName="main")
    code, message, _ = error_of(c.delete_virtual_router, meshName="m", virtualRouterName="r")  # a service uses it
    assert code == "ResourceInUseException" and "VirtualService m/svc.local" in message, message
    code, message, _ = error_of(c.delete_virtual_service, meshName="m", virtualServiceName="svc.local")  # a gateway route uses it
    assert code == "ResourceInUseException" and "GatewayRoute m/gw/to-svc" in message, message
    assert state(c)["routers"] == before["routers"] and state(c)["services"] == before["services"]


def test_limit_exceeded(procs, free_port, tmp_path):
    server = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/limits.db",
                         "--api-max-meshes", "1", "--api-max-resources-per-mesh", "3")
    c = server.client()
    c.create_mesh(meshName="m")
    code, message, status = error_of(c.create_mesh, meshName="m2")
    assert (code, status) == ("LimitExceededException", 400) and "limit is 1" in message
    c.create_virtual_node(meshName="m", virtualNodeName="a", spec=node_spec("a.local"))
    c.create_virtual_node(meshName="m", virtualNodeName="b", spec=node_spec("b.local"))
    assert error_of(c.create_virtual_node, meshName="m", virtualNodeName="c", spec=node_spec("c.local"))[0] == "LimitExceededException"
    assert len(c.list_virtual_nodes(meshName="m")["virtualNodes"]) == 2


@ON_BOTH_STORES
def test_too_many_tags(api):
    c = api.client()
    c.create_mesh(meshName="m")
    arn = c.describe_mesh(meshName="m")["mesh"]["metadata"]["arn"]
    c.tag_resource(resourceArn=arn, tags=[{"key": f"k{i}", "value": "v"} for i in range(40)])
    assert error_of(c.tag_resource, resourceArn=arn, tags=[{"key": f"x{i}", "value": "v"} for i in range(11)])[0] == "TooManyTagsException"
    assert len(c.list_tags_for_resource(resourceArn=arn)["tags"]) == 40


def test_forbidden_by_the_authenticator_hook(inproc_api):
    from xds_server.api import Anonymous, Caller

    class OnlyMeshA(Anonymous):
        def authenticate(self, request):
            return Caller("444455556666", readable=frozenset({"a", "b"}), writable=frozenset({"a"}), name="team-a")

    admin = inproc_api()
    c_admin = admin.client()
    c_admin.create_mesh(meshName="b")
    service = inproc_api(authenticator=OnlyMeshA())
    service.extra["service"].store = admin.extra["store"]  # same store, another caller
    c = service.client()
    c.create_mesh(meshName="a")
    code, message, status = error_of(c.create_virtual_node, meshName="b", virtualNodeName="x", spec=node_spec())
    assert (code, status) == ("ForbiddenException", 403) and "team-a" in message
    assert c.describe_mesh(meshName="b")["mesh"]["meshName"] == "b"  # reading is allowed
    assert sorted(m["meshName"] for m in c.list_meshes()["meshes"]) == ["a", "b"]
    assert c.describe_mesh(meshName="a")["mesh"]["metadata"]["meshOwner"] == "444455556666"


@ON_BOTH_STORES
def test_request_shape_problems(api):
    req = urllib.request.Request(api.url + "/v20190125/meshes", data=b"{not json", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 400 and info.value.headers["x-amzn-ErrorType"].startswith("BadRequestException")
    req = urllib.request.Request(api.url + "/v20190125/meshes", data=json.dumps({"tags": [{"value": 1}]}).encode(), method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    message = json.loads(info.value.read())["message"]
    assert "meshName: missing required parameter" in message and "tags[0].key: missing required field" in message, message
    assert "tags[0].value: expected a string" in message


@ON_BOTH_STORES
def test_service_router_delete_keeps_model_valid(api):
    c = api.client()
    build_mesh(c)
    c.create_virtual_router(meshName="m", virtualRouterName="r2", spec=router_spec())
    c.update_virtual_service(meshName="m", virtualServiceName="svc.local", spec=service_by_router("r2"))
    c.delete_route(meshName="m", virtualRouterName="r", routeName="main")
    c.delete_virtual_router(meshName="m", virtualRouterName="r")  # no longer used
    assert [r["virtualRouterName"] for r in c.list_virtual_routers(meshName="m")["virtualRouters"]] == ["r2"]
