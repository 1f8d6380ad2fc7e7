"""Loading valid App Mesh models from files and folders (the happy paths)."""
from __future__ import annotations

import json
import textwrap

import pytest

from mesh_model import MeshModel, ModelError, load_paths, load_texts
from mesh_model.spec.shapes import CloudMapInstance, Duration, RouteSpec, VirtualNodeSpec

MESH = """
kind: Mesh
name: shop
spec:
  egressFilter: {type: ALLOW_ALL}
---
kind: VirtualService
mesh: shop
name: catalog.shop.local
spec:
  provider:
    virtualRouter: {virtualRouterName: catalog-router}
---
kind: VirtualRouter
mesh: shop
name: catalog-router
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
---
kind: Route
mesh: shop
virtualRouter: catalog-router
name: main
spec:
  priority: 10
  httpRoute:
    match:
      prefix: /
      headers:
        - name: x-canary
          invert: true
          match: {exact: "yes"}
    action:
      weightedTargets:
        - {virtualNode: catalog-v1, weight: 90}
        - {virtualNode: catalog-v2, weight: 10, port: 8080}
    retryPolicy:
      maxRetries: 2
      perRetryTimeout: {unit: ms, value: 2000}
      httpRetryEvents: [server-error, gateway-error]
      tcpRetryEvents: [connection-error]
    timeout:
      perRequest: {unit: s, value: 60}
"""

