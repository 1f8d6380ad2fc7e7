"""Every one of the 38 App Mesh operations through boto3 against meshplane: answers shaped as
botocore's model says, metadata (ARN, uid, version growth, owners, times), status, tags."""
from __future__ import annotations

import datetime

from tests.api.conftest import ON_BOTH_STORES
from harness.processes import wait_until
from tests.api.specs import (
    build_mesh, gateway_route_spec, gateway_spec, node_spec, route_spec, router_spec, service_by_router,
)

ACCOUNT = "111122223333"
ARN = f"arn:aws:appmesh:us-west-2:{ACCOUNT}:mesh/m"


def check_metadata(md: dict, arn: str, version: int) -> None:
    assert md["arn"] == arn
    assert md["version"] == version
    assert md["meshOwner"] == ACCOUNT and md["resourceOwner"] == ACCOUNT
    assert len(md["uid"]) == 36
    assert isinstance(md["createdAt"], datetime.datetime) and md["lastUpdatedAt"] >= md["createdAt"]


@ON_BOTH_STORES
def test_all_operations_lifecycle(api):
    c = api.client()
    # -- Create* (7)
    mesh = c.create_mesh(meshName="m", spec={"egressFilter": {"type": "DROP_ALL"}}, tags=[{"key": "team", "value": "a"}])["mesh"]
    assert mesh["meshName"] == "m" and mesh["status"] == {"status": "ACTIVE"} and mesh["spec"] == {"egressFilter": {"type": "DROP_ALL"}}
    check_metadata(mesh["metadata"], ARN, 1)
    node = c.create_virtual_node(meshName="m", virtualNodeName="blue", spec=node_spec("blue.local"))["virtualNode"]
    check_metadata(node["metadata"], ARN + "/virtualNode/blue", 1)
    assert node["virtualNodeName"] == "blue" and node["meshName"] == "m" and node["spec"] == node_spec("blue.local")
    c.create_virtual_node(meshName="m", virtualNodeName="green", spec=node_spec("green.local"))
    router = c.create_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec())["virtualRouter"]
    check_metadata(router["metadata"], ARN + "/virtualRouter/r", 1)
    route = c.create_route(meshName="m", virtualRouterName="r", routeName="main", spec=route_spec(("blue", 1)))["route"]
    check_metadata(route["metadata"], ARN + "/virtualRouter/r/route/main", 1)
    assert route["virtualRouterName"] == "r" and route["routeName"] == "main"
    svc = c.create_virtual_service(meshName="m", virtualServiceName="svc.local", spec=service_by_router("r"))["virtualService"]
    check_metadata(svc["metadata"], ARN + "/virtualService/svc.local", 1)
    gw = c.create_virtual_gateway(meshName="m", virtualGatewayName="gw", spec=gateway_spec())["virtualGateway"]
    check_metadata(gw["metadata"], ARN + "/virtualGateway/gw", 1)
    gr = c.create_gateway_route(meshName="m", virtualGatewayName="gw", gatewayRouteName="to-svc",
                                spec=gateway_route_spec("svc.local"))["gatewayRoute"]
    check_metadata(gr["metadata"], ARN + "/virtualGateway/gw/gatewayRoute/to-svc", 1)

    # -- Describe* (7)
    assert c.describe_mesh(meshName="m")["mesh"]["metadata"]["uid"] == mesh["metadata"]["uid"]
    assert c.describe_virtual_node(meshName="m", virtualNodeName="blue")["virtualNode"]["spec"] == node_spec("blue.local")
    assert c.describe_virtual_router(meshName="m", virtualRouterName="r")["virtualRouter"]["status"]["status"] == "ACTIVE"
    assert c.describe_route(meshName="m", virtualRouterName="r", routeName="main")["route"]["spec"] == route_spec(("blue", 1))
    assert c.describe_virtual_service(meshName="m", virtualServiceName="svc.local")["virtualService"]["spec"] == service_by_router("r")
    assert c.describe_virtual_gateway(meshName="m", virtualGatewayName="gw")["virtualGateway"]["spec"] == gateway_spec()
    assert c.describe_gateway_route(meshName="m", virtualGatewayName="gw", gatewayRouteName="to-svc")["gatewayRoute"]["spec"] \
        == gateway_route_spec("svc.local")

    # -- List* (7)
    assert [m["meshName"] for m in c.list_meshes()["meshes"]] == ["m"]
    nodes = c.list_virtual_nodes(meshName="m")["virtualNodes"]
    assert [n["virtualNodeName"] for n in nodes] == ["blue", "green"]
    assert nodes[0]["arn"] == ARN + "/virtualNode/blue" and nodes[0]["version"] == 1 and nodes[0]["meshOwner"] == ACCOUNT
    assert [r["virtualRouterName"] for r in c.list_virtual_routers(meshName="m")["virtualRouters"]] == ["r"]
    routes = c.list_routes(meshName="m", virtualRouterName="r")["routes"]
    assert [(r["routeName"], r["virtualRouterName"]) for r in routes] == [("main", "r")]
    assert [s["virtualServiceName"] for s in c.list_virtual_services(meshName="m")["virtualServices"]] == ["svc.local"]
    assert [g["virtualGatewayName"] for g in c.list_virtual_gateways(meshName="m")["virtualGateways"]] == ["gw"]
    assert [g["gatewayRouteName"] for g in c.list_gateway_routes(meshName="m", virtualGatewayName="gw")["gatewayRoutes"]] == ["to-svc"]

    # -- Update* (7): version grows by one per update, createdAt stays, uid stays
    for version in (2, 3, 4):
        updated = c.update_route(meshName="m", virtualRouterName="r", routeName="main",
                                 spec=route_spec(("blue", version), ("green", 1)))["route"]
        assert updated["metadata"]["version"] == version
        assert updated["metadata"]["createdAt"] == route["metadata"]["createdAt"]
        assert updated["metadata"]["uid"] == route["metadata"]["uid"]
    assert c.describe_route(meshName="m", virtualRouterName="r", routeName="main")["route"]["metadata"]["version"] == 4
    assert c.update_mesh(meshName="m", spec={"egressFilter": {"type": "ALLOW_ALL"}})["mesh"]["metadata"]["version"] == 2
    assert c.update_virtual_node(meshName="m", virtualNodeName="blue", spec=node_spec("blue2.local"))["virtualNode"]["spec"] \
        == node_spec("blue2.local")
    assert c.update_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec())["virtualRouter"]["metadata"]["version"] == 2
    assert c.update_virtual_service(meshName="m", virtualServiceName="svc.local",
                                    spec={"provider": {"virtualNode": {"virtualNodeName": "green"}}})["virtualService"]["metadata"]["version"] == 2
    assert c.update_virtual_gateway(meshName="m", virtualGatewayName="gw", spec=gateway_spec(9090))["virtualGateway"]["spec"] \
        == gateway_spec(9090)
    assert c.update_gateway_route(meshName="m", virtualGatewayName="gw", gatewayRouteName="to-svc",
                                  spec=gateway_route_spec("svc.local", "/x"))["gatewayRoute"]["metadata"]["version"] == 2
    assert c.list_routes(meshName="m", virtualRouterName="r")["routes"][0]["version"] == 4

    # -- TagResource, UntagResource, ListTagsForResource (3); tags do not change the version
    arn = ARN + "/virtualRouter/r/route/main"
    assert c.list_tags_for_resource(resourceArn=ARN)["tags"] == [{"key": "team", "value": "a"}]
    c.tag_resource(resourceArn=arn, tags=[{"key": "b", "value": "2"}, {"key": "a", "value": "1"}])
    c.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "one"}])
    assert c.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "a", "value": "one"}, {"key": "b", "value": "2"}]
    c.untag_resource(resourceArn=arn, tagKeys=["b", "missing"])
    assert c.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "a", "value": "one"}]
    assert c.describe_route(meshName="m", virtualRouterName="r", routeName="main")["route"]["metadata"]["version"] == 4

    # -- Delete* (7): the answer is the resource with status DELETED; then it is gone
    deleted = c.delete_gateway_route(meshName="m", virtualGatewayName="gw", gatewayRouteName="to-svc")["gatewayRoute"]
    assert deleted["status"]["status"] == "DELETED" and deleted["metadata"]["version"] == 2
    assert c.delete_virtual_gateway(meshName="m", virtualGatewayName="gw")["virtualGateway"]["status"]["status"] == "DELETED"
    assert c.delete_virtual_service(meshName="m", virtualServiceName="svc.local")["virtualService"]["status"]["status"] == "DELETED"
    assert c.delete_route(meshName="m", virtualRouterName="r", routeName="main")["route"]["status"]["status"] == "DELETED"
    assert c.delete_virtual_router(meshName="m", virtualRouterName="r")["virtualRouter"]["status"]["status"] == "DELETED"
    for name in ("blue", "green"):
        assert c.delete_virtual_node(meshName="m", virtualNodeName=name)["virtualNode"]["status"]["status"] == "DELETED"
    assert c.delete_mesh(meshName="m")["mesh"]["status"]["status"] == "DELETED"
    assert c.list_meshes()["meshes"] == []


