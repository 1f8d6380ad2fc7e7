"""Creation in any order through the App Mesh API (issue 23), reference by reference, with
App Mesh's answers: a node's backends are not checked (create the node first, its service
later; delete a service a node still lists), the references App Mesh does check answer
``NotFoundException`` (404) when what they name does not exist, and deleting what they name
is ``ResourceInUseException``. (In-process ``ApiService`` over SQLite, through boto3.)"""
from __future__ import annotations

import json

import pytest

from tests.api.specs import gateway_route_spec, gateway_spec, node_spec, route_spec, router_spec, service_by_router
from tests.api.test_api_errors import error_of


def _service_by_node(node: str) -> dict:
    return {"provider": {"virtualNode": {"virtualNodeName": node}}}


@pytest.fixture
def c(inproc_api):
    api = inproc_api()
    client = api.client()
    client.create_mesh(meshName="m")
    client.api = api
    return client


def test_a_node_before_the_service_it_calls_and_the_service_it_provides(c):
    # front calls svc.local (not created yet); blue provides blue.local and calls it too (CDK's case)
    c.create_virtual_node(meshName="m", virtualNodeName="front", spec=node_spec("front.local", backends=("svc.local",)))
    c.create_virtual_node(meshName="m", virtualNodeName="blue", spec=node_spec("blue.local", backends=("blue.local",)))
    c.create_virtual_service(meshName="m", virtualServiceName="blue.local", spec=_service_by_node("blue"))
    c.create_virtual_service(meshName="m", virtualServiceName="svc.local", spec=_service_by_node("blue"))
    # an update may name a missing backend too
    c.update_virtual_node(meshName="m", virtualNodeName="front", spec=node_spec("front.local", backends=("svc.local", "later.local")))
    # deleting a service that nodes still list is allowed (App Mesh does not track backends)
    c.delete_virtual_service(meshName="m", virtualServiceName="svc.local")
    c.delete_virtual_service(meshName="m", virtualServiceName="blue.local")
    assert c.list_virtual_services(meshName="m")["virtualServices"] == []
    spec = c.describe_virtual_node(meshName="m", virtualNodeName="front")["virtualNode"]["spec"]
    assert [b["virtualService"]["virtualServiceName"] for b in spec["backends"]] == ["svc.local", "later.local"]


def test_a_backend_with_its_own_client_policy_before_its_service(c):
    policy = {"tls": {"validation": {"trust": {"file": {"certificateChain": "/certs/ca.pem"}}}}}
    spec = node_spec("front.local")
    spec["backends"] = [{"virtualService": {"virtualServiceName": "svc.local", "clientPolicy": policy}}]
    spec["backendDefaults"] = {"clientPolicy": policy}
    c.create_virtual_node(meshName="m", virtualNodeName="front", spec=spec)
    assert c.describe_virtual_node(meshName="m", virtualNodeName="front")["virtualNode"]["spec"]["backends"][0]["virtualService"]["clientPolicy"] == policy


def test_route_target_node_missing_is_not_found(c):
    c.create_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec())
    code, message, status = error_of(c.create_route, meshName="m", virtualRouterName="r", routeName="main", spec=route_spec(("ghost", 1)))
    assert (code, status) == ("NotFoundException", 404)
    assert "Route m/r/main: spec.httpRoute.action.weightedTargets[0].virtualNode: virtual node 'ghost' not found in mesh 'm'" in message
    c.create_virtual_node(meshName="m", virtualNodeName="blue", spec=node_spec("blue.local"))
    c.create_route(meshName="m", virtualRouterName="r", routeName="main", spec=route_spec(("blue", 1)))
    code, _, status = error_of(c.update_route, meshName="m", virtualRouterName="r", routeName="main", spec=route_spec(("blue", 1), ("ghost", 1)))
    assert (code, status) == ("NotFoundException", 404)
    # the route's parent router missing: NotFound, as before
    assert error_of(c.create_route, meshName="m", virtualRouterName="nope", routeName="x", spec=route_spec(("blue", 1)))[:3] \
        == ("NotFoundException", "VirtualRouter m/nope not found", 404)
    # a target that exists but is wrong (no such port) stays a bad request
    bad = route_spec(("blue", 1))
    bad["httpRoute"]["action"]["weightedTargets"][0]["port"] = 9999
    assert error_of(c.update_route, meshName="m", virtualRouterName="r", routeName="main", spec=bad)[0] == "BadRequestException"
    # a missing target and a malformed field together: the request is bad first
    bad = route_spec(("ghost", 1), prefix="no-slash")
    assert error_of(c.update_route, meshName="m", virtualRouterName="r", routeName="main", spec=bad)[0] == "BadRequestException"
    # the target node cannot be deleted while a route targets it
    code, message, status = error_of(c.delete_virtual_node, meshName="m", virtualNodeName="blue")
    assert (code, status) == ("ResourceInUseException", 409) and "Route m/r/main" in message


