"""Envoy ``node.id`` <-> App Mesh resource identity.

App Mesh sidecars announce ``APPMESH_RESOURCE_ARN`` as their node id, either the short
form ``mesh/<mesh>/virtualNode/<name>`` or the full ARN
``arn:aws:appmesh:<region>:<account>:mesh/<mesh>/virtualNode/<name>``; shared meshes use
``<mesh>@<ownerAccount>``. meshplane accepts all of them so stock bootstraps keep working.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

NodeKind = Literal["virtualNode", "virtualGateway"]

_SHORT = re.compile(r"^mesh/(?P<mesh>[^/@]+)(?:@(?P<owner>\d{12}))?/(?P<kind>virtualNode|virtualGateway)/(?P<name>[^/]+)$")
_ARN_PREFIX = re.compile(r"^arn:aws[a-zA-Z-]*:appmesh(?:-preview)?:[^:]*:[^:]*:")


@dataclass(frozen=True, order=True)
class NodeRef:
    """Which App Mesh resource an Envoy speaks for."""

    mesh: str
    kind: NodeKind
    name: str

    @property
    def node_id(self) -> str:
        """The canonical (short) node id."""
        return f"mesh/{self.mesh}/{self.kind}/{self.name}"

    def __str__(self) -> str:
        return self.node_id


def parse_node_id(node_id: str) -> NodeRef:
    """Parse a node id in short or ARN form; ``ValueError`` with a readable reason otherwise."""
    text = _ARN_PREFIX.sub("", node_id.strip(), count=1)
    match = _SHORT.match(text)
    if not match:
        raise ValueError(
            f"node id {node_id!r} is not of the form mesh/<mesh>/virtualNode/<name> "
            "(or mesh/<mesh>/virtualGateway/<name>, or the App Mesh ARN of one)"
        )
    return NodeRef(mesh=match["mesh"], kind=match["kind"], name=match["name"])  # type: ignore[arg-type]
