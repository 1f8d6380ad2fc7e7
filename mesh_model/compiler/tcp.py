"""TCP backends: App Mesh ``tcpRoute`` (and node-provided tcp listeners) -> Envoy tcp_proxy.

A TCP connection carries no Host header, so the only thing that tells two TCP backends
apart is the port the app dials: one TCP backend per port (App Mesh had the same limit,
roadmap #195). When two backends of a node claim the same port, or a TCP backend's port is
also an HTTP backend port, the first in (service name) order wins and the others are left
out, deterministically — ``conflicts`` names them so the caller can warn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from mesh_model.compiler import names
from mesh_model.compiler.common import DEFAULT_IDLE_MS, duration, typed
from mesh_model.compiler.plan import RoutePlan, ServicePort


@dataclass(frozen=True)
class TcpBackend:
    service: str
    port: int
    route: RoutePlan


def tcp_backends(backends: Iterable[ServicePort], http_ports: Iterable[int]) -> tuple[dict[int, TcpBackend], list[str]]:
    """Port -> the TCP backend served there, plus human-readable notes on what was left out."""
    taken = set(http_ports)
    chosen: dict[int, TcpBackend] = {}
    conflicts: list[str] = []
    for sp in sorted((b for b in backends if b.protocol == "tcp"), key=lambda b: (b.service, b.port)):
        routes = [r for r in sp.routes if r.targets and sum(t.weight for t in r.targets) > 0]
        if not routes:
            continue
        if sp.port in taken or sp.port in chosen:
            winner = chosen[sp.port].service if sp.port in chosen else "an HTTP backend"
            conflicts.append(f"TCP backend {sp.service}:{sp.port} left out: port {sp.port} is already used by {winner}")
            continue
        chosen[sp.port] = TcpBackend(sp.service, sp.port, routes[0])  # highest priority route wins
    return chosen, conflicts


def tcp_proxy(backend: TcpBackend) -> dict[str, Any]:
    """A tcp_proxy filter splitting connections over the route's weighted targets."""
    route = backend.route
    timeout = getattr(route.spec, "timeout", None) if route.spec is not None else None
    body: dict[str, Any] = {
        "statPrefix": names.EGRESS_STAT_PREFIX,
        "weightedClusters": {"clusters": [{"name": t.target.cluster_name, "weight": t.weight} for t in route.targets if t.weight > 0]},
        "idleTimeout": duration(timeout.idle if timeout is not None else None, DEFAULT_IDLE_MS),
    }
    return {"name": "envoy.filters.network.tcp_proxy", "typedConfig": typed("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", body)}
