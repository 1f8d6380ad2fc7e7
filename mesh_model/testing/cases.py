"""Route test cases: requests and what must happen to them, checked offline with ``explain``.

A case file (YAML)::

    model: ../mesh                      # optional: model folder(s)/file(s), relative to this file
    node: mesh/shop/virtualNode/front   # default node of the cases
    placement: {mode: transparent}      # optional, as in node metadata (default transparent)
    cases:
      - name: beta testers reach v2
        request: GET http://catalog.shop.local:8080/ -H 'x-beta: yes'
        expect: {target: catalog-v2, route: beta, retries: 2, timeout: 15s}
      - name: canary split
        request: {url: http://catalog.shop.local:8080/, method: GET, headers: {x-user: bob}}
        expect: {targets: {catalog-v1: 90, catalog-v2: 10}}
      - name: unknown hosts are refused
        request: GET http://unknown.example.com/
        expect: {status: 404}
      - name: gRPC
        request: {grpc: color.ColorService/GetColor, host: color.shop.local:8080, metadata: {x-canary: "yes"}}
        expect: {target: color-v2}
      - name: gateway rewrite
        node: mesh/shop/virtualGateway/gw
        request: GET http://shop.example.com:8088/catalog/items
        expect: {gateway_route: catalog, target: catalog-v1, rewritten_path: /items}

Expectations: ``target``, ``targets`` (weights, compared as proportions), ``status`` (200 means
routed; 404 ...), ``outcome``, ``route``, ``gateway_route``, ``virtual_service``, ``retries``,
``timeout``, ``rewritten_path``, ``rewritten_host``, ``grpc_status``.
"""
from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import yaml

from mesh_model.explain import Explanation, RequestError, explain, from_mapping, parse_words

EXPECTATIONS = ("target", "targets", "status", "outcome", "route", "gateway_route", "virtual_service", "retries", "timeout",
                "rewritten_path", "rewritten_host", "grpc_status")


class CaseFileError(ValueError):
    """The case file cannot be read."""


@dataclass
class CaseResult:
    name: str
    node: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    explanation: Optional[Explanation] = None
    seconds: float = 0.0
    error: Optional[str] = None  # the case itself is broken (bad request, unknown node)

    def report(self) -> str:
        head = f"{'PASS' if self.passed else 'FAIL'}  {self.name}  ({self.node})"
        if self.passed:
            return head
        lines = [head]
        if self.error:
            lines.append(f"    error: {self.error}")
        lines.extend(f"    - {f}" for f in self.failures)
        if self.explanation is not None:
            lines.append("    explanation:")
            lines.extend("      " + line if line else "" for line in self.explanation.text().splitlines())
        return "\n".join(lines)


