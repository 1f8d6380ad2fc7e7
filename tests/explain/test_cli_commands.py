"""`meshplane explain`, `meshplane test` and `meshplane diff` on the route-tests example:
output, exit codes, JUnit XML, and that none of them loads grpc or the server."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.paths import REPO
from xds_server.cli import main

EXAMPLE = REPO / "examples" / "route-tests"
MESH = EXAMPLE / "mesh"
FRONT = "mesh/shop/virtualNode/front"


def test_explain_text(capsys):
    assert main(["explain", str(MESH), "--node", FRONT, "GET", "http://catalog.shop.local:8080/items?x=1", "-H", "x-beta: yes"]) == 0
    out = capsys.readouterr().out
    assert "MATCH  Route catalog-router/beta (priority 10)  [envoy route beta]" in out
    assert "100%  VirtualNode catalog-v2  [cluster cds_egress_shop_catalog-v2_http_8080, weight 1]" in out
    assert "TLS origination: none" in out and out.rstrip().endswith("=> routed: routed to catalog-v2 (100%)")


def test_explain_json_request_before_node(capsys):
    assert main(["explain", str(MESH), "GET", "http://catalog.shop.local:8080/", "--node", FRONT, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["route"] == "main"
    assert data["summary"]["targets"] == {"catalog-v1": 0.9, "catalog-v2": 0.1}
    assert data["summary"]["retries"] == 3 and data["summary"]["timeout"] == "5s"
    assert data["hops"][0]["checked"][0]["reasons"] == ["header x-beta exact 'yes'; the request's is absent"]


def test_explain_grpc_and_not_found(capsys):
    assert main(["explain", str(MESH), "--node", FRONT, "--grpc", "shop.Pricing/Refund", "pricing.shop.local:9000"]) == 0
    assert "=> not-found 404 (gRPC status 12)" in capsys.readouterr().out
    assert main(["explain", str(MESH), "--node", FRONT, "GET", "http://api.github.com/"]) == 0
    out = capsys.readouterr().out
    assert "not a backend of front and the mesh's egress filter is DROP_ALL" in out


def test_explain_gateway(capsys):
    assert main(["explain", str(MESH), "--node", "mesh/shop/virtualGateway/gateway", "GET", "http://shop.example.com:8088/catalog/items", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["gateway_route"] == "catalog" and summary["route"] == "main"
    assert summary["rewritten_path"] == "/items" and summary["rewritten_host"] == "catalog.shop.local"


def test_route_tests_pass(capsys):
    assert main(["test", str(EXAMPLE / "cases.yaml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("PASS  ") == 7 and "7 passed, 0 failed" in captured.err


def test_route_tests_fail_with_explanations_and_junit(tmp_path, capsys):
    report = tmp_path / "junit.xml"
    assert main(["test", str(EXAMPLE / "failing-cases.yaml"), str(MESH), "--junit", str(report), "-q"]) == 1
    captured = capsys.readouterr()
    assert "1 passed, 3 failed" in captured.err
    assert captured.out.count("FAIL  ") == 3 and "PASS  " not in captured.out
    assert "retries: expected 2, got 3" in captured.out and "MATCH  Route catalog-router/main (priority 100)" in captured.out
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "3", "0")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["passes (to show mixed results)"].find("failure") is None
    failure = cases["wrong split and retries"].find("failure")
    assert "targets: expected catalog-v1 50%, catalog-v2 50%, got catalog-v1 90%, catalog-v2 10%" in failure.get("message")
    assert "MATCH  Route catalog-router/main" in failure.text
    assert main(["test", str(EXAMPLE / "cases.yaml"), "--junit", str(report)]) == 0
    assert ET.parse(report).getroot().find("testsuite").get("failures") == "0"


def test_route_test_errors(tmp_path, capsys):
    bad = tmp_path / "cases.yaml"
    bad.write_text(f"model: {MESH}\ncases:\n  - name: no node\n    request: GET http://x/\n    expect: {{status: 404}}\n"
                   f"  - name: bad expectation\n    node: {FRONT}\n    request: GET http://x/\n    expect: {{colour: red}}\n")
    report = tmp_path / "junit.xml"
    assert main(["test", str(bad), "--junit", str(report)]) == 1
    out = capsys.readouterr().out
    assert "error: no node" in out and "unknown expectation(s) ['colour']" in out
    assert ET.parse(report).getroot().find("testsuite").get("errors") == "1"
    (tmp_path / "notcases.yaml").write_text("- 1\n")
    assert main(["test", str(tmp_path / "notcases.yaml"), str(MESH)]) == 1


@pytest.fixture
def edited(tmp_path) -> Path:
    new = tmp_path / "new"
    new.mkdir()
    text = (MESH / "shop.yaml").read_text()
    (new / "shop.yaml").write_text(text.replace("catalog-v1, weight: 90}", "catalog-v1, weight: 50}")
                                   .replace("catalog-v2, weight: 10}", "catalog-v2, weight: 50}"))
    return new


def test_diff_exit_codes_and_summary(edited, tmp_path, capsys):
    assert main(["diff", str(MESH), str(MESH)]) == 0
    assert capsys.readouterr().out == "no changes\n"
    assert main(["diff", str(MESH), str(edited), "--summary"]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "mesh/shop/virtualGateway/gateway: route catalog-router/main: catalog-v1 90% -> 50%, catalog-v2 10% -> 50%",
        "mesh/shop/virtualNode/front: route catalog-router/main: catalog-v1 90% -> 50%, catalog-v2 10% -> 50%",
    ]
    assert main(["diff", str(MESH / "shop.yaml"), str(edited / "shop.yaml"), "--node", FRONT]) == 2
    out = capsys.readouterr().out
    assert "virtualGateway" not in out
    assert "routes[main].route.weighted_clusters.clusters[cds_egress_shop_catalog-v2_http_8080].weight: 10 -> 50" in out
    assert main(["diff", str(MESH), str(edited), "--node", "mesh/shop/virtualNode/pricing"]) == 0
    assert main(["diff", str(MESH), str(edited), "--json"]) == 2
    data = json.loads(capsys.readouterr().out.split("no changes\n")[-1])
    assert data["changed"] and [n["node"] for n in data["nodes"]] == ["mesh/shop/virtualGateway/gateway", FRONT]
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Route\nmesh: nowhere\nname: x\n")
    assert main(["diff", str(MESH), str(broken)]) == 1
    assert main(["diff", str(MESH), str(tmp_path / "missing")]) == 1


def test_commands_load_neither_grpc_nor_the_server(edited):
    script = (
        "import sys, io, contextlib\n"
        "from xds_server.cli import main\n"
        f"m, front, ex = {str(MESH)!r}, {FRONT!r}, {str(EXAMPLE)!r}\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert main(['explain', m, '--node', front, '--grpc', 'shop.Pricing/Quote', 'pricing.shop.local:9000']) == 0\n"
        "    assert main(['test', ex + '/cases.yaml']) == 0\n"
        f"    assert main(['diff', m, {str(edited)!r}]) == 2\n"
        "bad = sorted(n for n in sys.modules if n == 'grpc' or n.startswith(('grpc.', 'xds_server.server', 'xds_server.serve')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=60)
