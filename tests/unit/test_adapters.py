"""Kubernetes App Mesh CRDs and CloudFormation templates load through the adapters
(mesh_model/adapters): the project's own App Mesh inputs (tests/inputs/appmesh) give the App
Mesh names and the Envoy config their features call for, and every problem is reported against
the original document. (The public App Mesh examples: examples_check/, ``make test-examples``.)"""
from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from mesh_model import ModelError, load_paths, load_texts
from mesh_model.adapters.cloudformation import camel
from mesh_model.compiler import compile_node
from mesh_model.load import ParseCache
from mesh_model.node_id import parse_node_id

from tests.appmesh_inputs import (CASES, NS, REVIEWS_MESH, envoy_rejections, input_paths, prepared_inputs,
                                  substituted, text)
from tests.appmesh_inputs import CLUSTER, MESH as BOOKSTORE, compiled_names as compiled, names_of as names
from tests.paths import REPO as ROOT
ROUTES = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return prepared_inputs(tmp_path_factory.mktemp("inputs"))


def resource(model, node: str, type_url: str, name: str) -> dict:
    """One compiled resource of ``node`` as its JSON form."""
    return MessageToDict(compile_node(model, parse_node_id(node))[type_url][name])


def envoy_routes(model, node: str, config: str) -> dict[str, dict]:
    """The routes of one route configuration of ``node``, by name."""
    return {r["name"]: r for vh in resource(model, node, ROUTES, config).get("virtualHosts", []) for r in vh["routes"]}


