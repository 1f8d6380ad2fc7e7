"""The eight public App Mesh examples: each loads with the App Mesh names the walkthroughs
give, ``meshplane validate`` accepts it, and every node and gateway ``meshplane render``s to a
bootstrap that ``envoy --mode validate`` accepts."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from examples_check.public_examples import CFN, FILES, example_paths, examples_dir
from mesh_model import load_paths
from tests.certs import CertificateAuthority
from harness.envoy import validate_config
from tests.appmesh_inputs import compiled_names as compiled, names_of as names
from tests.paths import REPO
NS = "howto-k8s-http2"


def meshplane(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "xds_server.cli", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    if check:
        assert result.returncode == 0, (args, result.stderr)
    return result


def test_the_eight_files_are_there():
    folder = examples_dir()
    assert sorted(p.name for p in folder.glob("0*.yaml")) == sorted(FILES)


# ---------------------------------------------------------------- what each example gives


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
    model = load_paths(example_paths(examples, "05"))
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


# ---------------------------------------------------------------- the CLI and Envoy


@pytest.mark.parametrize("number", [name[:2] for name in FILES])
def test_validate_then_render_every_node_and_envoy_accepts_it(examples, number, tmp_path, envoy_binary):
    paths = [str(p) for p in example_paths(examples, number)]
    result = meshplane("validate", *paths)
    assert "valid: mesh" in result.stdout + result.stderr
    model = load_paths(example_paths(examples, number))
    node_ids = [f"mesh/{mesh.name}/{kind}/{name}" for mesh in model.meshes.values()
                for kind, members in (("virtualNode", mesh.virtual_nodes), ("virtualGateway", mesh.virtual_gateways))
                for name in members]
    assert node_ids, number
    mounted = tmp_path / "certs"
    for i, node_id in enumerate(node_ids):
        out = tmp_path / f"bootstrap-{i}.yaml"
        meshplane("render", *paths, "--node", node_id, "-o", str(out))
        text = _with_mounted_certificates(out.read_text(), mounted)
        out.write_text(text)
        ok, output = validate_config(out, binary=envoy_binary)
        assert ok, f"envoy --mode validate rejected {number} {node_id}:\n{output}"


def _with_mounted_certificates(bootstrap: str, folder: Path) -> str:
    """Example 02 names certificate files where its pods mount secrets (``/certs/``): Envoy
    reads them at validation, so stand-ins (fresh test-only keys) go to ``folder``."""
    files = sorted(set(re.findall(r"/certs/([\w.-]+)", bootstrap)))
    if not files:
        return bootstrap
    ca = CertificateAuthority("public examples stand-in CA")
    leaf = ca.issue(folder / "leaf", dns=["stand-in.local"])
    for name in files:
        source = leaf.key if "key" in name else ca.write(folder / "ca.pem") if name.startswith("ca") else leaf.cert
        (folder / name).write_bytes(Path(source).read_bytes())
    return re.sub(r"/certs/(?=[\w.-]+)", f"{folder}/", bootstrap)


def test_cloudformation_example_needs_its_parameter():
    """Unchanged, example 07's ProjectName has no Default: the CLI says which flag gives it."""
    example = examples_dir() / CFN
    result = meshplane("validate", str(example), check=False)
    assert result.returncode == 1 and "--parameter-overrides ProjectName=VALUE" in result.stderr
    meshplane("validate", str(example), "--parameter-overrides", "ProjectName=howto-grpc")


def test_cloudformation_example_specs_are_accepted():
    """Example 07 is the App Mesh API shape in PascalCase: each spec (gateway ones included)
    validates once keys are camelCased, and its mesh loads."""
    import yaml

    from mesh_model import load_texts
    from mesh_model.spec.shapes import SPEC_BY_KIND

    class CfnLoader(yaml.SafeLoader):
        pass

    CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node))

    def camel(value):
        if isinstance(value, dict):
            return {re.sub(r"^[A-Z]+(?=[A-Z][a-z])|^[A-Z]", lambda m: m.group().lower(), k): camel(v) for k, v in value.items()}
        return [camel(v) for v in value] if isinstance(value, list) else value

    template = yaml.load((examples_dir() / CFN).read_text(), Loader=CfnLoader)
    docs, kinds = ["kind: Mesh\nname: color-mesh\n"], []
    for resource in template["Resources"].values():
        kind = resource["Type"].split("::")[-1]
        props = resource["Properties"]
        kinds.append(kind)
        if kind == "Mesh":
            continue
        spec = camel(props["Spec"])
        SPEC_BY_KIND[kind].model_validate(spec)  # raises on any problem
        if kind in ("VirtualNode", "VirtualService"):
            docs.append(yaml.safe_dump({"kind": kind, "mesh": "color-mesh", "name": props[f"{kind}Name"], "spec": spec}))
    assert sorted(kinds) == ["GatewayRoute", "Mesh", "VirtualGateway", "VirtualNode", "VirtualService"]
    model = load_texts([("cfn.yaml", "---\n".join(docs))])
    node = model.meshes["color-mesh"].virtual_nodes["color_server"].spec
    assert node.listeners[0].healthCheck.protocol == "grpc"
    assert node.serviceDiscovery.awsCloudMap.serviceName == "color_server"
