"""CloudFormation templates as `aws cloudformation deploy` deploys them: Conditions and
Fn::If, pseudo parameters, cross-stack exports (Fn::ImportValue), Fn::GetAtt of literal
properties and of attributes known only after deploy (--resource-attribute), one template
deployed several times (TEMPLATE@Key=Value,...), and overrides a template does not declare."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mesh_model import ModelError, load_paths, load_texts
from xds_server.cli import build_parser
from xds_server.cli.options import load_options

from tests.appmesh_inputs import envoy_rejections
from tests.paths import REPO

FOLDER = REPO / "tests" / "inputs" / "cloudformation"
MESH_STACK, CATALOG_STACK = FOLDER / "shop-mesh-stack.yaml", FOLDER / "shop-catalog-stack.yaml"
LB = "PublicLoadBalancer.DNSName"
PROD = [f"{MESH_STACK}@AWS::StackName=shop-prod,EnvName=prod,TlsMode=STRICT,{LB}=shop-prod-1.elb.amazonaws.com",
        f"{CATALOG_STACK}@AWS::StackName=shop-catalog-prod,MeshStack=shop-prod,TlsMode=STRICT"]
DEV = [f"{MESH_STACK}@AWS::StackName=shop-dev,{LB}=shop-dev-1.elb.amazonaws.com",
       f"{CATALOG_STACK}@AWS::StackName=shop-catalog-dev"]
ARN = "arn:aws:acm:us-east-1:111122223333:certificate/0b1c2d3e"
GIVEN = {"region": "us-east-1", "account_id": "111122223333"}


def messages(err: pytest.ExceptionInfo) -> str:
    return "\n".join(str(issue) for issue in err.value.issues)


def test_prod_stacks_conditions_exports_and_instances():
    warnings: list[str] = []
    model = load_paths(PROD, parameters={"CertificateArn": ARN, "Colour": "blue"}, warnings=warnings, **GIVEN)
    mesh = model.meshes["shop-prod-mesh"]  # ${AWS::StackName}-mesh, exported to the catalog stack
    assert mesh.resource.spec.egressFilter.type == "DROP_ALL"  # Fn::If IsProd
    node = mesh.virtual_nodes["catalog-us-east-1"]  # ${AWS::Region}
    tls = node.spec.listeners[0].tls
    assert tls.mode == "STRICT" and tls.certificate.acm.certificateArn == ARN
    # Fn::Join of two imports: the Cloud Map service's Name (a literal property) and a Sub
    assert node.spec.serviceDiscovery.dns.hostname == "catalog.prod.shop.local"
    # Condition: WithCanary (IsProd from Fn::Select/Fn::Split, And/Or/Condition)
    assert mesh.virtual_nodes["catalog-canary"].spec.serviceDiscovery.dns.hostname == "canary.111122223333.internal"
    # the load balancer's DNS name: known after deploy, given with the instance
    assert set(mesh.virtual_services) == {"shop-prod-1.elb.amazonaws.com"}
    # CertificateArn is declared by the catalog stack only: ignored by the mesh stack, no warning
    assert warnings == ["--parameter-overrides Colour ignored: no loaded CloudFormation template declares it "
                        "(declared: CertificateArn, EnvName, MeshStack, Port, TlsMode)"]


def test_dev_stacks_from_flags_leave_out_what_conditions_exclude():
    model = load_paths([MESH_STACK, CATALOG_STACK], stack_name="shop-dev",
                       attributes={LB: "shop-dev-1.elb.amazonaws.com"}, **GIVEN)
    mesh = model.meshes["shop-dev-mesh"]
    assert mesh.resource.spec.egressFilter.type == "ALLOW_ALL"
    assert set(mesh.virtual_nodes) == {"catalog-us-east-1"}  # no canary outside prod
    assert mesh.virtual_nodes["catalog-us-east-1"].spec.listeners[0].tls is None  # !Ref AWS::NoValue
    assert mesh.virtual_nodes["catalog-us-east-1"].spec.serviceDiscovery.dns.hostname == "catalog.dev.shop.local"


def test_one_template_deployed_twice_with_different_parameters(tmp_path, envoy_binary):
    model = load_paths(PROD + DEV, parameters={"CertificateArn": ARN}, **GIVEN)
    assert set(model.meshes) == {"shop-prod-mesh", "shop-dev-mesh"}
    assert set(model.meshes["shop-dev-mesh"].virtual_services) == {"shop-dev-1.elb.amazonaws.com"}
    assert "catalog-canary" not in model.meshes["shop-dev-mesh"].virtual_nodes
    assert envoy_rejections(model, tmp_path) == []


def test_attribute_known_only_after_deploy_names_the_flag():
    with pytest.raises(ModelError) as err:
        load_paths([MESH_STACK, CATALOG_STACK], stack_name="shop-dev", **GIVEN)
    text = messages(err)
    assert "Fn::GetAtt PublicLoadBalancer.DNSName: PublicLoadBalancer does not set DNSName" in text
    assert "--resource-attribute PublicLoadBalancer.DNSName=VALUE" in text
    assert "Fn::ImportValue shop-dev:LoadBalancerDns" in text


def test_pseudo_parameter_not_given_names_its_flag():
    with pytest.raises(ModelError) as err:
        load_paths([MESH_STACK, CATALOG_STACK], attributes={LB: "x.example.com"}, region="us-east-1")
    text = messages(err)
    assert "the template uses AWS::StackName: give it with --stack-name VALUE" in text
    assert "shop-dev-mesh" in load_paths(DEV, region="us-east-1").meshes  # no canary in dev: no AWS::AccountId needed
    with pytest.raises(ModelError) as err:
        load_paths(PROD, region="us-east-1")
    assert "Resources.CanaryNode.Properties.Spec.ServiceDiscovery.DNS.Hostname.Fn::Sub: the template uses " \
        "AWS::AccountId: give it with --account-id VALUE (or AWS::AccountId=VALUE in a TEMPLATE@... stack instance)" \
        in messages(err)


def test_instance_errors_name_the_instance():
    bad = f"{CATALOG_STACK}@AWS::StackName=shop-catalog-prod,MeshStak=shop-prod"
    with pytest.raises(ModelError) as err:
        load_paths([PROD[0], bad], **GIVEN)
    text = messages(err)
    assert f"{bad}: MeshStak: unknown parameter MeshStak: the template {CATALOG_STACK} does not declare it" in text
    # the instance's own import fails (MeshStack default shop-dev is not loaded): said of that instance
    assert f"{bad}: CloudFormation CatalogNode" in text
    assert "no CloudFormation template loaded with this one exports 'shop-dev:MeshName'" in text


def test_same_export_twice_names_both_instances():
    twice = [f"{MESH_STACK}@AWS::StackName=shop-dev,{LB}=a", f"{MESH_STACK}@AWS::StackName=shop-dev,EnvName=prod,{LB}=b",
             f"{CATALOG_STACK}@AWS::StackName=c"]
    with pytest.raises(ModelError) as err:
        load_paths(twice, **GIVEN)
    assert f"export name 'shop-dev:MeshName' is exported twice: also by {twice[0]} Outputs.MeshName" in messages(err)


CONDITIONS = """
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Env: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  Loop: !Not [!Condition Loop]
Resources:
  Mesh:
    Type: AWS::AppMesh::Mesh
    Properties: {MeshName: shop}
  Node:
    Type: AWS::AppMesh::VirtualNode
    Condition: Missing
    Properties:
      MeshName: shop
      VirtualNodeName: !If [Loop, a, b]
  Other:
    Type: AWS::AppMesh::VirtualNode
    Properties:
      MeshName: shop
      VirtualNodeName: !If [IsProd, a]