def parse_seconds(value: Any) -> Optional[float]:
    """``15s``, ``1500ms``, ``2m``, ``1h``, ``0.250s`` or a number of seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", str(value))
    if m is None:
        raise CaseFileError(f"not a duration: {value!r} (use e.g. 15s, 500ms, 2m)")
    number, unit = float(m[1]), m[2] or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def upstream_path(ex: Explanation) -> Optional[str]:
    """The path the upstream app receives (after every rewrite)."""
    final = ex.final
    if final is None:
        return None
    return final.rewrite.get("path", final.request.get("path"))


def upstream_host(ex: Explanation) -> Optional[str]:
    final = ex.final
    if final is None:
        return None
    return final.rewrite.get("host", final.request.get("host"))


def check_expectations(ex: Explanation, expect: Mapping[str, Any]) -> list[str]:
    """Every expectation ``ex`` does not meet, as a sentence."""
    failures = []
    unknown = sorted(set(expect) - set(EXPECTATIONS))
    if unknown:
        failures.append(f"unknown expectation(s) {unknown}; known: {', '.join(EXPECTATIONS)}")
    probabilities = ex.probabilities
    shown = ", ".join(f"{k} {v * 100:g}%" for k, v in probabilities.items()) or "none"
    if "target" in expect:
        if ex.outcome not in ("routed", "tcp") or set(probabilities) != {str(expect["target"])}:
            failures.append(f"target: expected {expect['target']}, got {shown} ({ex.outcome}: {ex.reason})")
    if "targets" in expect:
        wanted = {str(k): float(v) for k, v in (expect["targets"] or {}).items()}
        total = sum(wanted.values())
        wanted_p = {k: v / total for k, v in wanted.items() if v > 0} if total else {}
        if set(wanted_p) != set(probabilities) or any(abs(wanted_p[k] - probabilities[k]) > 1e-9 for k in wanted_p):
            pretty = ", ".join(f"{k} {v * 100:g}%" for k, v in wanted_p.items())
            failures.append(f"targets: expected {pretty}, got {shown}")
    if "status" in expect:
        actual = 200 if ex.outcome in ("routed", "tcp") else ex.status
        if int(expect["status"]) != actual:
            failures.append(f"status: expected {expect['status']}, got {actual} ({ex.outcome}: {ex.reason})")
    simple = {
        "outcome": ex.outcome, "route": ex.route, "gateway_route": ex.gateway_route, "virtual_service": ex.virtual_service,
        "grpc_status": ex.grpc_status,
    }
    for key, actual in simple.items():
        if key in expect and expect[key] != actual:
            failures.append(f"{key}: expected {expect[key]!r}, got {actual!r}")
    if "retries" in expect and int(expect["retries"]) != ex.retries:
        failures.append(f"retries: expected {expect['retries']}, got {ex.retries}")
    if "timeout" in expect:
        want = parse_seconds(expect["timeout"])
        got = parse_seconds(ex.timeout) if ex.timeout else None
        if got is None or abs(want - got) > 1e-9:
            failures.append(f"timeout: expected {expect['timeout']}, got {ex.timeout}")
    if "rewritten_path" in expect and expect["rewritten_path"] != upstream_path(ex):
        failures.append(f"rewritten_path: expected {expect['rewritten_path']!r}, the upstream gets {upstream_path(ex)!r}")
    if "rewritten_host" in expect and expect["rewritten_host"] != upstream_host(ex):
        failures.append(f"rewritten_host: expected {expect['rewritten_host']!r}, the upstream gets {upstream_host(ex)!r}")
    return failures


def _request_of(case: Mapping[str, Any]):
    request = case.get("request")
    if request is None:
        raise RequestError("the case has no request")
    if isinstance(request, str):
        return parse_words(request)
    if isinstance(request, Mapping):
        return from_mapping(request)
    raise RequestError(f"request must be a string or a mapping, got {type(request).__name__}")


def load_case_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CaseFileError(f"{path}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list):
        raise CaseFileError(f"{path}: expected a mapping with a list 'cases'")
    return dict(data)


def model_paths_of(case_file: str | Path, data: Mapping[str, Any]) -> list[Path]:
    model = data.get("model")
    if model is None:
        return []
    items = model if isinstance(model, list) else [model]
    base = Path(case_file).parent
    return [base / str(p) for p in items]


def run_cases(data: Mapping[str, Any], model, *, name_prefix: str = "") -> list[CaseResult]:
    """Run every case of a loaded case file against ``model`` (a MeshModel). Pure."""
    from mesh_model.compiler import CompileCache, CompileError, Placement, compile_node
    from mesh_model.node_id import parse_node_id

    placement = Placement.from_metadata({"meshplane": data.get("placement") or {}})
    cache = CompileCache(model)
    compiled: dict[str, Any] = {}
    results = []
    for index, case in enumerate(data["cases"]):
        started = time.perf_counter()
        case = case if isinstance(case, Mapping) else {}
        name = name_prefix + str(case.get("name") or f"case {index + 1}")
        node_id = str(case.get("node") or data.get("node") or "")
        result = CaseResult(name=name, node=node_id, passed=False)
        try:
            if not node_id:
                raise ValueError("no node: give node: in the case or at the top of the file")
            node = parse_node_id(node_id)
            if node.node_id not in compiled:
                compiled[node.node_id] = compile_node(model, node, placement, cache)
            request = _request_of(case)
            ex = explain(compiled[node.node_id], request, node=node, model=model)
            result.explanation = ex
            expect = case.get("expect")
            if not isinstance(expect, Mapping) or not expect:
                raise ValueError("the case has no expect: mapping")
            result.failures = check_expectations(ex, expect)
            result.passed = not result.failures
        except (ValueError, CompileError) as exc:
            result.error = str(exc)
        result.seconds = time.perf_counter() - started
        results.append(result)
    return results


def run_case_file(case_file: str | Path, paths: Sequence[str | Path] = ()) -> list[CaseResult]:
    """Load a case file and its model (``paths``, else the file's ``model:``) and run it."""
    from mesh_model import load_paths

    data = load_case_file(case_file)
    model_paths = list(paths) or model_paths_of(case_file, data)
    if not model_paths:
        raise CaseFileError(f"{case_file}: no model: give PATH arguments or 'model:' in the file")
    return run_cases(data, load_paths(model_paths))


def summary(results: Sequence[CaseResult]) -> str:
    failed = [r for r in results if not r.passed]
    return f"{len(results) - len(failed)} passed, {len(failed)} failed"


def junit_xml(results: Iterable[CaseResult], suite: str = "meshplane route tests") -> str:
    results = list(results)
    failures = sum(1 for r in results if not r.passed and not r.error)
    errors = sum(1 for r in results if r.error)
    root = ET.Element("testsuites")
    element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures), errors=str(errors),
                            time=f"{sum(r.seconds for r in results):.6f}")
    for r in results:
        case = ET.SubElement(element, "testcase", classname=suite, name=r.name, time=f"{r.seconds:.6f}")
        if r.error:
            node = ET.SubElement(case, "error", message=r.error)
            node.text = r.report()
        elif not r.passed:
            node = ET.SubElement(case, "failure", message="; ".join(r.failures))
            node.text = r.report()
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
