"""Kubernetes App Mesh CRDs and CloudFormation templates load through the adapters
(mesh_model/adapters): the App Mesh examples give the App Mesh names, and every problem is
reported against the original document."""
from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mesh_model import ModelError, load_paths, load_texts
from mesh_model.adapters.cloudformation import camel
from mesh_model.compiler import compile_node
from mesh_model.load import ParseCache
from mesh_model.node_id import parse_node_id

from tests.paths import REPO as ROOT
from tests.public_examples import YELB, prepared_examples, substituted

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    return prepared_examples(tmp_path_factory.mktemp("examples"))


def names(model, mesh: str) -> dict[str, list[str]]:
    m = model.meshes[mesh]
    return {"nodes": list(m.virtual_nodes), "services": list(m.virtual_services), "routers": list(m.virtual_routers),
            "routes": {r: list(v) for r, v in m.routes.items() if v}, "gateways": list(m.virtual_gateways),
            "gateway_routes": {g: list(v) for g, v in m.gateway_routes.items() if v}}


def compiled(model, node: str, type_url: str = CLUSTER) -> list[str]:
    return sorted(compile_node(model, parse_node_id(node))[type_url])


NS = "howto-k8s-http2"


def test_01_http2_names(examples):
    model = load_paths([examples["01"]])
    assert names(model, NS) == {
        "nodes": [f"blue_{NS}", f"client_{NS}", f"green_{NS}", f"red_{NS}"],
        "services": [f"color.{NS}.svc.cluster.local"],
        "routers": [f"color_{NS}"],
        "routes": {f"color_{NS}": ["color-route"]},
        "gateways": [], "gateway_routes": {},
    }
    clusters = compiled(model, f"mesh/{NS}/virtualNode/client_{NS}")
    assert f"cds_egress_{NS}_red_{NS}_http2_8080" in clusters
    assert clusters == sorted([f"cds_egress_{NS}_{c}_{NS}_http2_8080" for c in ("red", "blue", "green")]
                              + [f"cds_ingress_{NS}_client_{NS}_http_8080", f"cds_egress_{NS}_amazonaws"])
    route = model.meshes[NS].routes[f"color_{NS}"]["color-route"].spec
    assert [(t.virtualNode, t.weight) for t in route.http2Route.action.weightedTargets] == \
        [(f"red_{NS}", 1), (f"blue_{NS}", 1), (f"green_{NS}", 1)]
    red = model.meshes[NS].virtual_nodes[f"red_{NS}"].spec
    assert red.serviceDiscovery.awsCloudMap.namespaceName == f"{NS}.pvt.aws.local"


def test_02_mtls_file_based(examples):
    model = load_paths([examples["02"]])
    front = model.meshes[NS].virtual_nodes[f"front_{NS}"].spec
    assert front.backends[0].virtualService.virtualServiceName == f"color.{NS}.svc.cluster.local"
    tls = front.backendDefaults.clientPolicy.tls
    assert tls.validation.trust.file.certificateChain == "/certs/ca_1_cert.pem"
    assert f"color-red.{NS}.svc.cluster.local" in tls.validation.subjectAlternativeNames.match.exact
    assert compiled(model, f"mesh/{NS}/virtualNode/front_{NS}")[:2] == [f"cds_egress_{NS}_amazonaws", f"cds_egress_{NS}_blue_{NS}_http_8080"]


def test_03_ingress_gateway(examples):
    model = load_paths([examples["03"]])
    found = names(model, NS)
    assert found["gateways"] == [f"ingress-gw_{NS}"]
    assert found["gateway_routes"] == {f"ingress-gw_{NS}": [f"gateway-route-headers_{NS}", f"gateway-route-paths_{NS}"]}
    assert sorted(found["services"]) == [f"color-headers.{NS}.svc.cluster.local", f"color-paths.{NS}.svc.cluster.local"]
    gateway = compiled(model, f"mesh/{NS}/virtualGateway/ingress-gw_{NS}")
    assert f"cds_ingress_{NS}_ingress-gw_{NS}_self_redirect_http_15001" in gateway


def test_04_outlier_detection(examples):
    model = load_paths([examples["04"]])
    color = model.meshes[NS].virtual_nodes[f"colorapp_{NS}"].spec
    assert color.listeners[0].outlierDetection.maxServerErrors == 5
    service = model.meshes[NS].virtual_services[f"colorapp.{NS}.svc.cluster.local"].spec
    assert service.provider.virtualNode.virtualNodeName == f"colorapp_{NS}"


def test_05_router_with_aws_name_across_files(examples):
    model = load_paths([examples["05"], examples["05"].parent / "yelb-mesh.yaml"])
    found = names(model, "yelb")
    assert found["routers"] == ["yelb-appserver-virtual-router"]
    assert found["routes"] == {"yelb-appserver-virtual-router": ["route-to-yelb-appserver"]}
    route = model.meshes["yelb"].routes["yelb-appserver-virtual-router"]["route-to-yelb-appserver"].spec
    assert [t.virtualNode for t in route.httpRoute.action.weightedTargets] == \
        ["yelb-appserver-virtual-node", "yelb-appserver-v2_yelb"]  # awsName of the target, else <name>_<namespace>
    assert route.httpRoute.retryPolicy.maxRetries == 2
    clusters = compiled(model, "mesh/yelb/virtualNode/yelb-ui_yelb")
    assert "cds_egress_yelb_yelb-appserver-virtual-node_http_4567" in clusters


