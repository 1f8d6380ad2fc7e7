"""Cross-resource checks: duplicates and references between resources.

Run after every document was parsed, so a reference can point into another file. Each
problem is reported at the referring field (``spec.provider.virtualNode.virtualNodeName``)
with a "did you mean" hint, because a typo in a name is the usual cause. Resources whose
own spec failed validation arrive with ``spec=None``: they still count as existing (no
spurious "not found"), but their outgoing references are not checked.

``ReferenceChecker`` keeps what the last check found, so the next check of nearly the same
resources costs what changed: every resource's result is kept with what it read (which
names it needed to exist, which resources' specs it read: a reverse index), and only the
resources that are new, or that read a name whose first definition appeared, disappeared
or changed its spec, are checked again. Hints are not kept: they depend on every name of a
kind and on a budget shared by the whole check, so they are made afresh, in resource
order, for the few failing references of each check. A fresh checker and a kept one give
the same issues for the same resources (``check_references`` is a fresh one).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

from mesh_model import pacing
from mesh_model.errors import Issue
from mesh_model.spec.model import Resource
from mesh_model.spec.pydantic_errors import HintBudget, did_you_mean
from mesh_model.spec.route_types import route_of

Key = tuple[str, str, str]  # (kind, scope, name): scope is the mesh, "mesh/router" for routes, "mesh/gateway" for gateway routes
Template = tuple[str, str, "tuple[str, str, str] | None"]  # (field path, message, hint wanted: (name, kind, mesh) or None)

_NOUN = {
    "VirtualNode": "virtual node", "VirtualRouter": "virtual router", "VirtualService": "virtual service",
    "VirtualGateway": "virtual gateway",
}


def check_references(resources: Sequence[Resource]) -> list[Issue]:
    """Every cross-resource problem of a fully parsed set of resources."""
    return ReferenceChecker(record=False).check([("", tuple(resources))])


def lookup_key(r: Resource) -> Key:
    scope = f"{r.mesh}/{r.virtualRouter}" if r.kind == "Route" else f"{r.mesh}/{r.virtualGateway}" if r.kind == "GatewayRoute" else r.mesh
    return (r.kind, scope, r.name)


def identity_key(r: Resource) -> tuple:
    """What must be unique: kind, mesh, parent and name."""
    return (r.kind, r.mesh, r.virtualRouter, r.virtualGateway, r.namespaceName, r.name)


def keyed_groups(groups: Iterable[tuple[str, Sequence[Resource]]]) -> dict[str, Sequence[Resource]]:
    """``(label, resources)`` groups by a unique key (a label given twice gets a numbered key), in order."""
    keyed: dict[str, Sequence[Resource]] = {}
    for label, resources in groups:
        key, n = label, 1
        while key in keyed:
            n += 1
            key = f"{label}\0{n}"
        keyed[key] = resources
    return keyed


def group_changes(old: dict[str, Sequence[Resource]], new: dict[str, Sequence[Resource]]) -> tuple[list[Resource], list[Resource]]:
    """The resources added and removed between two keyed group sets, by identity (a group
    that is the very same object as before is skipped without looking inside)."""
    added: list[Resource] = []
    removed: list[Resource] = []
    for key, resources in new.items():
        pacing.pace()
        before = old.get(key)
        if before is resources:
            continue
        if not before:
            added.extend(resources)
            continue
        old_ids, new_ids = set(map(id, before)), set(map(id, resources))
        if len(old_ids) == len(before) and len(new_ids) == len(resources):  # each object once (the usual case)
            added.extend(r for r in pacing.paced(resources) if id(r) not in old_ids)
            removed.extend(r for r in pacing.paced(before) if id(r) not in new_ids)
            continue
        objects = {id(r): r for r in before}
        objects.update((id(r), r) for r in resources)
        count = Counter(map(id, resources))
        count.subtract(Counter(map(id, before)))
        for ident, n in count.items():
            if n > 0:
                added.extend([objects[ident]] * n)
            elif n < 0:
                removed.extend([objects[ident]] * -n)
    for key in old.keys() - new.keys():
        removed.extend(old[key])
    return added, removed


class _Entry:
    __slots__ = ("resource", "count", "templates", "exists", "reads")

    def __init__(self, resource: Resource):
        self.resource = resource
        self.count = 0
        self.templates: tuple[Template, ...] = ()
        self.exists: tuple[Key, ...] = ()  # names whose existence the result depends on
        self.reads: tuple[Key, ...] = ()  # names whose first definition (and its spec) the result depends on


class _View:
    """The first definition of every name, as one check reads it (recording what it read)."""

    __slots__ = ("first", "exists", "reads", "record")

    def __init__(self, first: dict[Key, Resource], record: bool):
        self.first = first
        self.record = record
        self.exists: list[Key] = []
        self.reads: list[Key] = []

    def has_mesh(self, mesh: str) -> bool:
        key = ("Mesh", mesh, mesh)
        if self.record:
            self.exists.append(key)
        return key in self.first

    def has(self, kind: str, mesh: str, name: str) -> bool:
        key = (kind, mesh, name)
        if self.record:
            self.exists.append(key)
        return key in self.first

    def get(self, kind: str, mesh: str, name: str) -> Resource | None:
        key = (kind, mesh, name)
        if self.record:
            self.reads.append(key)
        return self.first.get(key)


class ReferenceChecker:
    """The cross-resource checks of a model that is loaded again and again (see the module
    docstring). ``check`` takes the resources in groups (one per file, in load order):
    a group that is the very same tuple as last time is skipped without looking inside.

    ``record=False`` keeps nothing for a next check (a one-off check costs less).
    """

    def __init__(self, record: bool = True):
        self.record = record
        self.reset()

    def reset(self) -> None:
        self.groups: dict[str, Sequence[Resource]] = {}
        self.entries: dict[int, _Entry] = {}
        self.definers: dict[tuple, list[Resource]] = {}  # identity key -> its definitions, in load order
        self.duplicated: set[tuple] = set()  # identity keys defined more than once
        self.first: dict[Key, Resource] = {}  # lookup key -> first definition (not CloudMapService: never looked up)
        self.names: dict[tuple[str, str], set[str]] = {}  # (kind, scope) -> names defined (for hints)
        self.exists_deps: dict[Key, set[int]] = {}  # lookup key -> entries whose result needs to know it exists
        self.read_deps: dict[Key, set[int]] = {}  # lookup key -> entries whose result read its definition
        self.failing: set[int] = set()

    def check(self, groups: Iterable[tuple[str, Sequence[Resource]]]) -> list[Issue]:
        """Every cross-resource problem of these resources (as ``check_references`` finds them)."""
        try:
            return self._check(keyed_groups(groups))
        except BaseException:
            self.reset()  # a half-updated state must not answer the next check
            raise

    def _check(self, groups: dict[str, Sequence[Resource]]) -> list[Issue]:
        if not self.entries:
            return self._check_all(groups)
        added, removed = group_changes(self.groups, groups)
        self.groups = groups
        touched: set[tuple] = set()
        for r in removed:
            entry = self.entries[id(r)]
            entry.count -= 1
            if entry.count == 0:
                self._forget(entry)
            ident = identity_key(r)
            definers = self.definers[ident]
            del definers[next(i for i, d in enumerate(definers) if d is r)]
            touched.add(ident)
        to_check: dict[int, _Entry] = {}
        for r in pacing.paced(added):
            entry = self.entries.get(id(r))
            if entry is None:
                entry = to_check[id(r)] = self.entries[id(r)] = _Entry(r)
            entry.count += 1
            ident = identity_key(r)
            self.definers.setdefault(ident, []).append(r)
            touched.add(ident)
        for ident in touched:
            if len(self.definers[ident]) > 1:
                self.duplicated.add(ident)
            else:
                self.duplicated.discard(ident)
                if not self.definers[ident]:
                    del self.definers[ident]
        positions = self._positions() if self.duplicated else None
        if positions is not None:  # load order decides which definition is the first (and files can move)
            for ident in self.duplicated:
                self.definers[ident].sort(key=lambda d: positions[id(d)])
                touched.add(ident)
        for ident in touched:
            if ident[0] != "CloudMapService":
                self._update_first(ident, to_check)
        view = _View(self.first, self.record)
        for entry in pacing.paced(to_check.values()):
            self._check_entry(entry, view)
        return self._issues(positions)

    def _check_all(self, groups: dict[str, Sequence[Resource]]) -> list[Issue]:
        """``_check`` from nothing (a first check): the same state, built in one pass."""
        self.groups = groups
        entries, definers = self.entries, self.definers
        for resources in groups.values():
            for r in pacing.paced(resources):  # in load order: every definer list is in load order already
                ident = (r.kind, r.mesh, r.virtualRouter, r.virtualGateway, r.namespaceName, r.name)
                found = definers.get(ident)
                if found is None:
                    definers[ident] = [r]
                else:
                    found.append(r)
                entry = entries.get(id(r))
                if entry is None:
                    entry = entries[id(r)] = _Entry(r)
                entry.count += 1
        first, names = self.first, self.names
        for ident, found in definers.items():
            if len(found) > 1:
                self.duplicated.add(ident)
            kind = ident[0]
            if kind != "CloudMapService":
                scope = (f"{ident[1]}/{ident[2]}" if kind == "Route" else f"{ident[1]}/{ident[3]}" if kind == "GatewayRoute"
                         else ident[1])
                first[(kind, scope, ident[5])] = found[0]
                known = names.get((kind, scope))
                if known is None:
                    names[(kind, scope)] = {ident[5]}
                else:
                    known.add(ident[5])
        view = _View(first, self.record)
        for entry in pacing.paced(entries.values()):
            self._check_entry(entry, view)
        return self._issues(None)

    def _positions(self) -> dict[int, tuple[int, int]]:
        positions: dict[int, tuple[int, int]] = {}
        for g, resources in enumerate(self.groups.values()):
            for i, r in enumerate(resources):
                positions.setdefault(id(r), (g, i))
        return positions

    def _update_first(self, ident: tuple, to_check: dict[int, _Entry]) -> None:
        definers = self.definers.get(ident)
        new = definers[0] if definers else None
        kind, mesh, router, gateway, _, name = ident
        key = lookup_key(new) if new is not None else (kind, f"{mesh}/{router}" if kind == "Route" else f"{mesh}/{gateway}" if kind == "GatewayRoute" else mesh, name)
        old = self.first.get(key)
        if old is new:
            return
        if new is None:
            del self.first[key]
            self.names[key[:2]].discard(name)
        else:
            self.first[key] = new
            if old is None:
                self.names.setdefault(key[:2], set()).add(name)
        if old is None or new is None:
            dependents = self.exists_deps.get(key, set()) | self.read_deps.get(key, set())
        elif old.digest and old.digest == new.digest:
            return  # the same spec (what the checks read of a definition)
        else:
            dependents = self.read_deps.get(key, ())
        to_check.update((dependent, self.entries[dependent]) for dependent in dependents)

    def _forget(self, entry: _Entry) -> None:
        ident = id(entry.resource)
        for key in entry.exists:
            self.exists_deps[key].discard(ident)
        for key in entry.reads:
            self.read_deps[key].discard(ident)
        self.failing.discard(ident)
        del self.entries[ident]

    def _check_entry(self, entry: _Entry, view: _View) -> None:
        r = entry.resource
        ident = id(r)
        if self.record:
            for key in entry.exists:
                self.exists_deps[key].discard(ident)
            for key in entry.reads:
                self.read_deps[key].discard(ident)
            view.exists, view.reads = [], []
        templates: list[Template] = []
        if r.kind not in ("Mesh", "CloudMapService") and not view.has_mesh(r.mesh):
            templates.append(("mesh", f"mesh '{r.mesh}' is not defined (no kind: Mesh document with that name)", (r.mesh, "Mesh", "")))
        check = _CHECKS.get(r.kind)
        if r.spec is not None and check is not None:
            check(r, view, templates)
        entry.templates = tuple(templates)
        if templates:
            self.failing.add(ident)
        else:
            self.failing.discard(ident)
        if self.record:
            entry.exists, entry.reads = tuple(set(view.exists)), tuple(set(view.reads))
            exists_deps, read_deps = self.exists_deps, self.read_deps
            for key in entry.exists:
                found = exists_deps.get(key)
                if found is None:
                    exists_deps[key] = {ident}
                else:
                    found.add(ident)
            for key in entry.reads:
                found = read_deps.get(key)
                if found is None:
                    read_deps[key] = {ident}
                else:
                    found.add(ident)

    def _issues(self, positions: dict[int, tuple[int, int]] | None) -> list[Issue]:
        issues = []
        for ident in self.duplicated:
            definers = self.definers[ident]
            first = definers[0]
            issues.extend(Issue(r.file, r.label, "name", f"duplicate {r.kind} '{r.name}': also defined in {first.file}")
                          for r in definers[1:])
        if not self.failing:
            return issues
        if positions is None:
            positions = self._positions()
        hints = _Hints(self)
        for ident in sorted(self.failing, key=positions.__getitem__):  # hints share a budget: resource order, as always
            r = self.entries[ident].resource
            for path, message, wanted in self.entries[ident].templates:
                issues.append(Issue(r.file, r.label, path, message + (hints.hint(*wanted) if wanted else "")))
        return issues


class _Hints:
    """"Did you mean" hints of one check: cached, and within one budget (a renamed node can
    leave thousands of dangling references, each compared with thousands of names)."""

    def __init__(self, checker: ReferenceChecker):
        self.checker = checker
        self.cache: dict[tuple[str, str, str], str] = {}
        self.budget = HintBudget()

    def hint(self, name: str, kind: str, mesh: str) -> str:
        """`` (did you mean 'x'?)`` among the names of ``kind`` in ``mesh`` (kind "Mesh": meshes)."""
        key = (name, kind, mesh)
        if key not in self.cache:
            names = self.checker.names
            if kind == "Mesh":
                candidates = sorted(n for (k, _), found in names.items() if k == "Mesh" for n in found)
            else:
                candidates = sorted(names.get((kind, mesh), ()))
            self.cache[key] = did_you_mean(name, candidates, self.budget)
        return self.cache[key]


_MISSING = re.compile(r"^(virtual node|virtual router|virtual service|virtual gateway) '.*' not found in mesh '.*'|^mesh '.*' is not defined ")


def is_missing_reference(message: str) -> bool:
    """Whether an issue's message says a referenced resource does not exist (App Mesh answers
    these with ``NotFoundException``, other problems with ``BadRequestException``)."""
    return _MISSING.match(message) is not None


def _missing(r: Resource, view: _View, kind: str, name: str, path: str) -> Template | None:
    """A problem if ``kind name`` does not exist in ``r``'s mesh."""
    if view.has(kind, r.mesh, name):
        return None
    return (path, f"{_NOUN[kind]} '{name}' not found in mesh '{r.mesh}'", (name, kind, r.mesh))


