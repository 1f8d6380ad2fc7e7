"""limit/nextToken pagination, clientToken idempotency, If-Match optimistic concurrency and
concurrent writers (no lost update)."""
from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import ON_BOTH_STORES
from tests.api.specs import node_spec, route_spec, router_spec


def if_match(client, operation: str, version: int):
    """Register an ``If-Match: version`` header on ``operation`` (meshplane's extension); returns the unregister."""
    def add(request, **_):
        request.headers["If-Match"] = str(version)

    event = f"before-sign.app-mesh.{operation}"  # botocore names App Mesh events "app-mesh"
    client.meta.events.register(event, add)
    return lambda: client.meta.events.unregister(event, add)


@ON_BOTH_STORES
def test_pagination(api):
    c = api.client()
    c.create_mesh(meshName="m")
    names = sorted(f"node-{i:02d}" for i in range(23))
    for name in names:
        c.create_virtual_node(meshName="m", virtualNodeName=name, spec=node_spec(f"{name}.local"))
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"meshName": "m", "limit": 5, **({"nextToken": token} if token else {})}
        page = c.list_virtual_nodes(**kwargs)
        assert len(page["virtualNodes"]) <= 5
        seen += [n["virtualNodeName"] for n in page["virtualNodes"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert seen == names and pages == 5
    paginated = [n["virtualNodeName"] for p in c.get_paginator("list_virtual_nodes").paginate(
        meshName="m", PaginationConfig={"PageSize": 4}) for n in p["virtualNodes"]]
    assert paginated == names
    assert "nextToken" not in c.list_virtual_nodes(meshName="m")  # default limit 100 holds all
    with pytest.raises(ClientError) as info:
        c.list_virtual_nodes(meshName="m", nextToken="!!!not-a-token")
    assert info.value.response["Error"]["Code"] == "BadRequestException"
    arn = c.describe_mesh(meshName="m")["mesh"]["metadata"]["arn"]
    c.tag_resource(resourceArn=arn, tags=[{"key": f"k{i}", "value": str(i)} for i in range(7)])
    first = c.list_tags_for_resource(resourceArn=arn, limit=3)
    assert len(first["tags"]) == 3 and first["nextToken"]
    rest = c.list_tags_for_resource(resourceArn=arn, limit=50, nextToken=first["nextToken"])
    assert [t["key"] for t in first["tags"] + rest["tags"]] == [f"k{i}" for i in range(7)]


@ON_BOTH_STORES
def test_client_token_idempotency(api):
    c = api.client()
    first = c.create_mesh(meshName="m", clientToken="token-1")["mesh"]
    again = c.create_mesh(meshName="m", clientToken="token-1")["mesh"]  # same token, same request: same answer
    assert again == first
    assert len(c.list_meshes()["meshes"]) == 1
    with pytest.raises(ClientError) as info:  # same token, different request
        c.create_mesh(meshName="m2", clientToken="token-1")
    assert info.value.response["Error"]["Code"] == "ConflictException"
    assert "token-1" in info.value.response["Error"]["Message"]
    assert [m["meshName"] for m in c.list_meshes()["meshes"]] == ["m"]
    # updates too: a retried update does not bump the version twice
    c.create_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec())
    u1 = c.update_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec("x.local"), clientToken="u")["virtualNode"]
    u2 = c.update_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec("x.local"), clientToken="u")["virtualNode"]
    assert u1 == u2 and u1["metadata"]["version"] == 2
    assert c.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]["metadata"]["version"] == 2
    # without a token every create is its own: the second one is a conflict
    with pytest.raises(ClientError) as info:
        c.create_mesh(meshName="m", clientToken="token-2")
    assert info.value.response["Error"]["Code"] == "ConflictException"


@ON_BOTH_STORES
def test_if_match(api):
    c = api.client()
    c.create_mesh(meshName="m")
    c.create_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec())
    off = if_match(c, "UpdateVirtualNode", 1)
    assert c.update_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec("a.local"))["virtualNode"]["metadata"]["version"] == 2
    with pytest.raises(ClientError) as info:  # still says 1: stale
        c.update_virtual_node(meshName="m", virtualNodeName="n", spec=node_spec("b.local"))
    assert info.value.response["Error"]["Code"] == "ConflictException"
    assert "version 2, not 1" in info.value.response["Error"]["Message"]
    off()
    node = c.describe_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]
    assert node["spec"] == node_spec("a.local") and node["metadata"]["version"] == 2
    off = if_match(c, "DeleteVirtualNode", 1)
    with pytest.raises(ClientError) as info:
        c.delete_virtual_node(meshName="m", virtualNodeName="n")
    assert info.value.response["Error"]["Code"] == "ConflictException"
    off()
    off = if_match(c, "DeleteVirtualNode", 2)
    assert c.delete_virtual_node(meshName="m", virtualNodeName="n")["virtualNode"]["status"]["status"] == "DELETED"
    off()


@ON_BOTH_STORES
def test_concurrent_writers_no_lost_update(api):
    """Many rounds: two clients read the route, both update it with the version they read; exactly
    one wins each round, the other gets ConflictException; the final weight counts every win."""
    race(api.client(), [api.client(), api.client()], rounds=15)


