"""Validates => compiles (issue 17): every model the loader accepts can be built for every node.

One accepted write that the compiler cannot turn into protos (a 10^12 s timeout, 2^40
retries, a header range ending at 2^64) froze config delivery for every tenant of the
server. So, over models drawn from the spec shapes themselves (``servable_models``: every
field of every shape, extreme integers first), whatever validates must compile: every
virtual node and gateway, with the default and an explicit placement.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from mesh_model.compiler import CompileCache, Placement, compile_node
from mesh_model.node_id import NodeRef

from tests.unit.servable_models import load_valid, model_documents

PLACEMENTS = [
    Placement(),
    Placement(explicit=True, ingress_address="127.0.0.2", app_address="127.0.0.1", egress_address="127.0.0.3"),
]


def node_refs(model) -> list[NodeRef]:
    refs = []
    for mesh in model.meshes.values():
        refs += [NodeRef(mesh.name, "virtualNode", name) for name in sorted(mesh.virtual_nodes)]
        refs += [NodeRef(mesh.name, "virtualGateway", name) for name in sorted(mesh.virtual_gateways)]
    return refs


def compile_everything(model) -> dict:
    """Every node placement's resources; an exception names the node and placement."""
    cache = CompileCache(model)
    out = {}
    for ref in node_refs(model):
        for placement in PLACEMENTS:
            try:
                out[(ref, placement)] = compile_node(model, ref, placement, cache)
            except Exception as exc:
                raise AssertionError(f"{ref.node_id} ({'explicit' if placement.explicit else 'transparent'}) "
                                     f"validates but does not compile: {type(exc).__name__}: {exc}") from exc
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model_documents())
def test_every_valid_model_compiles(docs):
    model, _ = load_valid(docs)
    if model is not None:
        compile_everything(model)
