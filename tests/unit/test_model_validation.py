"""Every class of invalid input is reported precisely: file, resource, field path, message."""
from __future__ import annotations

import textwrap

import pytest

from mesh_model import Issue, ModelError, load_paths, load_texts
from mesh_model.spec.shapes import CloudMapServiceSpec, GatewayRouteSpec, VirtualGatewaySpec

from tests.unit.test_model_loader import MESH, NODES

BASE = [("mesh.yaml", MESH), ("nodes.yaml", NODES)]


def errors(*texts: tuple[str, str], base: bool = True) -> list[str]:
    """Load ``texts`` (plus the valid base mesh) and return every issue as a string."""
    with pytest.raises(ModelError) as err:
        load_texts((BASE if base else []) + [(label, textwrap.dedent(text)) for label, text in texts])
    lines = str(err.value).splitlines()
    assert len(lines) == len(err.value.issues)  # one line per issue
    return lines


def spec_errors(kind: str, spec: str, name: str = "x", extra: str = "") -> list[str]:
    """Issues of one extra resource of ``kind`` with the given (YAML) spec."""
    envelope = {"Route": "mesh: shop\nvirtualRouter: catalog-router\n", "CloudMapService": "namespaceName: ns\n"}.get(kind, "mesh: shop\n")
    text = f"kind: {kind}\n{envelope}name: {name}\n{extra}spec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
    return errors(("extra.yaml", text))


ROUTE = """
httpRoute:
  match: {prefix: /}
  action:
    weightedTargets:
      - {virtualNode: catalog-v1, weight: %s}
"""

NODE = """
listeners:
  - portMapping: {port: 8080, protocol: http}
%s
serviceDiscovery: {dns: {hostname: h}}
"""


# ---------------------------------------------------------------- field-level


def test_out_of_range_has_exact_message():
    assert errors(("mesh.yaml", MESH.replace("weight: 90", "weight: 150")), ("nodes.yaml", NODES), base=False) == [
        "mesh.yaml: Route shop/catalog-router/main: spec.httpRoute.action.weightedTargets[0].weight: must be <= 100"
    ]


def test_all_zero_weights_rejected():
    text = MESH.replace("weight: 90", "weight: 0").replace("weight: 10", "weight: 0")
    assert errors(("mesh.yaml", text), ("nodes.yaml", NODES), base=False) == [
        "mesh.yaml: Route shop/catalog-router/main: spec.httpRoute.action.weightedTargets: at least one target must have a weight above 0"
    ]


def test_issue_fields():
    with pytest.raises(ModelError) as err:
        load_texts([("mesh.yaml", MESH.replace("weight: 90", "weight: -1")), ("nodes.yaml", NODES)])
    assert err.value.issues == (
        Issue("mesh.yaml", "Route shop/catalog-router/main", "spec.httpRoute.action.weightedTargets[0].weight", "must be >= 0"),
    )


def test_unknown_field_suggests_the_right_one():
    out = spec_errors("VirtualNode", NODE % "    connectionPol: {http: {maxConnections: 1}}")
    assert out == ["extra.yaml: VirtualNode shop/x: spec.listeners[0]: unknown field 'connectionPol' (did you mean 'connectionPool'?)"]


def test_unknown_top_level_field():
    out = errors(("extra.yaml", "kind: Mesh\nname: m2\nspecs: {}\n"))
    assert out == ["extra.yaml: Mesh m2: unknown field 'specs' (allowed: kind, name, spec)"]


def test_wrong_type_string_for_integer():
    out = spec_errors("VirtualRouter", "listeners:\n  - portMapping: {port: '8080', protocol: http}\n")
    assert out == ["extra.yaml: VirtualRouter shop/x: spec.listeners[0].portMapping.port: expected an integer, got string '8080'"]


def test_wrong_type_object_and_list():
    out = spec_errors("VirtualNode", "listeners: {portMapping: {port: 1, protocol: http}}\nserviceDiscovery: dns\n")
    assert out == [
        "extra.yaml: VirtualNode shop/x: spec.listeners: expected a list, got a mapping",
        "extra.yaml: VirtualNode shop/x: spec.serviceDiscovery: expected a mapping, got string 'dns'",
    ]


def test_required_field_missing():
    out = spec_errors("VirtualRouter", "listeners:\n  - portMapping: {port: 8080}\n")
    assert out == ["extra.yaml: VirtualRouter shop/x: spec.listeners[0].portMapping.protocol: required field missing"]


