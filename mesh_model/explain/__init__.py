"""``explain``: where does this request go? Answered from a node's compiled Envoy config.

Pure (no I/O): it walks what ``mesh_model.compiler.compile_node`` produces, the way Envoy
walks it (listener -> filter chain -> route configuration -> virtual host -> first matching
route -> weighted clusters -> cluster), and names each step in App Mesh words and Envoy names.
"""
from __future__ import annotations

from mesh_model.explain.request import Request, RequestError, from_mapping, grpc_request, http_request, parse_words, tcp_request
from mesh_model.explain.result import Explanation, Hop, RouteCheck, Upstream, render_text
from mesh_model.explain.walk import explain

__all__ = [
    "Explanation", "Hop", "Request", "RequestError", "RouteCheck", "Upstream", "explain", "explain_node", "from_mapping",
    "grpc_request", "http_request", "parse_words", "render_text", "tcp_request",
]


def explain_node(model, node, request: Request, placement=None) -> Explanation:
    """Compile ``node`` (a NodeRef or node id) of ``model`` and explain ``request`` against it."""
    from mesh_model.compiler import Placement, compile_node
    from mesh_model.node_id import parse_node_id

    if isinstance(node, str):
        node = parse_node_id(node)
    resources = compile_node(model, node, placement or Placement())
    return explain(resources, request, node=node, model=model)