def test_01_http2_cloud_map_weighted(inputs):
    model = load_paths(input_paths(inputs, "01"))
    assert names(model, BOOKSTORE) == {
        "nodes": [f"catalog-2024_{NS}", f"catalog-2025_{NS}", f"catalog-next_{NS}", f"storefront_{NS}"],
        "services": [f"catalog.{NS}.svc.cluster.local"],
        "routers": [f"catalog_{NS}"],
        "routes": {f"catalog_{NS}": ["catalog-split"]},
        "gateways": [], "gateway_routes": {},
    }
    storefront = f"mesh/{BOOKSTORE}/virtualNode/storefront_{NS}"
    assert compiled(model, storefront) == sorted(
        [f"cds_egress_{BOOKSTORE}_catalog-{r}_{NS}_http2_9090" for r in ("2024", "2025", "next")]
        + [f"cds_ingress_{BOOKSTORE}_storefront_{NS}_http_3000", f"cds_egress_{BOOKSTORE}_amazonaws"])
    route = model.meshes[BOOKSTORE].routes[f"catalog_{NS}"]["catalog-split"].spec
    assert [(t.virtualNode, t.weight) for t in route.http2Route.action.weightedTargets] == \
        [(f"catalog-2024_{NS}", 1), (f"catalog-2025_{NS}", 1), (f"catalog-next_{NS}", 1)]
    discovery = model.meshes[BOOKSTORE].virtual_nodes[f"catalog-next_{NS}"].spec.serviceDiscovery.awsCloudMap
    assert (discovery.namespaceName, discovery.serviceName) == (f"{NS}.pvt.local", "catalog")
    assert [(a.key, a.value) for a in discovery.attributes] == [("release", "next")]
    cluster = resource(model, storefront, CLUSTER, f"cds_egress_{BOOKSTORE}_catalog-2025_{NS}_http2_9090")
    assert cluster["type"] == "EDS"  # Cloud Map: endpoints by EDS
    assert cluster["healthChecks"] == [{"timeout": "3s", "interval": "10s", "unhealthyThreshold": 2, "healthyThreshold": 3,
                                        "httpHealthCheck": {"path": "/healthz", "codecClientType": "HTTP2"}}]
    assert "http2ProtocolOptions" in json.dumps(cluster["typedExtensionProtocolOptions"])
    split = envoy_routes(model, storefront, "rds_egress_http_15001")["catalog-split"]["route"]["weightedClusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in split] == \
        [(f"cds_egress_{BOOKSTORE}_catalog-{r}_{NS}_http2_9090", 1) for r in ("2024", "2025", "next")]


def test_02_mtls_from_files_and_header_routes(inputs):
    model = load_paths(input_paths(inputs, "02"))
    certs = inputs["02"].parent / "certs"
    mesh = model.meshes[BOOKSTORE]
    checkout = mesh.virtual_nodes[f"checkout_{NS}"].spec
    assert checkout.backends[0].virtualService.virtualServiceName == f"payments.{NS}.svc.cluster.local"
    tls = checkout.backendDefaults.clientPolicy.tls
    assert tls.validation.trust.file.certificateChain == f"{certs}/ca-bundle.pem"
    assert tls.certificate.file.certificateChain == f"{certs}/checkout/tls.crt"
    card = mesh.virtual_nodes[f"payments-card_{NS}"].spec.listeners[0].tls
    assert card.mode == "STRICT" and list(card.validation.subjectAlternativeNames.match.exact) == [f"checkout.{NS}.svc.cluster.local"]
    router = mesh.routes[f"payments_{NS}"]
    assert sorted((r.spec.priority, name) for name, r in router.items()) == \
        [(1, "wallet-by-header"), (5, "sandbox-accounts"), (50, "card-default")]
    node = f"mesh/{BOOKSTORE}/virtualNode/checkout_{NS}"
    upstream = resource(model, node, CLUSTER, f"cds_egress_{BOOKSTORE}_payments-card_{NS}_http_8443")["transportSocket"]["typedConfig"]
    context = upstream["commonTlsContext"]
    assert context["tlsCertificates"] == [{"certificateChain": {"filename": f"{certs}/checkout/tls.crt"},
                                           "privateKey": {"filename": f"{certs}/checkout/tls.key"}}]
    assert context["validationContext"]["trustedCa"] == {"filename": f"{certs}/ca-bundle.pem"}
    assert [m["matcher"]["exact"] for m in context["validationContext"]["matchTypedSubjectAltNames"]] == \
        [f"payments-card.{NS}.svc.cluster.local", f"payments-wallet.{NS}.svc.cluster.local"]
    routes = envoy_routes(model, node, "rds_egress_http_15001")
    assert list(routes) == ["wallet-by-header", "sandbox-accounts", "card-default"]  # by priority
    assert routes["wallet-by-header"]["match"]["headers"] == [{"name": "x-payment-method", "stringMatch": {"exact": "wallet"}}]
    assert routes["sandbox-accounts"]["match"]["headers"] == [{"name": "x-account-id", "stringMatch": {"prefix": "test-"}}]


def test_03_ingress_gateway(inputs):
    model = load_paths(input_paths(inputs, "03"))
    found = names(model, BOOKSTORE)
    assert found["gateways"] == [f"edge_{NS}"]
    assert found["gateway_routes"] == {f"edge_{NS}": [f"to-account_{NS}", f"to-books_{NS}"]}
    assert sorted(found["services"]) == [f"account.{NS}.svc.cluster.local", f"books.{NS}.svc.cluster.local"]
    assert found["routes"] == {f"account-tiers_{NS}": ["tier-anonymous", "tier-any", "tier-beta", "tier-gold", "tier-staff"],
                               f"books-sections_{NS}": ["section-fiction", "section-rest", "section-science"]}
    gateway = f"mesh/{BOOKSTORE}/virtualGateway/edge_{NS}"
    assert compiled(model, gateway) == sorted(
        [f"cds_egress_{BOOKSTORE}_account-{n}_{NS}_http_7000" for n in ("beta", "guest", "internal", "premium", "standard")]
        + [f"cds_ingress_{BOOKSTORE}_edge_{NS}_self_redirect_http_15001"])
    tiers = envoy_routes(model, gateway, "rds_egress_http_15001")
    assert [tiers[f"tier-{t}"]["match"].get("headers") for t in ("gold", "beta", "staff", "any")] == [
        [{"name": "x-shopper-tier", "stringMatch": {"exact": "gold"}}],
        [{"name": "x-shopper-tier", "stringMatch": {"safeRegex": {"regex": "^beta-[0-9]+$"}}}],
        [{"name": "x-shopper-tier", "stringMatch": {"suffix": "@staff"}}],
        [{"name": "x-shopper-tier", "presentMatch": True}],
    ]


def test_04_outlier_detection(inputs):
    model = load_paths(input_paths(inputs, "04"))
    inventory = model.meshes[BOOKSTORE].virtual_nodes[f"inventory_{NS}"].spec
    assert inventory.listeners[0].outlierDetection.maxServerErrors == 3
    service = model.meshes[BOOKSTORE].virtual_services[f"inventory.{NS}.svc.cluster.local"].spec
    assert service.provider.virtualNode.virtualNodeName == f"inventory_{NS}"
    cluster = resource(model, f"mesh/{BOOKSTORE}/virtualNode/order-worker_{NS}", CLUSTER, f"cds_egress_{BOOKSTORE}_inventory_{NS}_http_8082")
    detection = cluster["outlierDetection"]
    assert (detection["consecutive5xx"], detection["interval"], detection["baseEjectionTime"], detection["maxEjectionPercent"]) == \
        (3, "15s", "30s", 40)


def test_05_canary_and_retries_across_files(inputs):
    model = load_paths(input_paths(inputs, "05"))
    found = names(model, "reviews")
    assert found["routers"] == ["reviews-api-router"]
    assert found["routes"] == {"reviews-api-router": ["stable-and-canary"]}
    route = model.meshes["reviews"].routes["reviews-api-router"]["stable-and-canary"].spec
    assert [(t.virtualNode, t.weight) for t in route.httpRoute.action.weightedTargets] == \
        [("reviews-api-stable", 90), ("reviews-api-canary_reviews", 10)]  # awsName of the target, else <name>_<namespace>
    assert route.httpRoute.retryPolicy.maxRetries == 3
    web = "mesh/reviews/virtualNode/reviews-web_reviews"
    assert "cds_egress_reviews_reviews-api-stable_http_5000" in compiled(model, web)
    envoy_route = envoy_routes(model, web, "rds_egress_http_15001")["stable-and-canary"]["route"]
    assert [(c["name"], c["weight"]) for c in envoy_route["weightedClusters"]["clusters"]] == \
        [("cds_egress_reviews_reviews-api-stable_http_5000", 90), ("cds_egress_reviews_reviews-api-canary_reviews_http_5000", 10)]
    retry = envoy_route["retryPolicy"]
    assert (retry["numRetries"], retry["perTryTimeout"]) == (3, "1.500s")
    assert set(retry["retryOn"].split(",")) == {"connect-failure", "reset", "retriable-status-codes"}
    assert 500 in retry["retriableStatusCodes"] and 502 in retry["retriableStatusCodes"]


def test_06_gateway_route_matches_and_rewrites(inputs):
    model = load_paths(input_paths(inputs, "06"))
    routes = model.meshes[BOOKSTORE].gateway_routes[f"portal_{NS}"]
    assert sorted(routes) == sorted(f"{n}_{NS}" for n in ("by-prefix", "by-exact-path", "by-path-regex", "by-method", "by-header",
                                                          "by-query", "by-hostname", "keep-prefix", "old-checkout-path"))
    rewrite = routes[f"old-checkout-path_{NS}"].spec.httpRoute
    assert rewrite.action.target.virtualService.virtualServiceName == f"cart.{NS}.svc.cluster.local"
    assert rewrite.action.rewrite.path.exact == "/checkout"
    envoy = envoy_routes(model, f"mesh/{BOOKSTORE}/virtualGateway/portal_{NS}", "rds_ingress_http_8080")
    route = {name.removesuffix(f"_{NS}"): r for name, r in envoy.items()}
    assert route["by-exact-path"]["match"] == {"path": "/status"}
    assert route["by-path-regex"]["match"] == {"safeRegex": {"regex": "/orders/[0-9]+"}}
    assert route["by-method"]["match"]["headers"] == [{"name": ":method", "stringMatch": {"exact": "POST"}}]
    assert route["by-header"]["match"]["headers"] == [{"name": "x-store-region", "stringMatch": {"exact": "eu-central"}}]
    assert route["by-query"]["match"]["queryParameters"] == [{"name": "format", "stringMatch": {"exact": "csv"}}]
    assert route["by-hostname"]["match"]["headers"][0]["name"] == ":authority"
    assert "hostRewriteLiteral" not in route["by-hostname"]["route"]  # defaultTargetHostname: DISABLED
    assert route["by-prefix"]["route"]["prefixRewrite"] == "/api/v2/"
    assert route["by-prefix"]["route"]["hostRewriteLiteral"] == f"catalog.{NS}.svc.cluster.local"
    assert route["old-checkout-path"]["route"]["prefixRewrite"] == "/checkout"
    assert "prefixRewrite" not in route["keep-prefix"]["route"]  # defaultPrefix: DISABLED keeps /legacy/
    assert list(route)[:3] == ["by-exact-path", "by-path-regex", "by-method"]  # priorities 10, 20, 30 first


def test_07_cloudformation_grpc(inputs):
    model = load_paths(input_paths(inputs, "07"))
    found = names(model, "ledger-mesh")
    assert found == {"nodes": ["ledger-v1"], "services": ["ledger.ledger.internal"], "routers": ["ledger-router"],
                     "routes": {"ledger-router": ["ledger-rpc"]},
                     "gateways": ["ledger-ingress"], "gateway_routes": {"ledger-ingress": ["ledger-rpc-in"]}}
    mesh = model.meshes["ledger-mesh"]
    assert mesh.spec.egressFilter.type == "DROP_ALL"
    node = mesh.virtual_nodes["ledger-v1"].spec
    assert node.serviceDiscovery.awsCloudMap.namespaceName == "ledger.internal"  # AWSCloudMap -> awsCloudMap, !Sub
    assert node.listeners[0].portMapping.port == 50051  # !Ref of a parameter with a Default
    assert node.listeners[0].healthCheck.protocol == "grpc"
    route = mesh.routes["ledger-router"]["ledger-rpc"].spec.grpcRoute
    assert route.action.weightedTargets[0].virtualNode == "ledger-v1"  # !GetAtt LedgerNode.VirtualNodeName
    assert list(route.retryPolicy.grpcRetryEvents) == ["unavailable", "resource-exhausted"]
    gateway_route = mesh.gateway_routes["ledger-ingress"]["ledger-rpc-in"].spec
    assert gateway_route.grpcRoute.match.serviceName == "bank.Ledger"  # values are left alone
    assert gateway_route.grpcRoute.action.target.virtualService.virtualServiceName == "ledger.ledger.internal"
    gateway = "mesh/ledger-mesh/virtualGateway/ledger-ingress"
    assert compiled(model, gateway) == ["cds_egress_ledger-mesh_ledger-v1_grpc_50051",
                                        "cds_ingress_ledger-mesh_ledger-ingress_self_redirect_grpc_15001"]
    assert envoy_routes(model, gateway, "rds_ingress_grpc_50051")["ledger-rpc-in"]["match"] == \
        {"prefix": "/bank.Ledger/", "grpc": {}}
    retry = envoy_routes(model, gateway, "rds_egress_http_15001")["ledger-rpc"]["route"]["retryPolicy"]
    assert (retry["numRetries"], retry["perTryTimeout"]) == (2, "0.800s")
    assert set(retry["retryOn"].split(",")) >= {"unavailable", "resource-exhausted"}


def test_08_timeouts(inputs):
    model = load_paths(input_paths(inputs, "08"))
    mesh = model.meshes[BOOKSTORE]
    assert mesh.virtual_nodes[f"quotes_{NS}"].spec.listeners[0].timeout.http.perRequest.value == 45
    assert mesh.routes[f"quotes_{NS}"]["quotes-slow"].spec.httpRoute.timeout.perRequest.value == 45000
    ui = f"mesh/{BOOKSTORE}/virtualNode/quote-ui_{NS}"
    egress = envoy_routes(model, ui, "rds_egress_http_15001")
    assert egress["quotes-slow"]["route"]["timeout"] == "45s"
    assert egress["pricing-default"]["route"]["timeout"] == "15s"  # Envoy's default: no timeout on that route
    ingress = envoy_routes(model, f"mesh/{BOOKSTORE}/virtualNode/quotes_{NS}", "rds_ingress_http_8090")["local_app"]["route"]
    assert (ingress["timeout"], ingress["idleTimeout"]) == ("45s", "120s")


def test_every_node_of_every_input_passes_envoy_validate(inputs, tmp_path, envoy_binary):
    rejected = []
    for number in sorted(CASES):
        rejected += envoy_rejections(load_paths(input_paths(inputs, number)), tmp_path)
    assert not rejected, "\n".join(rejected)


def test_cli_validate_exits_0_on_every_input(inputs):
    for number in sorted(CASES):
        paths = [str(p) for p in input_paths(inputs, number)]
        result = subprocess.run([sys.executable, "-m", "xds_server.cli", "validate", *paths], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (number, result.stderr)
        assert "valid: mesh" in result.stdout + result.stderr


def test_inputs_are_templates_until_substituted(tmp_path):
    """As written the Kubernetes inputs hold ${VAR}s: loading one unsubstituted names the placeholder."""
    (tmp_path / "raw.yaml").write_text(text(CASES["04"][0]))
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path / "raw.yaml"])
    assert "placeholder ${APP_NAMESPACE} was not substituted" in str(err.value)