def test_enum_lists_allowed_values():
    out = spec_errors("Route", "httpRoute:\n  match: {prefix: /, method: FETCH}\n  action: {weightedTargets: [{virtualNode: catalog-v1, weight: 1}]}\n")
    assert out == ["extra.yaml: Route shop/catalog-router/x: spec.httpRoute.match.method: "
                   "must be one of: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH (got 'FETCH')"]


def test_list_size_and_string_length_limits():
    targets = "".join("    - {virtualNode: catalog-v1, weight: 1}\n" for _ in range(11))
    out = spec_errors("Route", f"httpRoute:\n  match: {{prefix: /}}\n  action:\n   weightedTargets:\n{targets}")
    assert out == ["extra.yaml: Route shop/catalog-router/x: spec.httpRoute.action.weightedTargets: must have at most 10 items (got 11)"]
    out = spec_errors("Route", "httpRoute:\n  match: {prefix: /}\n  action: {weightedTargets: []}\n")
    assert out == ["extra.yaml: Route shop/catalog-router/x: spec.httpRoute.action.weightedTargets: must have at least 1 item"]
    out = spec_errors("VirtualService", "provider: {virtualNode: {virtualNodeName: ''}}\n")
    assert out == ["extra.yaml: VirtualService shop/x: spec.provider.virtualNode.virtualNodeName: must not be empty"]


def test_health_check_ranges():
    hc = "    healthCheck: {protocol: http, healthyThreshold: 1, unhealthyThreshold: 11, intervalMillis: 4999, timeoutMillis: 60001}"
    out = spec_errors("VirtualNode", NODE % hc)
    prefix = "extra.yaml: VirtualNode shop/x: spec.listeners[0].healthCheck."
    assert out == [prefix + "healthyThreshold: must be >= 2", prefix + "intervalMillis: must be >= 5000",
                   prefix + "timeoutMillis: must be <= 60000", prefix + "unhealthyThreshold: must be <= 10"]


def test_duration_needs_unit_and_value():
    out = spec_errors("Route", ROUTE % 1 + "  timeout: {perRequest: {value: 5}, idle: {unit: m, value: 1}}\n")
    assert out == [
        "extra.yaml: Route shop/catalog-router/x: spec.httpRoute.timeout.idle.unit: must be one of: s, ms (got 'm')",
        "extra.yaml: Route shop/catalog-router/x: spec.httpRoute.timeout.perRequest.unit: required field missing",
    ]


# ---------------------------------------------------------------- unions and App Mesh / CRD rules


def test_union_with_two_members():
    out = spec_errors("Route", ROUTE.replace("{prefix: /}", "{prefix: /, headers: [{name: a, match: {exact: x, prefix: y}}]}") % 1)
    assert out == ["extra.yaml: Route shop/catalog-router/x: spec.httpRoute.match.headers[0].match: "
                   "exactly one of exact, prefix, suffix, regex, range must be set"]


def test_union_with_no_member():
    out = spec_errors("VirtualNode", "serviceDiscovery: {}\n")
    assert out == ["extra.yaml: VirtualNode shop/x: spec.serviceDiscovery: exactly one of awsCloudMap, dns must be set"]


def test_route_needs_exactly_one_route_type():
    out = spec_errors("Route", "priority: 1\n")
    assert out == ["extra.yaml: Route shop/catalog-router/x: spec: exactly one of httpRoute, http2Route, grpcRoute, tcpRoute must be set"]


def test_http_match_rules():
    route = "http2Route:\n  match: %s\n  action: {weightedTargets: [{virtualNode: catalog-v1, weight: 1}]}\n"
    at = "extra.yaml: Route shop/catalog-router/x: spec.http2Route.match"
    # App Mesh's API takes a match without prefix or path (it matches every path, tests/unit/test_webhook_rules.py);
    # both is contradictory
    assert spec_errors("Route", route % "{prefix: /, path: {exact: /a}}") == [f"{at}: at most one of prefix, path may be set"]
    assert spec_errors("Route", route % "{prefix: api}") == [f"{at}.prefix: must start with '/'"]
    assert spec_errors("Route", route % "{path: {exact: /a, regex: /b}}") == [f"{at}.path: exactly one of exact, regex must be set"]
    range_match = "{prefix: /, headers: [{name: a, match: {range: {start: 5, end: 5}}}]}"
    assert spec_errors("Route", route % range_match) == [f"{at}.headers[0].match.range.end: must be greater than start (5)"]


