"""App Mesh's route types, in one table: the spec, planning, dependencies, validation,
gateways and adapters all dispatch on it instead of spelling the names out.

A Route (and a GatewayRoute) spec sets exactly one member named by its route type; the
route type implies the protocol of the listeners it can serve. The order is App Mesh's
(the order error messages list them in).
"""
from __future__ import annotations

from typing import Any

ROUTE_TYPES = ("httpRoute", "http2Route", "grpcRoute", "tcpRoute")
GATEWAY_ROUTE_TYPES = ("httpRoute", "http2Route", "grpcRoute")  # a gateway has no TCP listeners

PROTOCOL = {"httpRoute": "http", "http2Route": "http2", "grpcRoute": "grpc", "tcpRoute": "tcp"}


def route_of(spec: Any) -> tuple[str, Any]:
    """``(route type, route body)`` of a Route or GatewayRoute spec (a typed spec object).

    The spec's own validation guarantees exactly one route type is set.
    """
    for route_type in ROUTE_TYPES:
        body = getattr(spec, route_type, None)
        if body is not None:
            return route_type, body
    raise ValueError("the spec sets no route type")


def serves_router_listener(route_type: str, listener_protocol: str) -> bool:
    """A virtual router listener gets the routes of its family: HTTP-family routes (http,
    http2, grpc) serve every HTTP-family listener, TCP routes serve TCP listeners."""
    return (PROTOCOL[route_type] == "tcp") == (listener_protocol == "tcp")


def serves_gateway_listener(route_type: str, listener_protocol: str) -> bool:
    """A virtual gateway listener gets only the gateway routes of exactly its protocol."""
    return PROTOCOL[route_type] == listener_protocol
