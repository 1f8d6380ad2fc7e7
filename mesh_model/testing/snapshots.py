"""Snapshot files of a node's compiled config (what ``meshplane render --resources`` prints),
read back into protos so a mismatch is shown as a ``meshplane diff``."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mesh_model.compiler import type_urls


def _message_types() -> dict[str, Any]:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import route_pb2
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    return {
        type_urls.CLUSTER: cluster_pb2.Cluster,
        type_urls.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        type_urls.LISTENER: listener_pb2.Listener,
        type_urls.ROUTE: route_pb2.RouteConfiguration,
        type_urls.SECRET: secret_pb2.Secret,
    }


def resources_from_document(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of ``mesh_model.render.resources_document``: type URL -> name -> proto."""
    from google.protobuf import json_format

    out: dict[str, dict[str, Any]] = {}
    for type_url, message_type in _message_types().items():
        items = {}
        for item in document.get(type_urls.PLURAL_NAMES[type_url]) or []:
            message = json_format.ParseDict(item, message_type())
            items[getattr(message, "name", "") or getattr(message, "cluster_name", "")] = message
        out[type_url] = items
    return out


def load_model(model) -> Any:
    """A MeshModel, or model path(s) to load."""
    from mesh_model import load_paths

    if hasattr(model, "meshes"):
        return model
    if isinstance(model, (str, Path)):
        model = [model]
    return load_paths(list(model))


def placement_of(placement) -> Any:
    from mesh_model.compiler import Placement

    if placement is None:
        return Placement()
    if isinstance(placement, Mapping):
        return Placement.from_metadata({"meshplane": dict(placement)})
    return placement


def render_node(model, node_id: str, placement=None) -> tuple[str, dict]:
    """(YAML text, resources) of one node, exactly as ``meshplane render --resources`` prints it."""
    from mesh_model.compiler import compile_node
    from mesh_model.node_id import parse_node_id
    from mesh_model.render import dump_yaml, resources_document

    resources = compile_node(load_model(model), parse_node_id(node_id), placement_of(placement))
    return dump_yaml(resources_document(resources)), resources


DEFAULT_NAME = "{mesh}--{node}--{mode}.yaml"


def snapshot_name(node_id: str, placement=None, template: str = DEFAULT_NAME) -> str:
    """A snapshot's file name: ``template`` with ``{mesh}``, ``{node}`` (the node's name),
    ``{kind}`` (virtualNode, virtualGateway) and ``{mode}`` (explicit, transparent) filled in."""
    from mesh_model.node_id import parse_node_id

    node = parse_node_id(node_id)
    mode = "explicit" if placement_of(placement).explicit else "transparent"
    return template.format(mesh=node.mesh, node=node.name, kind=node.kind, mode=mode)


@dataclass
class SnapshotResult:
    path: Path
    status: str  # match | written | mismatch | missing
    message: str = ""


def compare_snapshot(model, node_id: str, path: Path, *, placement=None, update: bool = False) -> SnapshotResult:
    """Compare a node's compiled config with a snapshot file (or write it when ``update``)."""
    import yaml

    from mesh_model.diff import diff_node

    actual, resources = render_node(model, node_id, placement)
    path = Path(path)
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != actual:
            path.write_text(actual)
            return SnapshotResult(path, "written", f"wrote {path}")
        return SnapshotResult(path, "match")
    if not path.exists():
        return SnapshotResult(path, "missing", f"no snapshot {path} for {node_id}; run pytest --meshplane-update to create it")
    expected = path.read_text()
    if expected == actual:
        return SnapshotResult(path, "match")
    detail = ""
    try:
        old = resources_from_document(yaml.safe_load(expected) or {})
        from mesh_model.node_id import parse_node_id

        result = diff_node(node_id, old, resources, new_model=load_model(model), mesh=parse_node_id(node_id).mesh)
        if result.changed:
            detail = result.text()
    except Exception:  # an unreadable snapshot: fall back to a text diff
        detail = ""
    if not detail:
        detail = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(path), "compiled"))
    return SnapshotResult(path, "mismatch",
                          f"{node_id}: compiled config differs from snapshot {path} (run pytest --meshplane-update to accept):\n{detail}")