def test_parse_cache_follows_other_files(tmp_path):
    """A file's conversion depends on the custom resources of the other files (refs, mesh)."""
    mesh = text(REVIEWS_MESH)
    (tmp_path / "mesh.yaml").write_text(mesh)
    (tmp_path / "router.yaml").write_text(substituted(CASES["05"][0]))
    cache = ParseCache()
    first = load_paths([tmp_path], parse_cache=cache)
    (tmp_path / "mesh.yaml").write_text(mesh.replace("awsName: reviews-api-stable", "awsName: reviews-api-v1"))
    second = load_paths([tmp_path], parse_cache=cache)
    route = second.meshes["reviews"].routes["reviews-api-router"]["stable-and-canary"].spec
    assert route.httpRoute.action.weightedTargets[0].virtualNode == "reviews-api-v1"
    assert "reviews-api-stable" in first.meshes["reviews"].virtual_nodes


# ---------------------------------------------------------------- conversions


def load(*texts: tuple[str, str]):
    return load_texts([(label, textwrap.dedent(text)) for label, text in texts])


def errors(*texts: tuple[str, str]) -> list[str]:
    with pytest.raises(ModelError) as err:
        load(*texts)
    return str(err.value).splitlines()


MESH = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: shop}
spec:
  awsName: shop-mesh
  egressFilter: {type: ALLOW_ALL}
  meshServiceDiscovery: {ipPreference: IPv4_ONLY}