NODES = """
kind: VirtualNode
mesh: shop
name: catalog-v1
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
      healthCheck:
        protocol: http
        path: /ping
        port: 8080
        healthyThreshold: 2
        unhealthyThreshold: 3
        intervalMillis: 5000
        timeoutMillis: 2000
      outlierDetection:
        maxServerErrors: 5
        maxEjectionPercent: 50
        interval: {unit: s, value: 10}
        baseEjectionDuration: {unit: s, value: 10}
      connectionPool:
        http: {maxConnections: 100}
      timeout:
        http:
          perRequest: {unit: s, value: 60}
          idle: {unit: s, value: 300}
  serviceDiscovery:
    dns: {hostname: catalog-v1.shop.local}
---
kind: VirtualNode
mesh: shop
name: catalog-v2
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
  serviceDiscovery:
    dns: {hostname: catalog-v2.shop.local, responseType: ENDPOINTS}
---
kind: VirtualNode
mesh: shop
name: front
spec:
  backends:
    - virtualService: {virtualServiceName: catalog.shop.local}
  listeners:
    - portMapping: {port: 9000, protocol: http}
  serviceDiscovery:
    awsCloudMap: {namespaceName: shop.local, serviceName: front}
---
kind: CloudMapService
namespaceName: shop.local
name: front
spec:
  instances:
    - instanceId: i-1
      attributes: {AWS_INSTANCE_IPV4: 10.0.0.1, AWS_INSTANCE_PORT: "9000", zone: a}
    - attributes: {AWS_INSTANCE_IPV6: "fd00::1"}
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_mesh_loads_typed_objects(tmp_path):
    write(tmp_path, "mesh.yaml", MESH)
    write(tmp_path, "nodes/nodes.yml", NODES)
    model = load_paths([tmp_path])
    assert isinstance(model, MeshModel)
    mesh = model.meshes["shop"]
    assert mesh.spec.egressFilter.type == "ALLOW_ALL"
    route = mesh.routes["catalog-router"]["main"]
    assert route.spec.httpRoute.action.weightedTargets[0].weight == 90
    assert route.spec.route_type == "httpRoute" and route.spec.route is route.spec.httpRoute
    assert route.spec.httpRoute.match.headers[0].invert is True
    assert route.spec.httpRoute.match.headers[0].match.which == "exact"
    assert route.spec.httpRoute.retryPolicy.perRetryTimeout.to_millis() == 2000
    assert route.file == str(tmp_path / "mesh.yaml")
    assert route.label == "Route shop/catalog-router/main"

    v1 = mesh.virtual_nodes["catalog-v1"].spec
    listener = v1.listeners[0]
    assert isinstance(v1, VirtualNodeSpec) and isinstance(v1.listeners, tuple)
    assert listener.portMapping.port == 8080
    assert listener.healthCheck.unhealthyThreshold == 3
    assert listener.outlierDetection.interval.to_millis() == 10000
    assert listener.connectionPool.http.maxPendingRequests is None
    assert listener.timeout.http.perRequest.to_millis() == 60000
    assert v1.serviceDiscovery.dns.responseType == "LOADBALANCER"  # App Mesh default
    assert mesh.virtual_nodes["catalog-v2"].spec.serviceDiscovery.dns.responseType == "ENDPOINTS"
    assert mesh.virtual_nodes["front"].spec.backends[0].virtualService.virtualServiceName == "catalog.shop.local"
    assert mesh.virtual_services["catalog.shop.local"].spec.provider.virtualRouter.virtualRouterName == "catalog-router"
    assert list(mesh.virtual_nodes) == ["catalog-v1", "catalog-v2", "front"]  # sorted

    instances = model.cloud_map[("shop.local", "front")].spec.instances
    assert (instances[0].address, instances[0].port, instances[0].instanceId) == ("10.0.0.1", 9000, "i-1")
    assert (instances[1].address, instances[1].port) == ("fd00::1", None)


def test_model_is_immutable(tmp_path):
    model = load_texts([("mesh.yaml", MESH), ("nodes.yaml", NODES)])
    spec = model.meshes["shop"].virtual_nodes["catalog-v1"].spec
    with pytest.raises(Exception):
        spec.listeners = ()
    with pytest.raises(TypeError):
        model.meshes["shop"].virtual_nodes["x"] = None  # type: ignore[index]


def test_file_order_does_not_matter():
    a = load_texts([("a.yaml", MESH), ("b.yaml", NODES)])
    b = load_texts([("b.yaml", NODES), ("a.yaml", MESH)])
    assert list(a.meshes["shop"].virtual_nodes) == list(b.meshes["shop"].virtual_nodes)
    assert a.meshes["shop"].routes["catalog-router"]["main"] == b.meshes["shop"].routes["catalog-router"]["main"]


def test_empty_documents_and_minimal_mesh():
    model = load_texts([("m.yaml", "---\n---\nkind: Mesh\nname: bare\n---\n\n")])
    assert model.meshes["bare"].spec.egressFilter is None
    assert model.meshes["bare"].resource.mesh == "bare"
    assert dict(model.meshes["bare"].routes) == {}


def test_router_without_routes_has_empty_route_map():
    text = "kind: Mesh\nname: m\n---\nkind: VirtualRouter\nmesh: m\nname: r\nspec: {listeners: [{portMapping: {port: 80, protocol: tcp}}]}\n"
    assert dict(load_texts([("m.yaml", text)]).meshes["m"].routes["r"]) == {}


def test_folder_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path):
    write(tmp_path, "b/mesh.yaml", "kind: Mesh\nname: shop\n")
    write(tmp_path, "a/nodes.json", json.dumps([{"kind": "VirtualNode", "mesh": "shop", "name": "n1"}]))
    write(tmp_path, "a/readme.txt", "not: [yaml")
    write(tmp_path, "..data/mesh.yaml", "kind: Mesh\nname: shop\n")  # k8s ConfigMap twin
    model = load_paths([str(tmp_path)])
    assert list(model.meshes["shop"].virtual_nodes) == ["n1"]


def test_same_file_given_twice_loads_once(tmp_path):
    path = write(tmp_path, "mesh.yaml", MESH + "---\n" + NODES)
    model = load_paths([path, str(path), tmp_path])
    assert "catalog-v1" in model.meshes["shop"].virtual_nodes


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path / "nope"])
    assert str(err.value) == f"{tmp_path / 'nope'}: no such file or directory"


def test_all_route_types_and_unions_parse():
    spec = RouteSpec.model_validate({
        "grpcRoute": {
            "match": {"serviceName": "pkg.Svc", "methodName": "Get",
                      "metadata": [{"name": "k", "match": {"range": {"start": 1, "end": 5}}}]},
            "action": {"weightedTargets": [{"virtualNode": "n", "weight": 1}]},
            "retryPolicy": {"maxRetries": 1, "perRetryTimeout": {"unit": "s", "value": 1}, "grpcRetryEvents": ["unavailable"]},
        }
    })
    assert spec.grpcRoute.match.metadata[0].match.range.end == 5
    tcp = RouteSpec.model_validate({"tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "n", "weight": 1}]}}})
    assert tcp.route_type == "tcpRoute" and tcp.tcpRoute.match is None
    assert Duration(unit="s", value=2).to_millis() == 2000
    assert CloudMapInstance(attributes={"AWS_INSTANCE_IPV4": "1.2.3.4"}).port is None


def test_tls_logging_and_cloud_map_node_spec():
    spec = VirtualNodeSpec.model_validate({
        "backendDefaults": {"clientPolicy": {"tls": {"validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}}}}},
        "listeners": [{
            "portMapping": {"port": 8443, "protocol": "grpc"},
            "tls": {"mode": "STRICT", "certificate": {"sds": {"secretName": "svc"}},
                    "validation": {"trust": {"sds": {"secretName": "ca"}},
                                   "subjectAlternativeNames": {"match": {"exact": ["spiffe://x"]}}}},
            "connectionPool": {"grpc": {"maxRequests": 10}},
            "timeout": {"grpc": {"idle": {"unit": "ms", "value": 0}}},
        }],
        "logging": {"accessLog": {"file": {"path": "/dev/stdout", "format": {"json": [{"key": "a", "value": "%START_TIME%"}]}}}},
        "serviceDiscovery": {"awsCloudMap": {"namespaceName": "ns", "serviceName": "s", "attributes": [{"key": "v", "value": "1"}]}},
    })
    assert spec.backendDefaults.clientPolicy.tls.enforce is True  # App Mesh default
    assert spec.logging.accessLog.file.format.json[0].value == "%START_TIME%"
    assert spec.listeners[0].tls.certificate.which == "sds"


def test_cloud_map_service_without_node_is_fine_and_node_without_service_too():
    text = """
