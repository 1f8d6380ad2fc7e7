"""Validated resources -> the immutable ``MeshModel``, after the checks between resources.

Loading is all-or-nothing: every problem of every file is collected and raised as one
``ModelError``, so a user fixes everything in one pass and a half-valid model never
reaches the compiler (or replaces a good one in the file watcher).
"""
from __future__ import annotations

from typing import Sequence

from mesh_model.errors import Issue, ModelError
from mesh_model.load.formats import Origins, from_origin
from mesh_model.spec.model import Mesh, MeshModel, Resource, frozen_map
from mesh_model.spec.pydantic_errors import printable
from mesh_model.validate.references import check_references


def checked_model(resources: list[Resource], issues: list[Issue], *, complete: bool, max_issues: int,
                  origins: Origins | None = None) -> MeshModel:
    """Cross-check the resources, then build the model; raise every issue found instead.

    Cross-resource checks (references, duplicates) run only when every document could be
    identified (``complete``): a file with a syntax error may hide the very resource a
    reference names, and reporting that as "not found" would send the user on a wrong chase.
    """
    if complete:
        issues.extend(from_origin(issue, origins or {}) for issue in check_references(resources))
    if issues:
        raise ModelError(clean(issues, max_issues))
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