"""


def test_k8s_mesh_fields_and_arn_refs_and_list():
    model = load(("a.yaml", MESH + textwrap.dedent("""
    ---
    apiVersion: v1
    kind: List
    items:
      - apiVersion: appmesh.k8s.aws/v1beta2
        kind: VirtualNode
        metadata: {name: a, namespace: ns, uid: "123"}
        spec:
          meshRef: {name: shop, uid: "456"}
          listeners: [{portMapping: {port: 80, protocol: http}}]
          serviceDiscovery: {dns: {hostname: a.ns}}
        status: {conditions: []}
      - apiVersion: appmesh.k8s.aws/v1beta2
        kind: VirtualService
        metadata: {name: a, namespace: ns}
        spec:
          provider: {virtualNode: {virtualNodeARN: "arn:aws:appmesh:us-west-2:123456789012:mesh/shop-mesh/virtualNode/a_ns"}}
      - apiVersion: v1
        kind: ConfigMap
        metadata: {name: ignored}
    """)))
    mesh = model.meshes["shop-mesh"]
    assert mesh.spec.egressFilter.type == "ALLOW_ALL" and mesh.spec.serviceDiscovery.ipPreference == "IPv4_ONLY"
    assert list(mesh.virtual_nodes) == ["a_ns"]
    assert mesh.virtual_services["a.ns"].spec.provider.virtualNode.virtualNodeName == "a_ns"


def test_cloudformation_key_casing():
    assert [camel(k) for k in ("PortMapping", "AWSCloudMap", "DNS", "ACM", "HTTP2", "IpPreference", "already")] == \
        ["portMapping", "awsCloudMap", "dns", "acm", "http2", "ipPreference", "already"]


def test_cloudformation_json_template_with_join_and_other_resources():
    template = """{
      "AWSTemplateFormatVersion": "2010-09-09",
      "Parameters": {"Env": {"Type": "String", "Default": "prod"}},
      "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket"},
        "Mesh": {"Type": "AWS::AppMesh::Mesh", "Properties": {"MeshName": {"Fn::Join": ["-", ["shop", {"Ref": "Env"}]]}}},
        "Router": {"Type": "AWS::AppMesh::VirtualRouter", "Properties": {
          "MeshName": {"Fn::GetAtt": ["Mesh", "MeshName"]}, "VirtualRouterName": "r",
          "Spec": {"Listeners": [{"PortMapping": {"Port": 80, "Protocol": "http"}}]}}},
        "Route": {"Type": "AWS::AppMesh::Route", "Properties": {
          "MeshName": {"Fn::GetAtt": ["Mesh", "MeshName"]}, "VirtualRouterName": {"Fn::GetAtt": ["Router", "VirtualRouterName"]},
          "RouteName": "main", "Tags": [{"Key": "team", "Value": "a"}],
          "Spec": {"HttpRoute": {"Match": {"Prefix": "/", "Headers": [{"Name": "X-Canary", "Match": {"Exact": "Yes"}}]},
                                 "Action": {"WeightedTargets": [{"VirtualNode": "n", "Weight": 1}]}}}}},
        "Node": {"Type": "AWS::AppMesh::VirtualNode", "Properties": {
          "MeshName": {"Fn::Sub": "shop-${Env}"}, "VirtualNodeName": "n",
          "Spec": {"Listeners": [{"PortMapping": {"Port": 80, "Protocol": "http"}}],
                   "ServiceDiscovery": {"DNS": {"Hostname": "n.local"}}}}}
      }
    }"""
    model = load(("stack.json", template))
    mesh = model.meshes["shop-prod"]
    header = mesh.routes["r"]["main"].spec.httpRoute.match.headers[0]
    assert (header.name, header.match.exact) == ("X-Canary", "Yes")
    assert mesh.virtual_nodes["n"].spec.serviceDiscovery.dns.hostname == "n.local"


# ---------------------------------------------------------------- errors


NODE = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: front, namespace: ns}
spec:
  podSelector: {matchLabels: {app: front}}
  listeners: [{portMapping: {port: 80, protocol: http}}]
  serviceDiscovery: {dns: {hostname: front.ns}}
  backends:
    - virtualService: {virtualServiceRef: {name: catalog}}
"""

