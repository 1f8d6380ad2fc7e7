"""The one table of resource kinds: App Mesh's seven and meshplane's Cloud Map stand-in.

Every other spelling of a kind derives from a row here: the loader's kinds, the store's, the
App Mesh API's operations and payload members, ARNs, the CLI nouns of ``describe`` output,
the Kubernetes CRDs, the CloudFormation and Terraform resource types. A new kind (the
policies to come) is one row, plus its spec shape in ``shapes``.

Rows are in creation order (a parent before its children, a service's targets after it is
defined), which is also the order every "known kinds" message lists them in.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # "VirtualNode": the native document's kind, the CRD kind, AWS::AppMesh::<name>, <Verb><name>
    member: str  # "virtualNode": the API's payload member and ARN segment, the describe output key
    list_member: str  # "virtualNodes": the List operation's output member
    cli_noun: str  # "virtual-node": the AWS CLI's noun (aws appmesh describe-virtual-node)
    parent: str = ""  # "VirtualRouter" for Route: the kind this one lives under, inside its mesh
    app_mesh: bool = True  # False: meshplane's own (no App Mesh operation, CRD or stack type)
    crd: bool = True  # an appmesh.k8s.aws custom resource kind of the controller

    @property
    def name_param(self) -> str:
        """The API's name parameter: ``virtualNodeName``."""
        return f"{self.member}Name"

    @property
    def terraform_type(self) -> str:
        """``aws_appmesh_virtual_node`` ("" when Terraform has none)."""
        return "aws_appmesh_" + self.cli_noun.replace("-", "_") if self.app_mesh else ""


ALL: tuple[Kind, ...] = (
    Kind("Mesh", "mesh", "meshes", "mesh"),
    Kind("VirtualService", "virtualService", "virtualServices", "virtual-service"),
    Kind("VirtualRouter", "virtualRouter", "virtualRouters", "virtual-router"),
    Kind("Route", "route", "routes", "route", parent="VirtualRouter", crd=False),  # a CRD router's spec.routes
    Kind("VirtualNode", "virtualNode", "virtualNodes", "virtual-node"),
    Kind("VirtualGateway", "virtualGateway", "virtualGateways", "virtual-gateway"),
    Kind("GatewayRoute", "gatewayRoute", "gatewayRoutes", "gateway-route", parent="VirtualGateway"),
    Kind("CloudMapService", "cloudMapService", "cloudMapServices", "cloud-map-service", app_mesh=False, crd=False),
)
BY_NAME: dict[str, Kind] = {kind.name: kind for kind in ALL}
NAMES: tuple[str, ...] = tuple(kind.name for kind in ALL)
APP_MESH: tuple[Kind, ...] = tuple(kind for kind in ALL if kind.app_mesh)
CRDS: tuple[Kind, ...] = tuple(kind for kind in ALL if kind.crd)


def parent_of(kind: Kind) -> Kind | None:
    """The kind ``kind`` lives under (``VirtualRouter`` for ``Route``), or ``None``."""
    return BY_NAME[kind.parent] if kind.parent else None