kind: Mesh
name: m
---
kind: VirtualNode
mesh: m
name: n
spec:
  listeners: [{portMapping: {port: 80, protocol: http}}]
  serviceDiscovery: {awsCloudMap: {namespaceName: ns, serviceName: nobody-registered}}
---
kind: CloudMapService
namespaceName: other
name: lonely
spec: {instances: []}
"""
    model = load_texts([("m.yaml", text)])
    assert model.cloud_map[("other", "lonely")].spec.instances == ()


def test_cloudformation_template_specs_are_accepted():
    """The project's CloudFormation input is the App Mesh API shape in PascalCase: its specs
    (router, route and gateway ones included) must validate once keys are camelCased, and its
    mesh loads."""
    import re

    import yaml

    from mesh_model.spec.shapes import SPEC_BY_KIND

    from tests.appmesh_inputs import CFN, INPUTS

    source = INPUTS / CFN

    class CfnLoader(yaml.SafeLoader):
        pass

    # intrinsics (!Sub, !Ref, !GetAtt) stand for their values: a name or, for !Ref GrpcPort, a port
    CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: 50051 if node.value == "GrpcPort"
                                    else loader.construct_scalar(node))

    def camel(value):
        if isinstance(value, dict):
            return {re.sub(r"^[A-Z]+(?=[A-Z][a-z])|^[A-Z]", lambda m: m.group().lower(), k): camel(v) for k, v in value.items()}
        return [camel(v) for v in value] if isinstance(value, list) else value

    template = yaml.load(source.read_text(), Loader=CfnLoader)
    docs, kinds = ["kind: Mesh\nname: ledger-mesh\n"], []
    for resource in template["Resources"].values():
        kind = resource["Type"].split("::")[-1]
        props = resource["Properties"]
        kinds.append(kind)
        spec = camel(props.get("Spec", {}))
        SPEC_BY_KIND[kind].model_validate(spec)  # raises on any problem
        if kind == "VirtualNode":
            docs.append(yaml.safe_dump({"kind": kind, "mesh": "ledger-mesh", "name": props[f"{kind}Name"], "spec": spec}))
    assert sorted(kinds) == ["GatewayRoute", "Mesh", "Route", "VirtualGateway", "VirtualNode", "VirtualRouter", "VirtualService"]
    model = load_texts([("cfn.yaml", "---\n".join(docs))])
    node = model.meshes["ledger-mesh"].virtual_nodes["ledger-v1"].spec
    assert node.listeners[0].healthCheck.protocol == "grpc"
    assert node.serviceDiscovery.awsCloudMap.serviceName == "ledger"


def test_parse_cache_reparses_only_changed_files(tmp_path):
    from mesh_model.load import ParseCache

    (tmp_path / "mesh.yaml").write_text(MESH)
    (tmp_path / "nodes.yaml").write_text(NODES)
    cache = ParseCache()
    first = load_paths([tmp_path], parse_cache=cache)
    (tmp_path / "mesh.yaml").write_text(MESH.replace("weight: 90", "weight: 80"))
    second = load_paths([tmp_path], parse_cache=cache)
    shop1, shop2 = first.meshes["shop"], second.meshes["shop"]
    assert shop2.virtual_nodes["catalog-v1"] is shop1.virtual_nodes["catalog-v1"]  # nodes.yaml unchanged: same objects
    assert shop2.routes["catalog-router"]["main"] is not shop1.routes["catalog-router"]["main"]
    assert shop2.routes["catalog-router"]["main"].spec.httpRoute.action.weightedTargets[0].weight == 80
    (tmp_path / "nodes.yaml").write_text(NODES.replace("port: 8080", "port: 99999", 1))
    with pytest.raises(ModelError, match="must be <= 65535"):
        load_paths([tmp_path], parse_cache=cache)
    (tmp_path / "nodes.yaml").write_text(NODES)
    third = load_paths([tmp_path], parse_cache=cache)  # the invalid version was never reused...
    # ...but the documents of the valid version were kept while the file was broken
    assert third.meshes["shop"].virtual_nodes["catalog-v1"] is shop1.virtual_nodes["catalog-v1"]
    assert third.meshes["shop"].virtual_nodes["catalog-v1"].spec.listeners[0].portMapping.port == 8080