"""


def test_condition_errors_name_the_path():
    with pytest.raises(ModelError) as err:
        load_texts([("stack.yaml", CONDITIONS)])
    text = messages(err)
    assert "Resources.Node.Condition: no condition 'Missing' in the template's Conditions (declared: IsProd, Loop)" in text
    assert "Resources.Other.Properties.VirtualNodeName.Fn::If: expected [condition name, value if true, value if false]" in text


def test_import_without_exporter():
    template = CONDITIONS.split("  Node:")[0] + "  Node:\n    Type: AWS::AppMesh::VirtualNode\n    Properties:\n" \
        "      MeshName: !ImportValue mesh-name\n      VirtualNodeName: red\n"
    with pytest.raises(ModelError) as err:
        load_texts([("stack.yaml", template)])
    assert "Fn::ImportValue mesh-name: no CloudFormation template loaded with this one exports 'mesh-name' (exported: none)" \
        in messages(err)


@pytest.mark.parametrize("command", ["validate", "render", "serve", "apply", "explain"])
def test_every_command_takes_the_stack_flags(command):
    extra = {"render": ["--node", "mesh/m/virtualNode/n"], "apply": ["--api", "http://127.0.0.1:1"],
             "explain": ["--node", "mesh/m/virtualNode/n", "GET", "http://a/"]}.get(command, [])
    args = build_parser().parse_args([command, str(MESH_STACK), *extra, "--stack-name", "shop", "--region", "eu-west-1",
                                      "--account-id", "111122223333", "--resource-attribute", f"{LB}=lb.example.com",
                                      "--parameter-overrides", "EnvName=prod"])
    options = load_options(args)
    assert options == {"parameters": {"EnvName": "prod"}, "variables": {}, "stack_name": "shop", "region": "eu-west-1",
                       "account_id": "111122223333", "attributes": {LB: "lb.example.com"},
                       "namespace": "default"}
    if command == "serve":
        from xds_server.cli.serve import config
        assert config(args).load_options == options


def test_cli_validate_prints_the_warning_and_renders_the_instances(tmp_path):
    run = [sys.executable, "-m", "xds_server.cli"]
    flags = ["--parameter-overrides", f"CertificateArn={ARN}", "Colour=blue", "--region", "us-east-1",
             "--account-id", "111122223333"]
    done = subprocess.run([*run, "validate", *PROD, *flags], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "warning: --parameter-overrides Colour ignored: no loaded CloudFormation template declares it" in done.stderr
    out = tmp_path / "catalog.yaml"
    done = subprocess.run([*run, "render", *PROD, *flags, "--node", "mesh/shop-prod-mesh/virtualNode/catalog-us-east-1",
                           "-o", str(out)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ARN in out.read_text()


def test_parse_cache_follows_the_exporting_template(tmp_path):
    """serve's reload: the importing template is converted again when an export changes."""
    from mesh_model.load import ParseCache

    exporter = tmp_path / "mesh.yaml"
    importer = tmp_path / "node.yaml"
    exporter.write_text(MESH_STACK.read_text())
    importer.write_text(CATALOG_STACK.read_text())
    cache = ParseCache()
    options = {"stack_name": "shop-dev", "attributes": {LB: "lb.example.com"}, **GIVEN}
    assert "shop-dev-mesh" in load_paths([tmp_path], parse_cache=cache, **options).meshes
    exporter.write_text(MESH_STACK.read_text().replace("'${AWS::StackName}-mesh'", "'${AWS::StackName}-mesh2'"))
    model = load_paths([tmp_path], parse_cache=cache, **options)
    assert set(model.meshes) == {"shop-dev-mesh2"}
    assert "catalog-us-east-1" in model.meshes["shop-dev-mesh2"].virtual_nodes