def test_grpc_method_requires_service_and_retry_events_are_checked():
    route = ("grpcRoute:\n  match: {methodName: Get}\n  action: {weightedTargets: [{virtualNode: catalog-v1, weight: 1}]}\n"
             "  retryPolicy: {maxRetries: 1, perRetryTimeout: {unit: s, value: 1}, httpRetryEvents: [server-error, 5xx]}\n")
    assert spec_errors("Route", route) == [
        "extra.yaml: Route shop/catalog-router/x: spec.grpcRoute.match.methodName: requires serviceName to be set",
        "extra.yaml: Route shop/catalog-router/x: spec.grpcRoute.retryPolicy.httpRetryEvents[1]: "
        "must be one of: server-error, gateway-error, client-error, stream-error (got '5xx')"
    ]
    assert spec_errors("Route", route.replace(", 5xx", "")) == [
        "extra.yaml: Route shop/catalog-router/x: spec.grpcRoute.match.methodName: requires serviceName to be set"
    ]


def test_listener_rules():
    at = "extra.yaml: VirtualNode shop/x: spec.listeners[0]"
    out = spec_errors("VirtualNode", NODE % ("    connectionPool: {tcp: {maxConnections: 1}}\n    timeout: {grpc: {}}\n"
                                             "    healthCheck: {protocol: http, port: 81, healthyThreshold: 2, unhealthyThreshold: 2,"
                                             " intervalMillis: 5000, timeoutMillis: 2000}"))
    assert out == [
        f"{at}.connectionPool: tcp does not match the listener protocol http (portMapping.protocol); use http",
        f"{at}.healthCheck.port: must equal the listener port 8080",
        f"{at}.timeout: grpc does not match the listener protocol http (portMapping.protocol); use http",
    ]


def test_node_rules():
    spec = """
    listeners:
      - portMapping: {port: 80, protocol: http}
      - portMapping: {port: 80, protocol: tcp}
    backends:
      - virtualService: {virtualServiceName: catalog.shop.local}
      - virtualService: {virtualServiceName: catalog.shop.local}
    """
    at = "extra.yaml: VirtualNode shop/x: spec"
    assert spec_errors("VirtualNode", spec) == [
        f"{at}.backends[1].virtualService.virtualServiceName: duplicate backend 'catalog.shop.local' (also backends[0])",
        f"{at}.listeners[1].portMapping.port: duplicate listener port 80 (also listeners[0])",
        f"{at}.serviceDiscovery: required when listeners are defined",
    ]


def test_router_duplicate_ports():
    out = spec_errors("VirtualRouter", "listeners: [{portMapping: {port: 1, protocol: http}}, {portMapping: {port: 1, protocol: tcp}}]\n")
    assert out == ["extra.yaml: VirtualRouter shop/x: spec.listeners[1].portMapping.port: duplicate listener port 1 (also listeners[0])"]


def test_cloud_map_instances():
    spec = """
    instances:
      - instanceId: a
        attributes: {AWS_INSTANCE_IPV4: 10.0.0.300, AWS_INSTANCE_PORT: "0"}
      - instanceId: a
        attributes: {AWS_INSTANCE_PORT: 8080}
      - attributes: {zone: a}
    """
    at = "extra.yaml: CloudMapService ns/x: spec.instances"
    assert spec_errors("CloudMapService", spec) == [
        f"{at}[0].attributes.AWS_INSTANCE_IPV4: not a valid IPv4 address: '10.0.0.300'",
        f"{at}[0].attributes.AWS_INSTANCE_PORT: must be a port number 1..65535 (as a string), got '0'",
        f"{at}[1].attributes.AWS_INSTANCE_PORT: expected a string, got integer 8080",
        f"{at}[2].attributes: AWS_INSTANCE_IPV4 or AWS_INSTANCE_IPV6 is required",
    ]
    with pytest.raises(Exception, match="duplicate instanceId 'a'"):
        CloudMapServiceSpec.model_validate({"instances": [{"instanceId": "a", "attributes": {"AWS_INSTANCE_IPV6": "::1"}}] * 2})


