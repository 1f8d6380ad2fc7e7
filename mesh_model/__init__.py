"""meshplane's App Mesh model: load resource files into a validated, immutable MeshModel."""
from mesh_model.errors import Issue, ModelError
from mesh_model.load.pipeline import load_paths, load_texts
from mesh_model.node_id import NodeRef, parse_node_id
from mesh_model.spec.model import MeshModel

__all__ = ["load_paths", "load_texts", "ModelError", "Issue", "MeshModel", "parse_node_id", "NodeRef"]