def test_06_gateway_routes(examples):
    model = load_paths([examples["06"]])
    routes = model.meshes[NS].gateway_routes[f"ingress-gw_{NS}"]
    assert sorted(routes) == sorted(f"{n}_{NS}" for n in ("header-match", "method-match", "path-match", "prefix-match",
                                                          "query-match", "rewrite-path", "rewrite-prefix"))
    rewrite = routes[f"rewrite-path_{NS}"].spec.httpRoute
    assert rewrite.action.target.virtualService.virtualServiceName == f"color-paths.{NS}.svc.cluster.local"
    assert rewrite.action.rewrite.path.exact == "/blue"


def test_07_cloudformation(examples):
    model = load_paths([examples["07"]])
    found = names(model, "howto-grpc-mesh")
    assert found == {"nodes": ["color_server"], "services": ["color_server.howto-grpc.local"], "routers": [], "routes": {},
                     "gateways": ["color_gateway"], "gateway_routes": {"color_gateway": ["gateway_route"]}}
    node = model.meshes["howto-grpc-mesh"].virtual_nodes["color_server"].spec
    assert node.serviceDiscovery.awsCloudMap.namespaceName == "howto-grpc.local"  # AWSCloudMap -> awsCloudMap, !Sub
    assert node.listeners[0].healthCheck.protocol == "grpc"
    route = model.meshes["howto-grpc-mesh"].gateway_routes["color_gateway"]["gateway_route"].spec
    assert route.grpcRoute.match.serviceName == "color.ColorService"  # values are left alone
    assert "cds_egress_howto-grpc-mesh_color_server_grpc_8080" in \
        compiled(model, "mesh/howto-grpc-mesh/virtualGateway/color_gateway")


def test_08_timeouts(examples):
    model = load_paths([examples["08"]])
    front = model.meshes[NS].virtual_nodes[f"front_{NS}"].spec
    assert front.listeners[0].timeout.http.perRequest.value == 60


def test_cli_validate_exits_0_on_every_example(examples):
    for key, path in sorted(examples.items()):
        paths = [str(path)] + ([str(path.parent / "yelb-mesh.yaml")] if key == "05" else [])
        result = subprocess.run([sys.executable, "-m", "xds_server.cli", "validate", *paths], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (key, result.stderr)
        assert "valid: mesh" in result.stdout + result.stderr


def test_parse_cache_follows_other_files(tmp_path):
    """A file's conversion depends on the custom resources of the other files (refs, mesh)."""
    (tmp_path / "mesh.yaml").write_text(textwrap.dedent(YELB))
    (tmp_path / "router.yaml").write_text(substituted("05-eks-getting-started-router-v1-v2-retry.yaml"))
    cache = ParseCache()
    first = load_paths([tmp_path], parse_cache=cache)
    (tmp_path / "mesh.yaml").write_text(YELB.replace("awsName: yelb-appserver-virtual-node", "awsName: appserver-v1"))
    second = load_paths([tmp_path], parse_cache=cache)
    route = second.meshes["yelb"].routes["yelb-appserver-virtual-router"]["route-to-yelb-appserver"].spec
    assert route.httpRoute.action.weightedTargets[0].virtualNode == "appserver-v1"
    assert "yelb-appserver-virtual-node" in first.meshes["yelb"].virtual_nodes


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
    out = errors(("m.yaml", MESH), ("n.yaml", node))
    assert len(out) == 1
    assert out[0].startswith("n.yaml: VirtualNode shop-mesh/front_ns (k8s VirtualNode ns/front, document 1, line 2): "
                             "spec.backends[0].virtualService.virtualServiceARN: ")
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
        "converted (known: Mesh, VirtualNode, VirtualService, VirtualRouter, VirtualGateway, GatewayRoute)",
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
        "(known: AWS::AppMesh::Mesh, AWS::AppMesh::VirtualNode, AWS::AppMesh::VirtualService, AWS::AppMesh::VirtualRouter, "
        "AWS::AppMesh::Route, AWS::AppMesh::VirtualGateway, AWS::AppMesh::GatewayRoute)",
        "stack.yaml: CloudFormation Node (document 1, line 2): Resources.Node.Properties.MeshName.Ref: "
        "Ref Mesh is that resource's ARN, not its name; use !GetAtt Mesh.<Kind>Name",
        "stack.yaml: VirtualRouter m/r (CloudFormation Other, document 1, line 2): "
        "Resources.Other.Properties.Spec.Listeners[0].PortMapping.Port: must be <= 65535",
    ]


def test_mutated_documents_only_ever_give_model_errors(examples):
    """Random damage to real CRDs and templates: every outcome is a model or a ModelError."""
    import yaml

    from mesh_model.load.yaml_scan import StrictLoader

    sources = [[d for d in yaml.load_all(examples[k].read_text(), Loader=StrictLoader) if d is not None]
               for k in ("01", "06", "07")]
    values = [None, 1, True, "", "${X}", "a/b", [], {}, [1], {"name": 1}, {"Ref": "Nope"}, {"Fn::GetAtt": 5},
              {"Fn::Sub": ["${A}", {"A": {"Fn::If": 1}}]}, "arn:aws:appmesh:r:1:mesh/m/virtualNode/x", {"name": "red"}]

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