def test_concurrent_writers_on_two_servers_sharing_one_sqlite_file(procs, free_port, tmp_path):
    """The same race with each client on its own ``serve`` process over one SQLite file: the
    store's checks (not a process-local lock) decide, and each server's model follows the other's writes."""
    import json
    import urllib.request

    from tests.api.conftest import start_serve
    from harness.processes import wait_until

    store = f"sqlite:///{tmp_path}/shared.db"
    a = start_serve(procs, free_port, tmp_path, "--store", store, name="a")
    b = start_serve(procs, free_port, tmp_path, "--store", store, name="b")
    race(a.client(), [a.client(), b.client()], rounds=10)
    from xds_server.store import open_store

    with open_store(store) as direct:
        revision = direct.revision()
    for server in (a, b):
        wait_until(lambda: json.loads(urllib.request.urlopen(server.url + "/status", timeout=10).read())["model"]["revision"] == revision,
                   timeout=15, message=f"{server.url} did not reload to store revision {revision}")


def race(setup, clients, rounds: int) -> None:
    setup.create_mesh(meshName="m")
    for n in ("a", "b"):
        setup.create_virtual_node(meshName="m", virtualNodeName=n, spec=node_spec(f"{n}.local"))
    setup.create_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec())
    setup.create_route(meshName="m", virtualRouterName="r", routeName="x", spec=route_spec(("a", 1), ("b", 1)))
    wins = [0, 0]
    for _ in range(rounds):
        reads = [c.describe_route(meshName="m", virtualRouterName="r", routeName="x")["route"] for c in clients]
        barrier = threading.Barrier(2)
        results = [None, None]

        def write(i: int) -> None:
            c, seen = clients[i], reads[i]
            weight = seen["spec"]["httpRoute"]["action"]["weightedTargets"][i]["weight"] + 1  # read-modify-write
            targets = [dict(t) for t in seen["spec"]["httpRoute"]["action"]["weightedTargets"]]
            targets[i]["weight"] = weight
            off = if_match(c, "UpdateRoute", seen["metadata"]["version"])
            barrier.wait()
            try:
                c.update_route(meshName="m", virtualRouterName="r", routeName="x",
                               spec={"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}})
                results[i] = "won"
            except ClientError as exc:
                results[i] = exc.response["Error"]["Code"]
            finally:
                off()

        threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["ConflictException", "won"], results
        wins[results.index("won")] += 1
    route = setup.describe_route(meshName="m", virtualRouterName="r", routeName="x")["route"]
    weights = [t["weight"] for t in route["spec"]["httpRoute"]["action"]["weightedTargets"]]
    assert weights == [1 + wins[0], 1 + wins[1]]  # no update lost
    assert route["metadata"]["version"] == 1 + rounds


@ON_BOTH_STORES
def test_every_list_operation_pages(api):
    from tests.api.specs import gateway_route_spec, gateway_spec, service_by_router

    c = api.client()
    for mesh in ("m", "m2", "m3"):
        c.create_mesh(meshName=mesh)
    for i in range(3):
        c.create_virtual_node(meshName="m", virtualNodeName=f"n{i}", spec=node_spec(f"n{i}.local"))
        c.create_virtual_router(meshName="m", virtualRouterName=f"r{i}", spec=router_spec())
        c.create_virtual_gateway(meshName="m", virtualGatewayName=f"g{i}", spec=gateway_spec())
    for i in range(3):
        c.create_route(meshName="m", virtualRouterName="r0", routeName=f"x{i}", spec=route_spec(("n0", 1), prefix=f"/{i}"))
        c.create_virtual_service(meshName="m", virtualServiceName=f"s{i}.local", spec=service_by_router(f"r{i}"))
    for i in range(3):
        c.create_gateway_route(meshName="m", virtualGatewayName="g0", gatewayRouteName=f"gr{i}",
                               spec=gateway_route_spec(f"s{i}.local", f"/{i}"))
    cases = {
        "list_meshes": ({}, "meshes", "meshName", ["m", "m2", "m3"]),
        "list_virtual_nodes": ({"meshName": "m"}, "virtualNodes", "virtualNodeName", ["n0", "n1", "n2"]),
        "list_virtual_routers": ({"meshName": "m"}, "virtualRouters", "virtualRouterName", ["r0", "r1", "r2"]),
        "list_virtual_gateways": ({"meshName": "m"}, "virtualGateways", "virtualGatewayName", ["g0", "g1", "g2"]),
        "list_virtual_services": ({"meshName": "m"}, "virtualServices", "virtualServiceName", ["s0.local", "s1.local", "s2.local"]),
        "list_routes": ({"meshName": "m", "virtualRouterName": "r0"}, "routes", "routeName", ["x0", "x1", "x2"]),
        "list_gateway_routes": ({"meshName": "m", "virtualGatewayName": "g0"}, "gatewayRoutes", "gatewayRouteName", ["gr0", "gr1", "gr2"]),
    }
    for operation, (kwargs, member, name, expected) in cases.items():
        first = getattr(c, operation)(limit=2, **kwargs)
        assert [i[name] for i in first[member]] == expected[:2] and first["nextToken"], operation
        rest = getattr(c, operation)(limit=2, nextToken=first["nextToken"], **kwargs)
        assert [i[name] for i in rest[member]] == expected[2:] and "nextToken" not in rest, operation
        assert [i[name] for p in c.get_paginator(operation).paginate(**kwargs, PaginationConfig={"PageSize": 1})
                for i in p[member]] == expected, operation
