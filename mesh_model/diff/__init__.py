"""``diff``: what a model change does to each node's Envoy config. Pure (no I/O).

``diff_models(old, new)`` compiles every node of both models and returns, per affected node,
the resources added, removed and changed (field by field, in Envoy terms) and a one-line
summary in App Mesh words (``route catalog-router/main: catalog-v2 10% -> 50%``).
"""
from mesh_model.diff.fields import field_diff
from mesh_model.diff.nodes import (
    NodeDiff, ResourceChange, diff_models, diff_node, diff_packed, diff_resources, node_ids, render_text, summary_names,
)

__all__ = ["NodeDiff", "ResourceChange", "diff_models", "diff_node", "diff_packed", "diff_resources", "field_diff", "node_ids", "render_text", "summary_names"]
