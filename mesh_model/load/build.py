"""Validated resources -> the immutable ``MeshModel``, after the checks between resources.

Loading is all-or-nothing: every problem of every file is collected and raised as one
``ModelError``, so a user fixes everything in one pass and a half-valid model never
reaches the compiler (or replaces a good one in the file watcher).

A caller that loads the same files again and again (a ``ParseCache``) keeps an
``Incremental``: the reference checks and the model's assembly then cost what changed
(``ReferenceChecker``, ``ModelAssembler``), with the same issues and the same model as a
load without it.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from mesh_model import pacing
from mesh_model.errors import Issue, ModelError
from mesh_model.load.formats import Origins, from_origin
from mesh_model.spec.model import Mesh, MeshModel, Resource, frozen_map
from mesh_model.spec.pydantic_errors import printable
from mesh_model.validate.references import ReferenceChecker, check_references, group_changes, keyed_groups

Groups = Sequence[tuple[str, Sequence[Resource]]]  # (file label, its resources), in load order


class Incremental:
    """What a load keeps for the next load of nearly the same resources."""

    def __init__(self) -> None:
        self.checker = ReferenceChecker()
        self.assembler = ModelAssembler()


def checked_model(resources: list[Resource], issues: list[Issue], *, complete: bool, max_issues: int,
                  origins: Origins | None = None, groups: Groups | None = None,
                  incremental: Incremental | None = None) -> MeshModel:
    """Cross-check the resources, then build the model; raise every issue found instead.

    Cross-resource checks (references, duplicates) run only when every document could be
    identified (``complete``): a file with a syntax error may hide the very resource a
    reference names, and reporting that as "not found" would send the user on a wrong chase.

    ``groups``: the same resources by file (a group that is the very same tuple as in the
    last load is known unchanged); with ``incremental`` the checks and the assembly reuse
    what the last load found.
    """
    if incremental is not None and groups is None:
        groups = [("", tuple(resources))]
    if complete:
        found = incremental.checker.check(groups) if incremental is not None else check_references(resources)
        issues.extend(from_origin(issue, origins or {}) for issue in found)
    if issues:
        raise ModelError(clean(issues, max_issues))
    if incremental is not None and complete:  # complete and no issue: no duplicates, which the assembler relies on
        return incremental.assembler.build(groups)
    return build_model(resources)


def clean(issues: list[Issue], max_issues: int | None = None) -> list[Issue]:
    """Issues as one printable line each (names, keys and values the user wrote can hold
    newlines, control or bidi characters, lone surrogates...), at most ``max_issues``."""
    cleaned = [Issue(*(printable(part, 1000) for part in (i.file, i.resource, i.path, i.message))) for i in issues]
    if max_issues is not None and len(set(cleaned)) > max_issues:
        cleaned = sorted(set(cleaned))[:max_issues]
        cleaned.append(Issue(cleaned[-1].file, "", "", f"more than {max_issues:,} problems; stopped checking here (fix these first)"))
    return cleaned


def build_model(resources: Sequence[Resource]) -> MeshModel:
    """Index validated resources into the immutable, name-sorted ``MeshModel``.

    Every router gets an entry in ``Mesh.routes`` (empty when it has no routes).
    """
    grouped: dict[tuple[str, str], dict[str, Resource]] = {}  # (kind, mesh) -> name -> resource
    routes: dict[tuple[str, str], dict[str, Resource]] = {}  # (mesh, router) -> name -> route
    gateway_routes: dict[tuple[str, str], dict[str, Resource]] = {}  # (mesh, gateway) -> name -> route
    cloud_map = {}
    for r in resources:
        if r.kind == "CloudMapService":
            cloud_map[(r.namespaceName, r.name)] = r
        elif r.kind == "Route":
            routes.setdefault((r.mesh, r.virtualRouter), {})[r.name] = r
        elif r.kind == "GatewayRoute":
            gateway_routes.setdefault((r.mesh, r.virtualGateway), {})[r.name] = r
        else:
            grouped.setdefault((r.kind, r.mesh), {})[r.name] = r

    def named(kind: str, mesh: str) -> dict[str, Resource]:
        return grouped.get((kind, mesh), {})

    meshes = {}
    for mesh in (r for r in resources if r.kind == "Mesh"):
        name = mesh.name
        routers = named("VirtualRouter", name)
        gateways = named("VirtualGateway", name)
        meshes[name] = Mesh(
            resource=mesh,
            virtual_services=frozen_map(named("VirtualService", name)),
            virtual_routers=frozen_map(routers),
            routes=frozen_map({router: frozen_map(routes.get((name, router), {})) for router in routers}),
            virtual_nodes=frozen_map(named("VirtualNode", name)),
            virtual_gateways=frozen_map(gateways),
            gateway_routes=frozen_map({gw: frozen_map(gateway_routes.get((name, gw), {})) for gw in gateways}),
        )
    return MeshModel(meshes=frozen_map(meshes), cloud_map=frozen_map(cloud_map))


def combined_model(parts: Iterable[MeshModel]) -> MeshModel:
    """Models loaded apart (a mesh each, the Cloud Map stand-ins), as one model: the same as
    loading their documents together, since no check looks across meshes (a Cloud Map
    service without its stand-in is valid). Each ``Mesh`` object is kept as it is, so what
    did not change keeps its identity for the compiler's caches."""
    meshes: dict[str, Mesh] = {}
    cloud_map: dict = {}
    for part in parts:
        meshes.update(part.meshes)
        cloud_map.update(part.cloud_map)
    return MeshModel(meshes=frozen_map(meshes), cloud_map=frozen_map(cloud_map))