def _ports(resource: Resource | None) -> list[int] | None:
    """Listener ports of a node/router, or None when its spec is unknown (invalid)."""
    if resource is None or resource.spec is None:
        return None
    return [listener.portMapping.port for listener in resource.spec.listeners or ()]


def _port_list(ports: list[int]) -> str:
    return ", ".join(map(str, ports)) or "none"


def _parent(r: Resource, view: _View, kind: str, name: str, field: str, out: list[Template]) -> Resource | None:
    """The router of a route / the gateway of a gateway route, or a problem at ``field``."""
    parent = view.get(kind, r.mesh, name)
    if parent is None and view.has_mesh(r.mesh):
        out.append((field, f"{_NOUN[kind]} '{name}' not found in mesh '{r.mesh}'", (name, kind, r.mesh)))
    return parent


def _check_route(r: Resource, view: _View, out: list[Template]) -> None:
    router = _parent(r, view, "VirtualRouter", r.virtualRouter, "virtualRouter", out)
    route_type, route = route_of(r.spec)
    _check_match_port(f"spec.{route_type}.match.port", route.match.port if route.match else None, router, out)
    for i, target in enumerate(route.action.weightedTargets):
        _check_target(r, view, f"spec.{route_type}.action.weightedTargets[{i}]", target, out)


