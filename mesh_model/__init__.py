"""meshplane's App Mesh model: load resource files into a validated, immutable MeshModel."""
from .errors import Issue, ModelError
from .loader import load_paths, load_texts
from .node_id import NodeRef, parse_node_id
from .resources import MeshModel

__all__ = ["load_paths", "load_texts", "ModelError", "Issue", "MeshModel", "parse_node_id", "NodeRef"]