def test_watched_paths_are_the_templates_of_the_instances(tmp_path):
    from mesh_model.load.files import model_files
    from mesh_model.load.formats import watched_paths

    assert watched_paths(PROD + DEV + [tmp_path]) == [str(MESH_STACK), str(CATALOG_STACK), str(tmp_path)]
    assert model_files(watched_paths(PROD)) == [str(MESH_STACK), str(CATALOG_STACK)]


def test_cdk_synth_output_with_cross_stack_references(tmp_path, envoy_binary):
    """`cdk synth` JSON: no AWSTemplateFormatVersion, Rules, Metadata, a CDKMetadata resource
    under a Condition, exports named by CDK for a cross-stack reference."""
    mesh, catalog = FOLDER / "cdk-mesh-stack.template.json", FOLDER / "cdk-catalog-stack.template.json"
    model = load_paths([f"{mesh}@AWS::StackName=ShopMeshStack", catalog], account_id="111122223333")
    node = model.meshes["ShopMeshStack-mesh"].virtual_nodes["catalog-111122223333"]
    assert node.spec.serviceDiscovery.awsCloudMap.serviceName == "catalog"
    assert envoy_rejections(model, tmp_path) == []


MAPPINGS = """
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  Env: {Type: String, Default: prod}
Mappings:
  Ports:
    prod: {Http: 8443}
    dev: {Http: 8080}
Resources:
  Mesh:
    Type: AWS::AppMesh::Mesh
    Properties: {MeshName: shop}
  Node:
    Type: AWS::AppMesh::VirtualNode
    Properties:
      MeshName: !GetAtt Mesh.MeshName
      VirtualNodeName: red
      Spec:
        Listeners: [{PortMapping: {Port: !FindInMap [Ports, !Ref Env, Http], Protocol: http}}]
        ServiceDiscovery: {DNS: {Hostname: !Sub '${Endpoint.Address}.${AWS::URLSuffix}'}}
        Logging: !If [Never, {AccessLog: {File: {Path: /dev/stdout}}}, !Ref AWS::NoValue]
  Endpoint:
    Type: AWS::RDS::DBInstance
    Properties: {Engine: postgres}
Conditions:
  Never: !Equals [!Ref 'AWS::Partition', aws-cn]
"""


def test_find_in_map_sub_of_a_given_attribute_and_partition():
    model = load_texts([("stack.yaml", MAPPINGS)], attributes={"Endpoint.Address": "db.internal"}, region="cn-north-1")
    node = model.meshes["shop"].virtual_nodes["red"].spec
    assert node.listeners[0].portMapping.port == 8443
    assert node.serviceDiscovery.dns.hostname == "db.internal.amazonaws.com.cn"
    assert node.logging.accessLog.file.path == "/dev/stdout"  # Never is true in aws-cn
    node = load_texts([("stack.yaml", MAPPINGS)], attributes={"Endpoint.Address": "db"}, parameters={"Env": "dev"},
                      region="us-east-1").meshes["shop"].virtual_nodes["red"].spec
    assert node.listeners[0].portMapping.port == 8080 and node.logging is None