def test_service_provider_missing_is_not_found(c):
    code, message, status = error_of(c.create_virtual_service, meshName="m", virtualServiceName="a.local", spec=_service_by_node("ghost"))
    assert (code, status) == ("NotFoundException", 404) and "virtual node 'ghost' not found in mesh 'm'" in message
    code, message, status = error_of(c.create_virtual_service, meshName="m", virtualServiceName="a.local", spec=service_by_router("ghost"))
    assert (code, status) == ("NotFoundException", 404) and "virtual router 'ghost' not found in mesh 'm'" in message
    # without a provider first, provided once the provider exists
    c.create_virtual_service(meshName="m", virtualServiceName="a.local", spec={})
    assert error_of(c.update_virtual_service, meshName="m", virtualServiceName="a.local", spec=_service_by_node("a"))[0] == "NotFoundException"
    c.create_virtual_node(meshName="m", virtualNodeName="a", spec=node_spec("a.local"))
    c.update_virtual_service(meshName="m", virtualServiceName="a.local", spec=_service_by_node("a"))
    # the provider cannot be deleted while the service names it
    code, message, status = error_of(c.delete_virtual_node, meshName="m", virtualNodeName="a")
    assert (code, status) == ("ResourceInUseException", 409) and "VirtualService m/a.local" in message
    c.create_virtual_router(meshName="m", virtualRouterName="r", spec=router_spec())
    c.update_virtual_service(meshName="m", virtualServiceName="a.local", spec=service_by_router("r"))
    assert error_of(c.delete_virtual_router, meshName="m", virtualRouterName="r")[0] == "ResourceInUseException"


def test_gateway_route_target_service_missing_is_not_found(c):
    c.create_virtual_gateway(meshName="m", virtualGatewayName="gw", spec=gateway_spec())
    code, message, status = error_of(c.create_gateway_route, meshName="m", virtualGatewayName="gw", gatewayRouteName="to-svc",
                                     spec=gateway_route_spec("svc.local"))
    assert (code, status) == ("NotFoundException", 404) and "virtual service 'svc.local' not found in mesh 'm'" in message
    assert error_of(c.create_gateway_route, meshName="m", virtualGatewayName="nope", gatewayRouteName="x",
                    spec=gateway_route_spec("svc.local"))[:2] == ("NotFoundException", "VirtualGateway m/nope not found")
    # a service without a provider is a valid target (it exists); the gateway then has no route to it yet
    c.create_virtual_service(meshName="m", virtualServiceName="svc.local", spec={})
    c.create_gateway_route(meshName="m", virtualGatewayName="gw", gatewayRouteName="to-svc", spec=gateway_route_spec("svc.local"))
    code, message, status = error_of(c.delete_virtual_service, meshName="m", virtualServiceName="svc.local")
    assert (code, status) == ("ResourceInUseException", 409) and "GatewayRoute m/gw/to-svc" in message


def test_apply_takes_a_dangling_backend(c):
    """``meshplane apply`` (POST /meshplane/v1/apply) validates with the same rules."""
    service = c.api.extra["service"]
    docs = [{"kind": "Mesh", "name": "m"},
            {"kind": "VirtualNode", "mesh": "m", "name": "front", "spec": node_spec("front.local", backends=("svc.local",))}]
    status, _headers, body = service.handle("POST", "/meshplane/v1/apply", "", {"Content-Type": "application/json"},
                                            json.dumps({"documents": docs, "prune": False}).encode())
    assert status == 200, body
    assert [n["virtualNodeName"] for n in c.list_virtual_nodes(meshName="m")["virtualNodes"]] == ["front"]