def _check_match_port(path: str, port: int | None, parent: Resource | None, out: list[Template]) -> None:
    """``match.port`` must be a listener port of the route's router (or gateway); required
    when it has several listeners."""
    ports = _ports(parent)
    if ports is None:
        return
    noun = _NOUN[parent.kind]
    if port is not None and port not in ports:
        out.append((path, f"port {port} is not a listener port of {noun} '{parent.name}' (ports: {_port_list(ports)})", None))
    elif port is None and len(ports) > 1:
        out.append((path, f"port is required: {noun} '{parent.name}' has {len(ports)} listeners (ports: {_port_list(ports)})", None))


def _check_target(r: Resource, view: _View, path: str, target, out: list[Template]) -> None:
    """A weighted target names an existing node and one of its listener ports."""
    missing = _missing(r, view, "VirtualNode", target.virtualNode, f"{path}.virtualNode")
    if missing:
        out.append(missing)
        return
    ports = _ports(view.get("VirtualNode", r.mesh, target.virtualNode))
    if ports is None:
        return
    node = f"virtual node '{target.virtualNode}'"
    if target.port is not None and target.port not in ports:
        out.append((f"{path}.port", f"port {target.port} is not a listener port of {node} (ports: {_port_list(ports)})", None))
    elif target.port is None and not ports:
        out.append((f"{path}.virtualNode", f"{node} has no listeners to send traffic to", None))
    elif target.port is None and len(ports) > 1:
        out.append((f"{path}.port", f"port is required: {node} has {len(ports)} listeners (ports: {_port_list(ports)})", None))