@ON_BOTH_STORES
def test_mesh_owner_parameter(api):
    c = api.client()
    build_mesh(c)
    assert c.describe_virtual_node(meshName="m", virtualNodeName="blue", meshOwner=ACCOUNT)["virtualNode"]["meshName"] == "m"
    assert len(c.list_virtual_nodes(meshName="m", meshOwner=ACCOUNT)["virtualNodes"]) == 2
    try:
        c.describe_virtual_node(meshName="m", virtualNodeName="blue", meshOwner="999999999999")
        raise AssertionError("another mesh owner must not find the node")
    except c.exceptions.NotFoundException:
        pass


def test_store_survives_a_restart_and_status_shows_it(procs, free_port, tmp_path):
    import json
    import urllib.request

    from tests.api.conftest import start_serve

    store = f"sqlite:///{tmp_path}/persist.db"
    first = start_serve(procs, free_port, tmp_path, "--store", store, name="first")
    c = first.client()
    build_mesh(c)
    c.update_route(meshName="m", virtualRouterName="r", routeName="main", spec=route_spec(("blue", 3), ("green", 1)))
    # nine writes so far; the serving model catches up with the store asynchronously (the write
    # wakes the store watch), so wait for /status to report the revision of the last write
    def caught_up():
        model = json.loads(urllib.request.urlopen(first.url + "/status", timeout=10).read())["model"]
        return model if model["revision"] >= 9 else None

    model = wait_until(caught_up, 20, message="/status never reported the ninth store revision")
    assert model["meshes"] == ["m"] and model["store"] == store
    assert first.extra["proc"].stop() == 0  # SIGTERM: a clean stop
    second = start_serve(procs, free_port, tmp_path, "--store", store, name="second")
    route = second.client().describe_route(meshName="m", virtualRouterName="r", routeName="main")["route"]
    assert route["metadata"]["version"] == 2 and route["spec"] == route_spec(("blue", 3), ("green", 1))
