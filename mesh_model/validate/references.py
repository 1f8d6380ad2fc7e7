"""Cross-resource checks: duplicates and references between resources.

Run after every document was parsed, so a reference can point into another file. Each
problem is reported at the referring field (``spec.provider.virtualNode.virtualNodeName``)
with a "did you mean" hint, because a typo in a name is the usual cause. Resources whose
own spec failed validation arrive with ``spec=None``: they still count as existing (no
spurious "not found"), but their outgoing references are not checked.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from mesh_model.errors import Issue
from mesh_model.spec.model import Resource
from mesh_model.spec.pydantic_errors import HintBudget, did_you_mean
from mesh_model.spec.route_types import route_of


class _Index:
    """First definition of every resource, by mesh and name; and the "did you mean" hints
    (cached, and within a budget: a renamed node can leave thousands of dangling references,
    each compared with thousands of names)."""

    def __init__(self, resources: Iterable[Resource]):
        self.meshes: set[str] = set()
        self.by_kind: dict[tuple[str, str], dict[str, Resource]] = {}  # (kind, mesh) -> name -> resource
        for r in resources:
            if r.kind == "Mesh":
                self.meshes.add(r.name)
            scope = {"Route": f"{r.mesh}/{r.virtualRouter}", "GatewayRoute": f"{r.mesh}/{r.virtualGateway}"}.get(r.kind, r.mesh)
            self.by_kind.setdefault((r.kind, scope), {}).setdefault(r.name, r)
        self._names: dict[tuple[str, str], list[str]] = {}
        self._hints: dict[tuple[str, str, str], str] = {}
        self._budget = HintBudget()

    def get(self, kind: str, mesh: str, name: str) -> Resource | None:
        return self.by_kind.get((kind, mesh), {}).get(name)

    def names(self, kind: str, mesh: str) -> list[str]:
        key = (kind, mesh)
        if key not in self._names:
            self._names[key] = sorted(self.by_kind.get(key, {}))
        return self._names[key]

    def hint(self, name: str, kind: str, mesh: str) -> str:
        """`` (did you mean 'x'?)`` among the names of ``kind`` in ``mesh`` (kind "Mesh": meshes)."""
        key = (name, kind, mesh)
        if key not in self._hints:
            candidates = sorted(self.meshes) if kind == "Mesh" else self.names(kind, mesh)
            self._hints[key] = did_you_mean(name, candidates, self._budget)
        return self._hints[key]


_NOUN = {
    "VirtualNode": "virtual node", "VirtualRouter": "virtual router", "VirtualService": "virtual service",
    "VirtualGateway": "virtual gateway",
}


def check_references(resources: Sequence[Resource]) -> list[Issue]:
    """Every cross-resource problem of a fully parsed set of resources."""
    index = _Index(resources)
    issues = _duplicates(resources)
    checks = {
        "Route": _check_route, "VirtualService": _check_service, "VirtualNode": _check_node, "GatewayRoute": _check_gateway_route,
    }
    for r in resources:
        if r.kind not in ("Mesh", "CloudMapService") and r.mesh not in index.meshes:
            issues.append(_issue(r, "mesh", f"mesh '{r.mesh}' is not defined (no kind: Mesh document with that name){index.hint(r.mesh, 'Mesh', '')}"))
        if r.spec is not None and r.kind in checks:
            issues += checks[r.kind](r, index)
    return issues


def _issue(r: Resource, path: str, message: str) -> Issue:
    return Issue(r.file, r.label, path, message)


def _missing(r: Resource, index: _Index, kind: str, name: str, path: str) -> Issue | None:
    """An issue if ``kind name`` does not exist in ``r``'s mesh."""
    if index.get(kind, r.mesh, name) is not None:
        return None
    return _issue(r, path, f"{_NOUN[kind]} '{name}' not found in mesh '{r.mesh}'{index.hint(name, kind, r.mesh)}")


def _duplicates(resources: Sequence[Resource]) -> list[Issue]:
    """The same kind+mesh(+router)+name defined twice: reported on every later copy."""
    first: dict[tuple, Resource] = {}
    issues = []
    for r in resources:
        key = (r.kind, r.mesh, r.virtualRouter, r.virtualGateway, r.namespaceName, r.name)
        if key in first:
            issues.append(_issue(r, "name", f"duplicate {r.kind} '{r.name}': also defined in {first[key].file}"))
        else:
            first[key] = r
    return issues


def _ports(resource: Resource | None) -> list[int] | None:
    """Listener ports of a node/router, or None when its spec is unknown (invalid)."""
    if resource is None or resource.spec is None:
        return None
    return [listener.portMapping.port for listener in resource.spec.listeners or ()]


def _port_list(ports: list[int]) -> str:
    return ", ".join(map(str, ports)) or "none"


def _parent(r: Resource, index: _Index, kind: str, name: str, field: str) -> tuple[Resource | None, list[Issue]]:
    """The router of a route / the gateway of a gateway route, or an issue at ``field``."""
    parent = index.get(kind, r.mesh, name)
    if parent is None and r.mesh in index.meshes:
        hint = index.hint(name, kind, r.mesh)
        return None, [_issue(r, field, f"{_NOUN[kind]} '{name}' not found in mesh '{r.mesh}'{hint}")]
    return parent, []