def test_gateway_specs_validate():
    route = {"httpRoute": {"match": {"prefix": "/aws-appmesh/x"}, "action": {
        "target": {"virtualService": {"virtualServiceName": "s"}}, "rewrite": {"prefix": {"value": "v1"}}}}}
    with pytest.raises(Exception) as err:
        GatewayRouteSpec.model_validate(route)
    text = str(err.value)
    assert "reserved" in text and "must start and end with '/'" in text
    with pytest.raises(Exception, match="at least one of prefix, path, hostname"):
        GatewayRouteSpec.model_validate({"httpRoute": {"match": {}, "action": {"target": {"virtualService": {"virtualServiceName": "s"}}}}})
    gateway = VirtualGatewaySpec.model_validate({"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]})
    assert gateway.listeners[0].portMapping.port == 80
    out = errors(("gw.yaml", "kind: VirtualGateway\nmesh: shop\nname: gw\nspec: {listeners: [{portMapping: {port: 80, protocol: tcp}}]}\n"))
    assert out == [
        "gw.yaml: VirtualGateway shop/gw: spec.listeners[0].portMapping.protocol: must be one of: http, http2, grpc (got 'tcp')",
    ]


GATEWAY = """
kind: VirtualGateway
mesh: shop
name: gw
spec:
  listeners:
    - portMapping: {port: 8088, protocol: http}
    - portMapping: {port: 8443, protocol: http}
"""


def test_gateway_route_references():
    route = """
    kind: GatewayRoute
    mesh: shop
    virtualGateway: %s
    name: r
    spec:
      httpRoute:
        match: {prefix: /, port: %s}
        action: {target: {virtualService: {virtualServiceName: %s}, port: %s}}
    """
    out = errors(("gw.yaml", GATEWAY), ("r.yaml", route % ("gw", 9999, "catalog.shop.local", 1234)))
    assert out == [
        "r.yaml: GatewayRoute shop/gw/r: spec.httpRoute.action.target.port: port 1234 is not a port of virtual service 'catalog.shop.local' (ports: 8080)",
        "r.yaml: GatewayRoute shop/gw/r: spec.httpRoute.match.port: port 9999 is not a listener port of virtual gateway 'gw' (ports: 8088, 8443)",
    ]
    out = errors(("gw.yaml", GATEWAY), ("r.yaml", route % ("gx", 8088, "nowhere.shop.local", 8080)))
    assert out == [
        "r.yaml: GatewayRoute shop/gx/r: spec.httpRoute.action.target.virtualService.virtualServiceName: virtual service 'nowhere.shop.local' not found in mesh 'shop'",
        "r.yaml: GatewayRoute shop/gx/r: virtualGateway: virtual gateway 'gx' not found in mesh 'shop' (did you mean 'gw'?)",
    ]
    no_port = route.replace("match: {prefix: /, port: %s}", "match: {prefix: /}%s")
    out = errors(("gw.yaml", GATEWAY), ("r.yaml", no_port % ("gw", "", "catalog.shop.local", 8080)))
    assert out == ["r.yaml: GatewayRoute shop/gw/r: spec.httpRoute.match.port: port is required: virtual gateway 'gw' has 2 listeners (ports: 8088, 8443)"]


# ---------------------------------------------------------------- documents and files


def test_unknown_kind_lists_known_kinds():
    out = errors(("x.yaml", "kind: VirtualNodes\nmesh: shop\nname: a\n"))
    assert out == ["x.yaml: document 1 (line 1): kind: unknown kind 'VirtualNodes'; "
                   "known kinds: Mesh, VirtualService, VirtualRouter, Route, VirtualNode, VirtualGateway, GatewayRoute, CloudMapService"]


def test_envelope_rules():
    text = """
    kind: Route
    mesh: shop
    name: r
    ---
    kind: Mesh
    mesh: shop
    name: m
    ---
    kind: VirtualNode
    mesh: shop
    name: a/b
    ---
    - just a list
    ---
    apiVersion: appmesh.k8s.aws/v1beta2
    kind: VirtualNode
    metadata: {name: x}
    """
    out = errors(("x.yaml", text))
    assert out == [
        "x.yaml: document 1 (line 2): spec: exactly one of httpRoute, http2Route, grpcRoute, tcpRoute must be set",
        "x.yaml: document 1 (line 2): virtualRouter: required field missing",
        "x.yaml: document 2 (line 6): mesh: not allowed for kind Mesh",
        "x.yaml: document 3 (line 10): name: must not contain '/' or whitespace, got 'a/b'",
        "x.yaml: document 4 (line 14): expected a mapping with kind, name and spec, got a list",
        # no metadata.namespace: applied to --namespace (default "default"), as kubectl does
        "x.yaml: k8s VirtualNode default/x (document 5, line 16): spec.meshRef: no Mesh resource is loaded: "
        "load the file that defines it, or set spec.meshRef.name (meshplane uses spec.meshRef or the only Mesh "
        "loaded, not namespace selectors)",
    ]


def test_yaml_syntax_error_has_line_number(tmp_path):
    (tmp_path / "bad.yaml").write_text("kind: Mesh\nname: shop\n---\nkind: VirtualNode\nmesh: shop\nname: [unclosed\n")
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    (issue,) = err.value.issues
    assert issue.file == str(tmp_path / "bad.yaml") and issue.resource == ""
    assert issue.path == "line 7 column 1"
    assert issue.message == "did not find expected ',' or ']' (while parsing a flow sequence started at line 6)"


def test_yaml_tab_indentation_gets_a_clear_message():
    assert errors(("tab.yaml", "kind: Mesh\nname: m\nspec:\n\tegressFilter: {}\n")) == [
        "tab.yaml: line 4 column 1: tab character found; YAML must be indented with spaces"
    ]


def test_yaml_duplicate_key_is_an_error():
    out = errors(("dup.yaml", "kind: Mesh\nname: a\nname: b\n"))
    assert out == ["dup.yaml: line 3 column 1: duplicate key 'name' (first at line 2)"]


def test_json_syntax_error():
    out = errors(("bad.json", '{"kind": "Mesh",\n "name": }'))
    assert out == ["bad.json: line 2 column 10: Expecting value"]


# ---------------------------------------------------------------- cross-references


def test_dangling_route_target_router_and_mesh():
    text = """
    kind: Route
    mesh: shop
    virtualRouter: catalog-routr
    name: r
    spec:
      tcpRoute:
        action: {weightedTargets: [{virtualNode: catalog-v11, weight: 1}]}
    ---
    kind: VirtualNode
    mesh: shopp
    name: n
    """
    assert errors(("x.yaml", text)) == [
        "x.yaml: Route shop/catalog-routr/r: spec.tcpRoute.action.weightedTargets[0].virtualNode: "
        "virtual node 'catalog-v11' not found in mesh 'shop' (did you mean 'catalog-v1'?)",
        "x.yaml: Route shop/catalog-routr/r: virtualRouter: virtual router 'catalog-routr' not found in mesh 'shop' (did you mean 'catalog-router'?)",
        "x.yaml: VirtualNode shopp/n: mesh: mesh 'shopp' is not defined (no kind: Mesh document with that name) (did you mean 'shop'?)",
    ]


def test_dangling_provider_and_backend():
    text = """
    kind: VirtualService
    mesh: shop
    name: a.shop.local
    spec: {provider: {virtualNode: {virtualNodeName: ghost}}}
    ---
    kind: VirtualService
    mesh: shop
    name: b.shop.local
    spec: {provider: {virtualRouter: {virtualRouterName: ghost}}}
    ---
    kind: VirtualNode
    mesh: shop
    name: n
    spec: {backends: [{virtualService: {virtualServiceName: catalog.shop.local}}, {virtualService: {virtualServiceName: ghost.shop.local}}]}
    """
    # a backend that does not exist is valid, as on App Mesh (it may be created later): no issue for node n
    assert errors(("x.yaml", text)) == [
        "x.yaml: VirtualService shop/a.shop.local: spec.provider.virtualNode.virtualNodeName: virtual node 'ghost' not found in mesh 'shop'",
        "x.yaml: VirtualService shop/b.shop.local: spec.provider.virtualRouter.virtualRouterName: virtual router 'ghost' not found in mesh 'shop'",
    ]


def test_references_do_not_cross_meshes():
    text = "kind: Mesh\nname: other\n---\nkind: VirtualService\nmesh: other\nname: s\nspec: {provider: {virtualNode: {virtualNodeName: catalog-v1}}}\n"
    assert errors(("x.yaml", text)) == [
        "x.yaml: VirtualService other/s: spec.provider.virtualNode.virtualNodeName: virtual node 'catalog-v1' not found in mesh 'other'"
    ]


def test_duplicate_names_across_two_files():
    out = errors(("more/nodes.yaml", "kind: VirtualNode\nmesh: shop\nname: front\n"))
    assert out == ["more/nodes.yaml: VirtualNode shop/front: name: duplicate VirtualNode 'front': also defined in nodes.yaml"]


def test_same_name_in_other_kind_or_router_is_fine():
    text = "kind: VirtualRouter\nmesh: shop\nname: front\n---\nkind: Mesh\nname: other\n---\nkind: VirtualNode\nmesh: other\nname: front\n"
    load_texts(BASE + [("x.yaml", text)])


def test_route_port_the_router_lacks():
    out = spec_errors("Route", ROUTE.replace("{prefix: /}", "{prefix: /, port: 9090}") % 1)
    assert out == ["extra.yaml: Route shop/catalog-router/x: spec.httpRoute.match.port: "
                   "port 9090 is not a listener port of virtual router 'catalog-router' (ports: 8080)"]


def test_route_port_required_when_router_has_several_listeners():
    two = MESH.replace("    - portMapping: {port: 8080, protocol: http}\n",
                       "    - portMapping: {port: 8080, protocol: http}\n    - portMapping: {port: 8081, protocol: http}\n", 1)
    out = errors(("mesh.yaml", two), ("nodes.yaml", NODES), base=False)
    assert out == ["mesh.yaml: Route shop/catalog-router/main: spec.httpRoute.match.port: "
                   "port is required: virtual router 'catalog-router' has 2 listeners (ports: 8080, 8081)"]


def test_target_ports():
    two = NODES.replace("    - portMapping: {port: 8080, protocol: http}\n  serviceDiscovery:\n    dns: {hostname: catalog-v2",
                        "    - portMapping: {port: 8080, protocol: http}\n    - portMapping: {port: 8081, protocol: http}\n"
                        "  serviceDiscovery:\n    dns: {hostname: catalog-v2")
    text = MESH.replace("weight: 10, port: 8080", "weight: 10")
    out = errors(("mesh.yaml", text.replace("weight: 90}", "weight: 90, port: 7}")), ("nodes.yaml", two), base=False)
    at = "mesh.yaml: Route shop/catalog-router/main: spec.httpRoute.action.weightedTargets"
    assert out == [
        f"{at}[0].port: port 7 is not a listener port of virtual node 'catalog-v1' (ports: 8080)",
        f"{at}[1].port: port is required: virtual node 'catalog-v2' has 2 listeners (ports: 8080, 8081)",
    ]


def test_invalid_referent_is_not_reported_as_missing():
    broken = NODES.replace("maxConnections: 100", "maxConnections: 0")
    out = errors(("mesh.yaml", MESH), ("nodes.yaml", broken), base=False)
    assert out == ["nodes.yaml: VirtualNode shop/catalog-v1: spec.listeners[0].connectionPool.http.maxConnections: must be >= 1"]


def test_many_errors_in_many_files_all_reported(tmp_path):
    (tmp_path / "a.yaml").write_text(MESH.replace("weight: 90", "weight: 101").replace("type: ALLOW_ALL", "type: ALLOW"))
    (tmp_path / "b.yaml").write_text(NODES.replace("intervalMillis: 5000", "intervalMillis: 1")
                                     + "---\nkind: Nope\nname: z\n")
    (tmp_path / "c.yaml").write_text("kind: VirtualService\nmesh: shop\nname: extra\nspec: {provider: {virtualNode: {virtualNodeName: gone}}}\n")
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    files = {issue.file for issue in err.value.issues}
    assert files == {str(tmp_path / n) for n in ("a.yaml", "b.yaml")}  # c.yaml's dangling ref is skipped: b.yaml is incomplete
    messages = [f"{i.path}: {i.message}" for i in err.value.issues]
    assert messages == [
        "spec.egressFilter.type: must be one of: ALLOW_ALL, DROP_ALL (got 'ALLOW')",
        "spec.httpRoute.action.weightedTargets[0].weight: must be <= 100",
        "spec.listeners[0].healthCheck.intervalMillis: must be >= 5000",
        "kind: unknown kind 'Nope'; known kinds: Mesh, VirtualService, VirtualRouter, Route, VirtualNode, VirtualGateway, GatewayRoute, CloudMapService",
    ]
    assert len(str(err.value).splitlines()) == 4
    (tmp_path / "b.yaml").write_text(NODES)
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    assert [i.file for i in err.value.issues] == [str(tmp_path / "a.yaml")] * 2 + [str(tmp_path / "c.yaml")]
