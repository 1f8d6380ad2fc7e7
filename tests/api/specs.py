"""Small App Mesh specs shared by the API tests (the wire's camelCase JSON)."""
from __future__ import annotations


def node_spec(host: str = "n.local", port: int = 8080, backends: tuple[str, ...] = ()) -> dict:
    spec = {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": host}}}
    if backends:
        spec["backends"] = [{"virtualService": {"virtualServiceName": b}} for b in backends]
    return spec


def router_spec(port: int = 8080) -> dict:
    return {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]}


def route_spec(*targets: tuple[str, int], prefix: str = "/") -> dict:
    return {"httpRoute": {"match": {"prefix": prefix},
                          "action": {"weightedTargets": [{"virtualNode": n, "weight": w} for n, w in targets]}}}


def service_by_router(router: str) -> dict:
    return {"provider": {"virtualRouter": {"virtualRouterName": router}}}


def gateway_spec(port: int = 9080) -> dict:
    return {"listeners": [{"portMapping": {"port": port, "protocol": "http"}}]}


def gateway_route_spec(service: str, prefix: str = "/") -> dict:
    return {"httpRoute": {"match": {"prefix": prefix},
                          "action": {"target": {"virtualService": {"virtualServiceName": service}}}}}


def build_mesh(c, mesh: str = "m") -> None:
    """A mesh with two nodes, a router with one route, a service, a gateway with a gateway route."""
    c.create_mesh(meshName=mesh)
    c.create_virtual_node(meshName=mesh, virtualNodeName="blue", spec=node_spec("blue.local"))
    c.create_virtual_node(meshName=mesh, virtualNodeName="green", spec=node_spec("green.local"))
    c.create_virtual_router(meshName=mesh, virtualRouterName="r", spec=router_spec())
    c.create_route(meshName=mesh, virtualRouterName="r", routeName="main", spec=route_spec(("blue", 1), ("green", 1)))
    c.create_virtual_service(meshName=mesh, virtualServiceName="svc.local", spec=service_by_router("r"))
    c.create_virtual_gateway(meshName=mesh, virtualGatewayName="gw", spec=gateway_spec())
    c.create_gateway_route(meshName=mesh, virtualGatewayName="gw", gatewayRouteName="to-svc", spec=gateway_route_spec("svc.local"))