def _check_route(r: Resource, index: _Index) -> list[Issue]:
    router, issues = _parent(r, index, "VirtualRouter", r.virtualRouter, "virtualRouter")
    route_type, route = route_of(r.spec)
    issues += _check_match_port(r, f"spec.{route_type}.match.port", route.match.port if route.match else None, router)
    for i, target in enumerate(route.action.weightedTargets):
        issues += _check_target(r, index, f"spec.{route_type}.action.weightedTargets[{i}]", target)
    return issues


def _check_match_port(r: Resource, path: str, port: int | None, parent: Resource | None) -> list[Issue]:
    """``match.port`` must be a listener port of the route's router (or gateway); required
    when it has several listeners."""
    ports = _ports(parent)
    if ports is None:
        return []
    noun = _NOUN[parent.kind]
    if port is not None and port not in ports:
        return [_issue(r, path, f"port {port} is not a listener port of {noun} '{parent.name}' (ports: {_port_list(ports)})")]
    if port is None and len(ports) > 1:
        return [_issue(r, path, f"port is required: {noun} '{parent.name}' has {len(ports)} listeners (ports: {_port_list(ports)})")]
    return []


def _check_target(r: Resource, index: _Index, path: str, target) -> list[Issue]:
    """A weighted target names an existing node and one of its listener ports."""
    missing = _missing(r, index, "VirtualNode", target.virtualNode, f"{path}.virtualNode")
    if missing:
        return [missing]
    ports = _ports(index.get("VirtualNode", r.mesh, target.virtualNode))
    if ports is None:
        return []
    node = f"virtual node '{target.virtualNode}'"
    if target.port is not None and target.port not in ports:
        return [_issue(r, f"{path}.port", f"port {target.port} is not a listener port of {node} (ports: {_port_list(ports)})")]
    if target.port is None and not ports:
        return [_issue(r, f"{path}.virtualNode", f"{node} has no listeners to send traffic to")]
    if target.port is None and len(ports) > 1:
        return [_issue(r, f"{path}.port", f"port is required: {node} has {len(ports)} listeners (ports: {_port_list(ports)})")]
    return []


def _check_service(r: Resource, index: _Index) -> list[Issue]:
    provider = r.spec.provider
    if provider is None:
        return []
    if provider.virtualNode is not None:
        found = _missing(r, index, "VirtualNode", provider.virtualNode.virtualNodeName, "spec.provider.virtualNode.virtualNodeName")
    else:
        found = _missing(r, index, "VirtualRouter", provider.virtualRouter.virtualRouterName, "spec.provider.virtualRouter.virtualRouterName")
    return [found] if found else []


def _check_node(r: Resource, index: _Index) -> list[Issue]:
    """Backends must be virtual services of the same mesh. (A Cloud Map service with no
    CloudMapService document is fine: it just has no endpoints yet.)"""
    issues = []
    for i, backend in enumerate(r.spec.backends or ()):
        name = backend.virtualService.virtualServiceName
        found = _missing(r, index, "VirtualService", name, f"spec.backends[{i}].virtualService.virtualServiceName")
        if found:
            issues.append(found)
    return issues


def _service_ports(index: _Index, mesh: str, name: str) -> list[int] | None:
    """The ports a virtual service answers on (its provider's listeners); None if unknown."""
    service = index.get("VirtualService", mesh, name)
    if service is None or service.spec is None or service.spec.provider is None:
        return None
    provider = service.spec.provider
    if provider.virtualNode is not None:
        return _ports(index.get("VirtualNode", mesh, provider.virtualNode.virtualNodeName))
    return _ports(index.get("VirtualRouter", mesh, provider.virtualRouter.virtualRouterName))


def _check_gateway_route(r: Resource, index: _Index) -> list[Issue]:
    """The gateway exists and has the matched port; the target service exists and has the target port."""
    gateway, issues = _parent(r, index, "VirtualGateway", r.virtualGateway, "virtualGateway")
    route_type, route = route_of(r.spec)
    issues += _check_match_port(r, f"spec.{route_type}.match.port", route.match.port, gateway)
    target = route.action.target
    path = f"spec.{route_type}.action.target"
    missing = _missing(r, index, "VirtualService", target.virtualService.virtualServiceName, f"{path}.virtualService.virtualServiceName")
    if missing:
        return issues + [missing]
    service_ports = _service_ports(index, r.mesh, target.virtualService.virtualServiceName)
    service = f"virtual service '{target.virtualService.virtualServiceName}'"
    if service_ports is not None and target.port is not None and target.port not in service_ports:
        issues.append(_issue(r, f"{path}.port", f"port {target.port} is not a port of {service} (ports: {_port_list(service_ports)})"))
    elif service_ports is not None and target.port is None and len(service_ports) > 1:
        issues.append(_issue(r, f"{path}.port", f"port is required: {service} has {len(service_ports)} ports ({_port_list(service_ports)})"))
    return issues