def test_the_served_config_follows_a_backend_created_later(c):
    """API -> store -> control plane: the caller's snapshot gets the route and cluster once
    the service it named is created, and loses them when it is deleted (as a cold compile)."""
    import asyncio

    from mesh_model.compiler import Placement, compile_node
    from mesh_model.node_id import NodeRef
    from xds_server.cache.snapshot import Snapshot, TYPE_CLUSTER
    from xds_server.cache.snapshot_cache import SnapshotCache
    from xds_server.controlplane.control_plane import ControlPlane
    from xds_server.controlplane.store_source import StoreSource

    from tests.unit.test_incremental_property import _content, _envoy_node

    c.create_virtual_node(meshName="m", virtualNodeName="front", spec=node_spec("front.local", backends=("svc.local",)))
    c.create_virtual_node(meshName="m", virtualNodeName="blue", spec=node_spec("blue.local"))
    source = StoreSource(c.api.extra["store"])
    cache = SnapshotCache()
    control = ControlPlane([], cache, source=source)
    front = NodeRef("m", "virtualNode", "front")
    key = control.resolve(_envoy_node(front, Placement()))

    def served_clusters() -> set[str]:
        return set(cache.get(key).types[TYPE_CLUSTER].resources)

    assert "cds_egress_m_blue_http_8080" not in served_clusters()
    assert any("svc.local" in w for w in control.status()["warnings"])
    c.create_virtual_service(meshName="m", virtualServiceName="svc.local", spec=_service_by_node("blue"))
    assert asyncio.run(control.reload()), control.last_error
    assert "cds_egress_m_blue_http_8080" in served_clusters()
    assert _content(cache.get(key)) == _content(Snapshot.from_resources(compile_node(control.model, front)))
    assert control.status()["warnings"] == []
    c.delete_virtual_service(meshName="m", virtualServiceName="svc.local")
    assert asyncio.run(control.reload()), control.last_error
    assert "cds_egress_m_blue_http_8080" not in served_clusters()
    assert _content(cache.get(key)) == _content(Snapshot.from_resources(compile_node(control.model, front)))


def test_a_log_format_app_mesh_took_is_taken_served_literally_and_warned_about(c):
    """moto's App Mesh tests (as App Mesh's API) log ``%END_TIME%``, which Envoy does not know:
    the write is answered 200, the Envoy gets the part literally, ``/status`` says so."""
    from mesh_model.compiler import Placement
    from mesh_model.node_id import NodeRef
    from xds_server.cache.snapshot import TYPE_LISTENER
    from xds_server.cache.snapshot_cache import SnapshotCache
    from xds_server.controlplane.control_plane import ControlPlane
    from xds_server.controlplane.store_source import StoreSource

    from tests.unit.test_incremental_property import _envoy_node

    spec = node_spec("logs.local")
    spec["logging"] = {"accessLog": {"file": {"path": "/dev/stdout", "format": {"json": [
        {"key": "end", "value": "%END_TIME%"}, {"key": "method", "value": "%REQ(:METHOD)%"}]}}}}
    created = c.create_virtual_node(meshName="m", virtualNodeName="logs", spec=spec)["virtualNode"]
    assert created["spec"]["logging"]["accessLog"]["file"]["format"]["json"][0]["value"] == "%END_TIME%"  # kept as written
    control = ControlPlane([], SnapshotCache(), source=StoreSource(c.api.extra["store"]))
    key = control.resolve(_envoy_node(NodeRef("m", "virtualNode", "logs"), Placement()))
    listeners = control.cache.get(key).types[TYPE_LISTENER].resources
    served = b"".join(resource.SerializeToString() for resource in listeners.values())
    assert b"%%END_TIME%%" in served and b"%REQ(:METHOD)%" in served
    assert any("VirtualNode m/logs: spec.logging.accessLog.file.format.json[0].value: %END_TIME%" in w
               for w in control.status()["warnings"])
