"""What ``explain`` found: App Mesh words and Envoy names side by side, as text or JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from mesh_model.explain.request import Request


@dataclass
class Upstream:
    """One weighted target of the chosen route: an Envoy cluster, and the App Mesh node behind it."""

    cluster: str
    weight: int
    probability: float
    virtual_node: Optional[str] = None  # App Mesh virtual node (None: local app, passthrough, ...)
    port: Optional[int] = None
    protocol: Optional[str] = None
    kind: str = "virtual-node"  # virtual-node | local-app | passthrough | gateway-egress | unknown
    details: dict[str, Any] = field(default_factory=dict)  # type, endpoints, tls, outlier_detection, health_checks, ...

    @property
    def label(self) -> str:
        return self.virtual_node or self.cluster


@dataclass
class RouteCheck:
    """One Envoy route tried in order; ``reasons`` says why it did not match (empty: it matched)."""

    name: str  # the Envoy route name
    appmesh: str  # e.g. "Route catalog-router/main (priority 100)"
    matched: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class Hop:
    """One pass through an Envoy listener (a gateway has two: its listener, then its egress)."""

    listener: str
    filter_chain: str
    request: dict[str, Any]  # the request as this hop routes it (normalised path, rewritten host)
    route_config: Optional[str] = None
    virtual_host: Optional[str] = None
    domain: Optional[str] = None
    virtual_service: Optional[str] = None
    virtual_router: Optional[str] = None
    gateway: Optional[str] = None
    checked: list[RouteCheck] = field(default_factory=list)
    route: Optional[str] = None  # Envoy route name matched
    appmesh_route: Optional[str] = None  # App Mesh route (or gateway route) name
    priority: Optional[int] = None
    kind: Optional[str] = None  # App Mesh route kind: httpRoute, grpcRoute, gatewayRoute, ...
    targets: list[Upstream] = field(default_factory=list)
    retry: Optional[dict[str, Any]] = None
    timeout: Optional[str] = None
    idle_timeout: Optional[str] = None
    rewrite: dict[str, Any] = field(default_factory=dict)  # path, host, headers added
    tcp: bool = False


@dataclass
class Explanation:
    node: str
    request: Request
    outcome: str  # routed | not-found | no-listener | tcp | direct-response
    status: Optional[int]  # HTTP status Envoy answers itself (404), None when routed
    reason: str
    hops: list[Hop] = field(default_factory=list)
    grpc_status: Optional[int] = None  # for gRPC requests Envoy answers: 12 UNIMPLEMENTED for a 404

    # -- the final hop, in App Mesh terms -------------------------------------------------------
    @property
    def final(self) -> Optional[Hop]:
        return self.hops[-1] if self.hops else None

    @property
    def targets(self) -> list[Upstream]:
        return self.final.targets if self.final and self.outcome in ("routed", "tcp") else []

    @property
    def probabilities(self) -> dict[str, float]:
        """App Mesh target (virtual node, or cluster) -> probability, non-zero weights only."""
        out: dict[str, float] = {}
        for t in self.targets:
            if t.probability > 0:
                out[t.label] = out.get(t.label, 0.0) + t.probability
        return out

    @property
    def route(self) -> Optional[str]:
        return self.final.appmesh_route if self.final else None

    @property
    def envoy_route(self) -> Optional[str]:
        return self.final.route if self.final else None

    @property
    def gateway_route(self) -> Optional[str]:
        for hop in self.hops:
            if hop.kind == "gatewayRoute":
                return hop.appmesh_route
        return None

    @property
    def virtual_service(self) -> Optional[str]:
        return self.final.virtual_service if self.final else None

    @property
    def retries(self) -> Optional[int]:
        final = self.final
        return final.retry.get("num_retries") if final and final.retry else (0 if final and final.route else None)

    @property
    def timeout(self) -> Optional[str]:
        return self.final.timeout if self.final else None

    @property
    def rewritten_path(self) -> Optional[str]:
        for hop in self.hops:
            if "path" in hop.rewrite:
                return hop.rewrite["path"]
        return None

    @property
    def rewritten_host(self) -> Optional[str]:
        for hop in self.hops:
            if "host" in hop.rewrite:
                return hop.rewrite["host"]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "request": self.request.to_dict(),
            "outcome": self.outcome,
            "status": self.status,
            "grpc_status": self.grpc_status,
            "reason": self.reason,
            "summary": {
                "virtual_service": self.virtual_service,
                "gateway_route": self.gateway_route,
                "route": self.route,
                "envoy_route": self.envoy_route,
                "targets": {t.label: t.probability for t in self.targets},
                "retries": self.retries,
                "timeout": self.timeout,
                "rewritten_path": self.rewritten_path,
                "rewritten_host": self.rewritten_host,
            },
            "hops": [asdict(h) for h in self.hops],
        }

    def text(self) -> str:
        return render_text(self)


def _pct(p: float) -> str:
    text = f"{p * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def render_text(ex: Explanation) -> str:
    lines = [f"{ex.request.describe()}", f"  from {ex.node}"]
    for i, hop in enumerate(ex.hops):
        lines.append("")
        head = f"hop {i + 1}: " if len(ex.hops) > 1 else ""
        lines.append(f"{head}listener {hop.listener}  ({hop.filter_chain})")
        if hop.tcp:
            if hop.virtual_service:
                lines.append(f"  VirtualService {hop.virtual_service}" + (f" -> VirtualRouter {hop.virtual_router}" if hop.virtual_router else "") + "  (TCP)")
            if hop.idle_timeout and hop.timeout is None:
                lines.append(f"  idle timeout: {hop.idle_timeout}")
        elif hop.route_config:
            vs = ""
            if hop.virtual_service:
                vs = f"VirtualService {hop.virtual_service}" + (f" -> VirtualRouter {hop.virtual_router}" if hop.virtual_router else "") + "  "
            elif hop.gateway:
                vs = f"VirtualGateway {hop.gateway}  "
            lines.append(f"  route config {hop.route_config}")
            if hop.virtual_host:
                lines.append(f"  {vs}(virtual host {hop.virtual_host}, domain {hop.domain!r} for Host {hop.request.get('host')!r})")
            else:
                lines.append(f"  no virtual host has a domain for Host {hop.request.get('host')!r}")
            for check in hop.checked:
                if check.matched:
                    lines.append(f"  MATCH  {check.appmesh}  [envoy route {check.name}]")
                else:
                    lines.append(f"  skip   {check.appmesh}  [envoy route {check.name}]")
                    lines.extend(f"           - needs {reason}" for reason in check.reasons)
        if hop.rewrite:
            parts = [f"{k} -> {v!r}" for k, v in hop.rewrite.items()]
            lines.append("  rewrites: " + ", ".join(parts))
        if hop.targets:
            lines.append("  targets:")
            for t in hop.targets:
                who = f"VirtualNode {t.virtual_node}" if t.virtual_node else t.kind
                lines.append(f"    {_pct(t.probability):>7}  {who}  [cluster {t.cluster}, weight {t.weight}]")
        if hop.retry is not None:
            r = hop.retry
            extra = f", per try {r['per_try_timeout']}" if r.get("per_try_timeout") else ""
            codes = f", status codes {r['retriable_status_codes']}" if r.get("retriable_status_codes") else ""
            lines.append(f"  retries: {r['num_retries']} on {r['retry_on']}{extra}{codes}")
        if hop.timeout is not None:
            lines.append(f"  timeout: {hop.timeout} per request" + (f", idle {hop.idle_timeout}" if hop.idle_timeout else ""))
    final = ex.final
    if final and final.targets and ex.outcome in ("routed", "tcp"):
        lines.append("")
        lines.append("upstream clusters:")
        for t in final.targets:
            d = t.details
            lines.append(f"  {t.cluster} ({d.get('type', '?')})")
            if d.get("endpoints"):
                lines.append(f"    endpoints: {', '.join(d['endpoints'])}")
            if d.get("protocol"):
                lines.append(f"    upstream protocol: {d['protocol']}")
            tls = d.get("tls")
            if tls:
                sans = ", ".join(tls.get("subject_alt_names") or []) or "any"
                lines.append(f"    TLS origination: sni {tls.get('sni') or '-'}, SANs {sans}, trust {tls.get('trust') or '-'}"
                             + (f", client certificate {tls['client_certificate']}" if tls.get("client_certificate") else ""))
            else:
                lines.append("    TLS origination: none (plaintext)")
            od = d.get("outlier_detection")
            lines.append("    outlier detection: " + (", ".join(f"{k} {v}" for k, v in od.items()) if od else "none"))
            for hc in d.get("health_checks") or []:
                lines.append("    health check: " + ", ".join(f"{k} {v}" for k, v in hc.items()))
            if not d.get("health_checks"):
                lines.append("    health check: none")
    lines.append("")
    status = f"{ex.status}" + (f" (gRPC status {ex.grpc_status})" if ex.grpc_status is not None else "") if ex.status else ""
    lines.append(f"=> {ex.outcome}{' ' + status if status else ''}: {ex.reason}")
    return "\n".join(lines) + "\n"
