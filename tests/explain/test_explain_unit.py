"""explain's pieces, offline: Envoy's matching rules, request parsing, TCP by port, egress
filter outcomes, explicit placements, TLS, and the route test case checks."""
from __future__ import annotations

import pytest

from mesh_model import load_paths, load_texts
from mesh_model.compiler import Placement
from mesh_model.explain import RequestError, explain_node, grpc_request, http_request, parse_words, tcp_request
from mesh_model.explain.matchers import header_matches, normalize_path, parse_query, select_virtual_host
from mesh_model.testing.cases import check_expectations, parse_seconds
from tests.paths import GOLDEN, REPO

SHOP = REPO / "examples" / "route-tests" / "mesh"
FRONT = "mesh/shop/virtualNode/front"


@pytest.mark.parametrize("raw,normalized", [
    ("/a/../b", "/b"), ("//a///b", "/a/b"), ("/./a/./b/.", "/a/b/"), ("/../../a", "/a"), ("/a/b/..", "/a/"),
    ("/a/..//b?x=/../y", "/b?x=/../y"), ("/", "/"), ("/a\\b", "/a/b"),
])
def test_normalize_path(raw, normalized):
    assert normalize_path(raw) == normalized


def test_query_first_value_undecoded():
    assert parse_query("/p?a=1&a=2&b&c=%20") == {"a": "1", "b": "", "c": "%20"}


def _hm(**body):
    from envoy.config.route.v3 import route_components_pb2
    from google.protobuf import json_format

    return json_format.ParseDict(body, route_components_pb2.HeaderMatcher())


@pytest.mark.parametrize("matcher,headers,expected", [
    ({"name": "x", "string_match": {"exact": "a"}}, {}, False),
    ({"name": "x", "string_match": {"exact": "a"}, "invert_match": True}, {}, False),  # missing + inverted value match: no match
    ({"name": "x", "present_match": True, "invert_match": True}, {}, True),
    ({"name": "x", "present_match": True}, {"x": "v"}, True),
    ({"name": "x", "string_match": {"exact": "a"}, "invert_match": True}, {"x": "b"}, True),
    ({"name": "x", "range_match": {"start": "1", "end": "5"}}, {"x": "5"}, False),
    ({"name": "x", "range_match": {"start": "-5", "end": "5"}}, {"x": "-3"}, True),
    ({"name": "x", "range_match": {"start": "1", "end": "5"}}, {"x": "2.5"}, False),
    ({"name": "x", "string_match": {"safe_regex": {"regex": "a.c"}}}, {"x": "abcd"}, False),
    ({"name": "x", "string_match": {"prefix": "eu-"}}, {"x": ["eu-1", "us"]}, True),  # values joined with ","
    ({"name": ":method", "string_match": {"exact": "POST"}}, {}, None),
])
def test_header_matcher_semantics(matcher, headers, expected):
    request = http_request("http://h/", headers=headers, method="GET")
    assert header_matches(_hm(**matcher), request) is (expected if expected is not None else False)


def test_virtual_host_selection_order():
    from envoy.config.route.v3 import route_components_pb2

    hosts = [route_components_pb2.VirtualHost(name=n, domains=d) for n, d in
             [("any", ["*"]), ("suffix", ["*.example.com"]), ("longer", ["*.api.example.com"]), ("prefix", ["api.*"]), ("exact", ["api.example.com"])]]
    assert select_virtual_host(hosts, "API.example.com")[0].name == "exact"
    assert select_virtual_host(hosts, "v1.api.example.com")[0].name == "longer"
    assert select_virtual_host(hosts, "api.other")[0].name == "prefix"
    assert select_virtual_host(hosts, "elsewhere")[0].name == "any"


def test_parse_words():
    r = parse_words("POST http://catalog.shop.local:8080/a?b=1 -H 'x-beta: yes' -H 'X-Two: 2'")
    assert (r.method, r.host, r.port, r.path, r.headers) == ("POST", "catalog.shop.local:8080", 8080, "/a?b=1", (("x-beta", "yes"), ("x-two", "2")))
    assert parse_words("http://svc").port == 80 and parse_words("https://svc/").port == 443
    g = parse_words(["--grpc", "pkg.Svc/Do", "svc.local:9000", "-H", "k: v"])
    assert (g.protocol, g.method, g.path, g.header("content-type"), g.header("k")) == ("grpc", "POST", "/pkg.Svc/Do", "application/grpc", "v")
    assert tcp_request("db:5432").port == 5432
    with pytest.raises(RequestError):
        parse_words("GET")
    with pytest.raises(RequestError):
        tcp_request("db")