_EMPTY: Mapping = MappingProxyType({})


def _slot(r: Resource) -> tuple[tuple, object]:
    """Where a resource sits in the model: (the mapping's key, its key in that mapping)."""
    if r.kind == "CloudMapService":
        return ("CloudMapService",), (r.namespaceName, r.name)
    if r.kind == "Route":
        return ("Route", r.mesh, r.virtualRouter), r.name
    if r.kind == "GatewayRoute":
        return ("GatewayRoute", r.mesh, r.virtualGateway), r.name
    return (r.kind, r.mesh), r.name


class ModelAssembler:
    """``build_model`` for a model built again and again: the mappings (and ``Mesh``
    objects) that no added or removed resource touches are reused as they are.

    For resources without duplicates (a model that passed its checks has none).
    """

    def __init__(self) -> None:
        self.groups: dict[str, Sequence[Resource]] = {}
        self.items: dict[tuple, dict] = {}  # mapping key -> its items (see _slot)
        self.frozen: dict[tuple, Mapping] = {}  # mapping key -> its read-only sorted mapping
        self.meshes: dict[str, Mesh] = {}
        self.children: dict[tuple[str, str], dict[str, Mapping]] = {}  # ("Route", mesh) -> router -> its routes (as in the model)
        self.model: MeshModel | None = None

    def build(self, groups: Groups) -> MeshModel:
        try:
            return self._build(keyed_groups(groups))
        except BaseException:
            self.__init__()  # a half-updated state must not build the next model
            raise

    def _build(self, groups: dict[str, Sequence[Resource]]) -> MeshModel:
        added, removed = group_changes(self.groups, groups)
        self.groups = groups
        if self.model is not None and not added and not removed:
            return self.model
        dirty: set[tuple] = set()
        for r in removed:
            key, name = _slot(r)
            items = self.items.get(key)
            if items is not None and items.get(name) is r:
                del items[name]
                dirty.add(key)
        for r in pacing.paced(added):
            key, name = _slot(r)
            self.items.setdefault(key, {})[name] = r
            dirty.add(key)
        for key in dirty:
            items = self.items.get(key)
            if items:
                self.frozen[key] = frozen_map(items)
            else:
                self.items.pop(key, None)
                self.frozen.pop(key, None)
        for mesh in {key[1] for key in dirty if len(key) > 1}:
            self._mesh(mesh, dirty)
        self.model = MeshModel(meshes=frozen_map(self.meshes), cloud_map=self.frozen.get(("CloudMapService",)) or frozen_map({}))
        return self.model

    def _mesh(self, name: str, dirty: set[tuple]) -> None:
        resource = self.items.get(("Mesh", name), {}).get(name)
        if resource is None:
            self.meshes.pop(name, None)
            self.children.pop(("Route", name), None)
            self.children.pop(("GatewayRoute", name), None)
            return
        old = self.meshes.get(name)
        frozen = self.frozen

        def mapping(kind: str) -> Mapping:
            return frozen.get((kind, name)) or frozen_map({})

        def children(parent_kind: str, kind: str, field: str) -> Mapping:
            """Routes by router (gateway routes by gateway): every parent has an entry."""
            changed = [key[2] for key in dirty if len(key) == 3 and key[0] == kind and key[1] == name]
            parents_changed = (parent_kind, name) in dirty
            if old is not None and not parents_changed and not changed:
                return getattr(old, field)
            before = self.children.get((kind, name))
            if old is not None and before is not None and not parents_changed:  # the same parents: a copy, a few entries new
                items = dict(before)
                for parent in changed:
                    if parent in items:
                        items[parent] = frozen.get((kind, name, parent)) or frozen_map({})
            else:
                parents = frozen.get((parent_kind, name), _EMPTY)
                items = {parent: frozen.get((kind, name, parent)) or frozen_map({}) for parent in parents}
            self.children[(kind, name)] = items  # never changed once wrapped: the next build copies it
            return MappingProxyType(items)

        self.meshes[name] = Mesh(
            resource=resource,
            virtual_services=mapping("VirtualService"),
            virtual_routers=mapping("VirtualRouter"),
            routes=children("VirtualRouter", "Route", "routes"),
            virtual_nodes=mapping("VirtualNode"),
            virtual_gateways=mapping("VirtualGateway"),
            gateway_routes=children("VirtualGateway", "GatewayRoute", "gateway_routes"),
        )
