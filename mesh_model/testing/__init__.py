"""Testing a mesh like code: route test cases, snapshot files of compiled config, and the
pytest plugin (``mesh_model.testing.pytest_plugin``, installed as a ``pytest11`` entry point)."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["assert_route_cases", "explain_request", "run_route_cases"]


def explain_request(model, node_id: str, request, placement=None):
    """Explain one request (a Request, a mapping as in a case file, or command-line words such as
    ``"GET http://catalog.shop.local:8080/ -H 'x-beta: yes'"``) for a node of ``model`` (a
    MeshModel or model paths)."""
    from mesh_model.explain import Request, explain_node, from_mapping, parse_words
    from mesh_model.testing.snapshots import load_model, placement_of

    if isinstance(request, str) or isinstance(request, (list, tuple)):
        request = parse_words(request)
    elif not isinstance(request, Request):
        request = from_mapping(request)
    return explain_node(load_model(model), node_id, request, placement_of(placement))


def run_route_cases(case_file, paths: Sequence[Any] = ()):
    """Run a route test case file (see ``mesh_model.testing.cases``); returns the CaseResults."""
    from mesh_model.testing.cases import run_case_file

    return run_case_file(case_file, paths)


def assert_route_cases(case_file, paths: Sequence[Any] = ()) -> None:
    """Fail (AssertionError) with every failing case and its explanation."""
    from mesh_model.testing.cases import summary

    results = run_route_cases(case_file, paths)
    failed = [r for r in results if not r.passed]
    if failed:
        raise AssertionError(f"{case_file}: {summary(results)}\n" + "\n".join(r.report() for r in failed))