def _check_service(r: Resource, view: _View, out: list[Template]) -> None:
    provider = r.spec.provider
    if provider is None:
        return
    if provider.virtualNode is not None:
        found = _missing(r, view, "VirtualNode", provider.virtualNode.virtualNodeName, "spec.provider.virtualNode.virtualNodeName")
    else:
        found = _missing(r, view, "VirtualRouter", provider.virtualRouter.virtualRouterName, "spec.provider.virtualRouter.virtualRouterName")
    if found:
        out.append(found)


# A virtual node's backends are not checked, as App Mesh does not check them
# (VirtualServiceBackend: "to prevent a cyclic dependency between virtual nodes and virtual
# services creation ... The virtual service can be created afterwards"): a backend may name a
# service that does not exist yet (or any more). The node is valid; it has no route to that
# service until the service exists (``mesh_model.compiler.model_warnings`` says so). Nor is a
# Cloud Map service with no CloudMapService document an error: it just has no endpoints yet.


def _check_node(r: Resource, view: _View, out: list[Template]) -> None:
    """Backends Envoy would see as one host: each backend is a virtual host with the domains
    ``name`` and ``name:port``, Envoy compares them ignoring case and refuses a route
    configuration naming one domain twice. (Whether the backends exist is not checked, above;
    a dangling backend counts with its name alone, as it will once it is created.)"""
    hosts: dict[str, int] = {}  # Envoy domain (case-insensitive) -> first backend index
    for i, backend in enumerate(r.spec.backends or ()):
        name = backend.virtualService.virtualServiceName
        path = f"spec.backends[{i}].virtualService.virtualServiceName"
        domains = {name.lower()} | {f"{name}:{port}".lower() for port in _service_ports(view, r.mesh, name) or ()}
        for domain in sorted(domains):
            first = hosts.setdefault(domain, i)
            if first != i:
                other = r.spec.backends[first].virtualService.virtualServiceName
                out.append((path, f"'{name}' and backends[{first}] '{other}' are the same host for Envoy ('{domain}', "
                                  "host names ignore case); Envoy refuses the node's routes", None))
                break