def test_tcp_by_port_and_http_port():
    model = load_paths([GOLDEN / "tcp" / "model"])
    ex = explain_node(model, "mesh/data/virtualNode/app", tcp_request("db.data.local:5432"))
    assert ex.outcome == "tcp" and ex.probabilities == {"db-primary": 0.8, "db-replica": 0.2}
    assert ex.virtual_service == "db.data.local" and ex.final.virtual_router == "db-router"
    assert explain_node(model, "mesh/data/virtualNode/app", tcp_request("elsewhere:6000")).outcome == "http"
    explicit = Placement(explicit=True, ingress_address="127.0.0.4", app_address="127.0.0.5", egress_address="127.0.0.6")
    assert explain_node(model, "mesh/data/virtualNode/app", tcp_request("db.data.local:5432"), explicit).outcome == "tcp"
    refused = explain_node(model, "mesh/data/virtualNode/app", tcp_request("elsewhere:6000"), explicit)
    assert refused.outcome == "no-listener" and "refused" in refused.reason


def test_egress_filter_allow_all_passes_unknown_hosts_through():
    text = (SHOP / "shop.yaml").read_text()
    allow = load_texts([("shop.yaml", text.replace("type: DROP_ALL", "type: ALLOW_ALL"))])
    ex = explain_node(allow, FRONT, parse_words("GET http://api.github.com/"))
    assert ex.outcome == "routed" and ex.targets[0].kind == "passthrough" and ex.targets[0].details["type"] == "ORIGINAL_DST"
    drop = explain_node(load_texts([("shop.yaml", text)]), FRONT, parse_words("GET http://api.github.com/"))
    assert drop.status == 404 and "egress filter is DROP_ALL" in drop.reason
    # the explicit data path has no passthrough: the listener's destination is Envoy itself
    explicit = Placement(explicit=True, ingress_address="127.0.0.4", app_address="127.0.0.5", egress_address="127.0.0.6")
    assert explain_node(allow, FRONT, parse_words("GET http://api.github.com:8080/"), explicit).status == 404


def test_tls_outlier_and_health_details():
    model = load_paths([GOLDEN / "mtls" / "model"])
    ex = explain_node(model, "mesh/secure/virtualNode/client", parse_words("GET http://echo.secure.local:7000/"))
    tls = ex.targets[0].details["tls"]
    assert tls["sni"] == "echo.secure.local"
    assert tls["subject_alt_names"] == ["URI:spiffe://secure/server", "DNS:echo.secure.local", "IP_ADDRESS:10.0.0.7"]
    assert tls["client_certificate"].endswith("client.pem")
    retail = load_paths([GOLDEN / "retail" / "model"])
    ex = explain_node(retail, "mesh/retail/virtualNode/front", parse_words("GET http://catalog.retail.local/"))
    v1 = {t.virtual_node: t.details for t in ex.targets}["catalog-v1"]
    assert v1["outlier_detection"]["consecutive_5xx"] == 5 and v1["health_checks"][0]["path"] == "/health"
    assert v1["tls"] is None and v1["type"] == "STRICT_DNS"


def test_route_order_reasons_and_priorities():
    retail = load_paths([GOLDEN / "retail" / "model"])
    ex = explain_node(retail, "mesh/retail/virtualNode/front",
                      http_request("http://catalog.retail.local:8080/admin?confirm=true", method="POST",
                                   headers={"x-tier": "3", "x-region": "eu-west", "x-env": "a-prod"}))
    assert [(c.name, c.matched) for c in ex.final.checked] == [("beta-testers", False), ("admin", True)]
    assert ex.final.priority == 20 and ex.route == "admin" and ex.timeout == "60s"
    assert ex.final.checked[0].reasons[0] == "header x-beta exact 'yes'; the request's is absent"


def test_grpc_not_found_is_unimplemented():
    ex = explain_node(load_paths([SHOP]), FRONT, grpc_request("pricing.shop.local:9000", "shop.Pricing/Other"))
    assert (ex.status, ex.grpc_status) == (404, 12)
    http = explain_node(load_paths([SHOP]), FRONT, parse_words("POST http://pricing.shop.local:9000/shop.Pricing/Quote"))
    assert http.status == 404 and "only gRPC requests" in " ".join(http.final.checked[0].reasons)


def test_expectations():
    ex = explain_node(load_paths([SHOP]), FRONT, parse_words("GET http://catalog.shop.local:8080/"))
    assert check_expectations(ex, {"targets": {"catalog-v1": 9, "catalog-v2": 1}, "retries": 3, "timeout": "5000ms", "status": 200}) == []
    failures = check_expectations(ex, {"target": "catalog-v1", "timeout": "15s", "route": "beta"})
    assert [f.split(":")[0] for f in failures] == ["target", "route", "timeout"]
    assert parse_seconds("1.5m") == 90 and parse_seconds("250ms") == 0.25
