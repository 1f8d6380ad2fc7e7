"""The resource envelope and the loaded model: what the compiler reads.

A ``Resource`` is one YAML document after validation: identity (kind, mesh, router, name),
the typed App Mesh ``spec`` and the file it came from (for error messages).
``MeshModel`` is every resource of every loaded mesh, indexed by name, immutable and sorted
so that iteration order (and therefore compiled output) never depends on file order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, Mapping, TypeVar

from pydantic import BaseModel

from mesh_model.spec import kinds

S = TypeVar("S", bound=BaseModel)

KINDS = kinds.NAMES  # the native kinds (``spec/kinds.py``: the one table)


@dataclass(frozen=True)
class Resource(Generic[S]):
    kind: str
    name: str
    spec: S
    mesh: str = ""  # the owning mesh (for kind Mesh: its own name); "" for CloudMapService
    virtualRouter: str = ""  # kind Route only
    virtualGateway: str = ""  # kind GatewayRoute only
    namespaceName: str = ""  # kind CloudMapService only
    file: str = field(default="", compare=False)
    # a content hash of the validated spec (set by the loader): comparing two models'
    # resources is then a string comparison instead of a deep one (see dependencies.changed_keys)
    digest: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """``Kind mesh/name`` as used in error messages (``Route mesh/router/name`` for routes)."""
        if self.kind == "Mesh":
            return f"Mesh {self.name}"
        if self.kind == "Route":
            return f"Route {self.mesh}/{self.virtualRouter}/{self.name}"
        if self.kind == "GatewayRoute":
            return f"GatewayRoute {self.mesh}/{self.virtualGateway}/{self.name}"
        if self.kind == "CloudMapService":
            return f"CloudMapService {self.namespaceName}/{self.name}"
        return f"{self.kind} {self.mesh}/{self.name}"


def frozen_map(items: Mapping) -> Mapping:
    """A read-only mapping with keys in sorted order (deterministic iteration)."""
    return MappingProxyType({k: items[k] for k in sorted(items)})


@dataclass(frozen=True)
class Mesh:
    """One mesh and everything in it. All mappings are read-only and sorted by name."""

    resource: Resource
    virtual_services: Mapping[str, Resource]
    virtual_routers: Mapping[str, Resource]
    routes: Mapping[str, Mapping[str, Resource]]  # router name -> route name -> Route
    virtual_nodes: Mapping[str, Resource]
    virtual_gateways: Mapping[str, Resource] = field(default_factory=lambda: MappingProxyType({}))
    gateway_routes: Mapping[str, Mapping[str, Resource]] = field(default_factory=lambda: MappingProxyType({}))  # gateway -> name -> route

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def spec(self):
        return self.resource.spec


@dataclass(frozen=True)
class MeshModel:
    """Everything loaded: meshes by name, plus Cloud Map stand-in services by (namespace, service)."""

    meshes: Mapping[str, Mesh]
    cloud_map: Mapping[tuple[str, str], Resource] = field(default_factory=lambda: MappingProxyType({}))