ROUTER = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: catalog, namespace: ns}
spec:
  listeners: [{portMapping: {port: 80, protocol: http}}]
  routes:
    - name: main
      httpRoute:
        match: {prefix: /}
        action:
          weightedTargets:
            - {virtualNodeRef: {name: front}, weight: 1}
            - {virtualNodeRef: {name: catalog-v9}, weight: 1}
"""


def test_unresolved_refs_name_the_original_field():
    out = errors(("m.yaml", MESH), ("n.yaml", NODE), ("r.yaml", ROUTER))
    assert out == [
        "n.yaml: k8s VirtualNode ns/front (document 1, line 2): spec.backends[0].virtualService.virtualServiceRef.name: "
        "no VirtualService 'catalog' in namespace 'ns' in the loaded files",
        "r.yaml: k8s VirtualRouter ns/catalog (document 1, line 2): "
        "spec.routes[0].httpRoute.action.weightedTargets[1].virtualNodeRef.name: "
        "no VirtualNode 'catalog-v9' in namespace 'ns' in the loaded files",
    ]


def test_spec_errors_of_converted_routes_use_original_paths():
    router = ROUTER.replace("{name: catalog-v9}, weight: 1", "{name: front}, weight: 101")
    out = errors(("m.yaml", MESH), ("n.yaml", NODE.replace("backends:", "x_backends:")), ("r.yaml", router))
    assert out == [
        "n.yaml: VirtualNode shop-mesh/front_ns (k8s VirtualNode ns/front, document 1, line 2): spec: "
        "unknown field 'x_backends' (did you mean 'backends'?)",
        "r.yaml: Route shop-mesh/catalog_ns/main (k8s VirtualRouter ns/catalog, document 1, line 2): "
        "spec.routes[0].httpRoute.action.weightedTargets[1].weight: must be <= 100",
    ]


def test_cross_file_reference_errors_name_the_original_object():
    node = NODE.replace("virtualServiceRef: {name: catalog}",
                        "virtualServiceARN: arn:aws:appmesh:us-west-2:123456789012:mesh/shop-mesh/virtualService/gone")
    load(("m.yaml", MESH), ("n.yaml", node))  # a backend that does not exist (yet) is valid, as on App Mesh
    service = textwrap.dedent("""
    apiVersion: appmesh.k8s.aws/v1beta2
    kind: VirtualService
    metadata: {name: catalog, namespace: ns}
    spec:
      provider:
        virtualNode: {virtualNodeARN: arn:aws:appmesh:us-west-2:123456789012:mesh/shop-mesh/virtualNode/gone}
    """)
    out = errors(("m.yaml", MESH), ("s.yaml", service))
    assert len(out) == 1
    assert out[0].startswith("s.yaml: VirtualService shop-mesh/catalog.ns (k8s VirtualService ns/catalog, document 1, line 2): "
                             "spec.provider.virtualNode.virtualNodeARN: "), out
    assert "gone" in out[0]


def test_leftover_placeholder():
    out = errors(("m.yaml", MESH), ("n.yaml", NODE.replace("{dns: {hostname: front.ns}}", "\n    dns:\n      hostname: front.${APP_NAMESPACE}.svc")
                                   + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {image: '${IMAGE}'}\n"))
    assert out == ["n.yaml: k8s VirtualNode ns/front (document 1, line 2): spec.serviceDiscovery.dns.hostname: "
                   "placeholder ${APP_NAMESPACE} was not substituted; substitute it, e.g. with envsubst, before loading"]


def test_unknown_crd_kind():
    out = errors(("m.yaml", MESH + "---\napiVersion: appmesh.k8s.aws/v1beta2\nkind: VirtualNodes\nmetadata: {name: x}\n"
                  "---\napiVersion: appmesh.k8s.aws/v1beta2\nkind: BackendGroup\nmetadata: {name: g, namespace: ns}\n"))
    assert out == [
        "m.yaml: k8s BackendGroup ns/g (document 3, line 14): kind: BackendGroup is not supported: "
        "list the virtual services in each VirtualNode's spec.backends",
        "m.yaml: k8s VirtualNodes x (document 2, line 10): kind: App Mesh custom resource kind 'VirtualNodes' cannot be "
        "converted (known: Mesh, VirtualService, VirtualRouter, VirtualNode, VirtualGateway, GatewayRoute)",
    ]


def test_two_meshes_without_mesh_ref():
    other = MESH.replace("name: shop}", "name: other}").replace("awsName: shop-mesh", "awsName: other-mesh")
    node = NODE.replace("  backends:\n    - virtualService: {virtualServiceRef: {name: catalog}}\n", "")
    out = errors(("m.yaml", MESH), ("o.yaml", other), ("n.yaml", node))
    assert out == ["n.yaml: k8s VirtualNode ns/front (document 1, line 2): spec.meshRef: 2 Mesh resources are loaded "
                   "(other, shop): set spec.meshRef.name to say which one this object belongs to "
                   "(meshplane does not evaluate namespace selectors)"]
    model = load(("m.yaml", MESH), ("o.yaml", other), ("n.yaml", node.replace("spec:\n", "spec:\n  meshRef: {name: other}\n")))
    assert list(model.meshes["other-mesh"].virtual_nodes) == ["front_ns"]


def test_gateway_route_needs_one_gateway():
    gateway = """
    apiVersion: appmesh.k8s.aws/v1beta2
    kind: VirtualGateway
    metadata: {name: %s, namespace: %s}
    spec:
      listeners: [{portMapping: {port: 8080, protocol: http}}]
    ---
    """
    route = """
    apiVersion: appmesh.k8s.aws/v1beta2
    kind: GatewayRoute
    metadata: {name: r, namespace: ns}
    spec:
      httpRoute:
        match: {prefix: /}
        action: {target: {virtualService: {virtualServiceARN: "arn:aws:appmesh:r:1:mesh/shop-mesh/virtualService/a"}}}
    """
    service = "---\nkind: VirtualService\nmesh: shop-mesh\nname: a\nspec: {}\n"
    two = textwrap.dedent(gateway % ("g1", "ns") + gateway % ("g2", "ns")) + textwrap.dedent(route)
    out = errors(("m.yaml", MESH), ("g.yaml", two), ("s.yaml", service))
    assert out == ["g.yaml: k8s GatewayRoute ns/r (document 3, line 16): spec.virtualGatewayRef: 2 VirtualGateways could own "
                   "this route (ns/g1, ns/g2): set spec.virtualGatewayRef (meshplane does not evaluate gatewayRouteSelector)"]
    other_namespace = textwrap.dedent(gateway % ("g1", "ns") + gateway % ("g2", "elsewhere")) + textwrap.dedent(route)
    model = load(("m.yaml", MESH), ("g.yaml", other_namespace), ("s.yaml", service))
    assert list(model.meshes["shop-mesh"].gateway_routes["g1_ns"]) == ["r_ns"]


def test_cloudformation_unresolvable_get_att():
    template = """
    Resources:
      Node:
        Type: AWS::AppMesh::VirtualNode
        Properties:
          MeshName: !GetAtt Mesh.MeshName
          VirtualNodeName: !GetAtt Other.Arn
          Spec:
            Listeners: [{PortMapping: {Port: 70000, Protocol: http}}]
    """
    out = errors(("stack.yaml", template))
    assert out == [
        "stack.yaml: CloudFormation Node (document 1, line 2): Resources.Node.Properties.MeshName.Fn::GetAtt: "
        "Fn::GetAtt Mesh.MeshName: no resource 'Mesh' in the template",
        "stack.yaml: CloudFormation Node (document 1, line 2): Resources.Node.Properties.VirtualNodeName.Fn::GetAtt: "
        "Fn::GetAtt Other.Arn: no resource 'Other' in the template",
    ]


def test_cloudformation_spec_errors_use_original_paths():
    template = """
    Resources:
      Mesh: {Type: AWS::AppMesh::Mesh, Properties: {MeshName: m}}
      Node:
        Type: AWS::AppMesh::VirtualNode
        Properties:
          MeshName: !Ref Mesh
          VirtualNodeName: n
          Spec:
            Listeners: [{PortMapping: {Port: 70000, Protocol: http}}]
            ServiceDiscovery: {DNS: {Hostname: n.local}}
      Other:
        Type: AWS::AppMesh::VirtualRouter
        Properties:
          MeshName: m
          VirtualRouterName: r
          Spec:
            Listeners: [{PortMapping: {Port: 70000, Protocol: http}}]
      Bad:
        Type: AWS::AppMesh::Mystery
    """
    out = errors(("stack.yaml", template))
    assert out == [
        "stack.yaml: CloudFormation Bad (document 1, line 2): Resources.Bad.Type: AWS::AppMesh::Mystery cannot be converted "
        "(known: AWS::AppMesh::Mesh, AWS::AppMesh::VirtualService, AWS::AppMesh::VirtualRouter, AWS::AppMesh::Route, "
        "AWS::AppMesh::VirtualNode, AWS::AppMesh::VirtualGateway, AWS::AppMesh::GatewayRoute)",
        "stack.yaml: CloudFormation Node (document 1, line 2): Resources.Node.Properties.MeshName.Ref: "
        "Ref Mesh is that resource's ARN, not its name; use !GetAtt Mesh.<Kind>Name",
        "stack.yaml: VirtualRouter m/r (CloudFormation Other, document 1, line 2): "
        "Resources.Other.Properties.Spec.Listeners[0].PortMapping.Port: must be <= 65535",
    ]


def test_mutated_documents_only_ever_give_model_errors(inputs):
    """Random damage to real CRDs and templates: every outcome is a model or a ModelError."""
    import yaml

    from mesh_model.load.yaml_scan import StrictLoader

    sources = [[d for d in yaml.load_all(inputs[k].read_text(), Loader=StrictLoader) if d is not None]
               for k in ("01", "06", "07")]
    values = [None, 1, True, "", "${X}", "a/b", [], {}, [1], {"name": 1}, {"Ref": "Nope"}, {"Fn::GetAtt": 5},
              {"Fn::Sub": ["${A}", {"A": {"Fn::If": 1}}]}, "arn:aws:appmesh:r:1:mesh/m/virtualNode/x", {"name": "catalog"}]

    def mutate(value, rnd):
        if isinstance(value, dict) and value:
            key = rnd.choice(list(value))
            r = rnd.random()
            if r < 0.2:
                del value[key]
            elif r < 0.5:
                value[key] = copy.deepcopy(rnd.choice(values))
            else:
                mutate(value[key], rnd)
        elif isinstance(value, list) and value:
            i = rnd.randrange(len(value))
            if rnd.random() < 0.3:
                value[i] = copy.deepcopy(rnd.choice(values))
            else:
                mutate(value[i], rnd)

    rnd = random.Random(7)
    for _ in range(300):
        docs = copy.deepcopy(rnd.choice(sources))
        for _ in range(rnd.randint(1, 4)):
            mutate(rnd.choice(docs), rnd)
        try:
            load_texts([("f.json", json.dumps(docs))])
        except ModelError:
            pass