def _service_ports(view: _View, mesh: str, name: str) -> list[int] | None:
    """The ports a virtual service answers on (its provider's listeners); None if unknown."""
    service = view.get("VirtualService", mesh, name)
    if service is None or service.spec is None or service.spec.provider is None:
        return None
    provider = service.spec.provider
    if provider.virtualNode is not None:
        return _ports(view.get("VirtualNode", mesh, provider.virtualNode.virtualNodeName))
    return _ports(view.get("VirtualRouter", mesh, provider.virtualRouter.virtualRouterName))


def _check_gateway_route(r: Resource, view: _View, out: list[Template]) -> None:
    """The gateway exists and has the matched port; the target service exists and has the target port."""
    gateway = _parent(r, view, "VirtualGateway", r.virtualGateway, "virtualGateway", out)
    route_type, route = route_of(r.spec)
    _check_match_port(f"spec.{route_type}.match.port", route.match.port, gateway, out)
    target = route.action.target
    path = f"spec.{route_type}.action.target"
    missing = _missing(r, view, "VirtualService", target.virtualService.virtualServiceName, f"{path}.virtualService.virtualServiceName")
    if missing:
        out.append(missing)
        return
    service_ports = _service_ports(view, r.mesh, target.virtualService.virtualServiceName)
    service = f"virtual service '{target.virtualService.virtualServiceName}'"
    if service_ports is not None and target.port is not None and target.port not in service_ports:
        out.append((f"{path}.port", f"port {target.port} is not a port of {service} (ports: {_port_list(service_ports)})", None))
    elif service_ports is not None and target.port is None and len(service_ports) > 1:
        out.append((f"{path}.port", f"port is required: {service} has {len(service_ports)} ports ({_port_list(service_ports)})", None))


_CHECKS = {"Route": _check_route, "VirtualService": _check_service, "VirtualNode": _check_node,
           "GatewayRoute": _check_gateway_route}
