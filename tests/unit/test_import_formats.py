"""Importing meshes from what App Mesh users hold: ``aws appmesh describe-*``/``list-*`` JSON,
CloudFormation with ``--parameter-overrides``, Terraform ``.tf`` files and ``terraform show
-json``. Every error names the file, the original object and the path in the original."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mesh_model import ModelError, load_paths, load_texts
from mesh_model.compiler import compile_node
from mesh_model.node_id import parse_node_id

from tests.appmesh_inputs import CFN as CFN_INPUT, INPUTS
from tests.paths import GOLDEN, REPO

TF_CASE = GOLDEN / "terraform"

MESH = {"mesh": {"meshName": "shop", "spec": {"egressFilter": {"type": "DROP_ALL"}},
                 "metadata": {"arn": "arn:aws:appmesh:us-west-2:111122223333:mesh/shop", "version": 1},
                 "status": {"status": "ACTIVE"}}}


def node(name: str, **spec) -> dict:
    return {"virtualNode": {"meshName": "shop", "virtualNodeName": name, "metadata": {"version": 2},
                            "status": {"status": "ACTIVE"},
                            "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                                     "serviceDiscovery": {"dns": {"hostname": f"{name}.shop.local"}}, **spec}}}


ROUTER = {"virtualRouter": {"meshName": "shop", "virtualRouterName": "color", "metadata": {}, "status": {"status": "ACTIVE"},
                            "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}}}


def route(weight=90) -> dict:
    return {"route": {"meshName": "shop", "virtualRouterName": "color", "routeName": "main", "metadata": {},
                      "status": {"status": "ACTIVE"},
                      "spec": {"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": [
                          {"virtualNode": "red", "weight": weight}, {"virtualNode": "blue", "weight": 10}]}}}}}


SERVICE = {"virtualService": {"meshName": "shop", "virtualServiceName": "color.shop.local", "metadata": {},
                              "status": {"status": "ACTIVE"},
                              "spec": {"provider": {"virtualRouter": {"virtualRouterName": "color"}}}}}


def describe_files(folder: Path, route_doc=None) -> Path:
    files = {"mesh.json": MESH, "red.json": node("red"), "blue.json": node("blue"),
             "client.json": node("client", backends=[{"virtualService": {"virtualServiceName": "color.shop.local"}}]),
             "router.json": ROUTER, "route.json": route_doc or route(), "service.json": SERVICE}
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data, indent=2))
    return folder


def messages(err: pytest.ExceptionInfo) -> str:
    return str(err.value)


# ------------------------------------------------------------------ describe-* / list-*

def test_describe_folder_loads_like_native(tmp_path):
    model = load_paths([describe_files(tmp_path)])
    mesh = model.meshes["shop"]
    assert sorted(mesh.virtual_nodes) == ["blue", "client", "red"]
    targets = mesh.routes["color"]["main"].spec.httpRoute.action.weightedTargets
    assert [(t.virtualNode, t.weight) for t in targets] == [("red", 90), ("blue", 10)]
    assert compile_node(model, parse_node_id("mesh/shop/virtualNode/client"))


def test_describe_list_of_objects_and_bare_data(tmp_path):
    items = [MESH, node("red")["virtualNode"], node("blue"), ROUTER, route(), SERVICE["virtualService"]]
    file = tmp_path / "all.json"
    file.write_text(json.dumps(items))
    model = load_paths([file])
    assert sorted(model.meshes["shop"].virtual_nodes) == ["blue", "red"]
    assert "color.shop.local" in model.meshes["shop"].virtual_services


def test_describe_error_names_file_and_original_path(tmp_path):
    describe_files(tmp_path, route(weight=-1))
    with pytest.raises(ModelError) as err:
        load_paths([tmp_path])
    text = messages(err)
    assert str(tmp_path / "route.json") in text
    assert "describe-route shop/color/main" in text
    assert "route.spec.httpRoute.action.weightedTargets[0].weight" in text


def test_describe_missing_name_and_unknown_field():
    bad = {"virtualNode": {"meshName": "shop", "spec": {}, "surprise": 1}}
    with pytest.raises(ModelError) as err:
        load_texts([("node.json", json.dumps(bad))])
    assert "virtualNode.virtualNodeName: required" in messages(err)
    assert "virtualNode.surprise: unknown field" in messages(err)


def test_list_output_says_to_use_describe():
    listing = {"virtualNodes": [{"meshName": "shop", "virtualNodeName": "red", "arn": "arn:..."}], "nextToken": None}
    routes = {"routes": [{"meshName": "shop", "virtualRouterName": "color", "routeName": "main"}]}
    with pytest.raises(ModelError) as err:
        load_texts([("mesh.json", json.dumps(MESH)), ("nodes.json", json.dumps(listing)), ("routes.json", json.dumps(routes))])
    text = messages(err)
    assert "virtualNodes[0]: list-virtual-nodes output holds references only, no spec" in text
    assert "aws appmesh describe-virtual-node --mesh-name shop --virtual-node-name red" in text
    assert "aws appmesh describe-route --mesh-name shop --virtual-router-name color --route-name main" in text


# ------------------------------------------------------------------ CloudFormation --parameter-overrides

CFN = """
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  MeshName: {Type: String}
  Port: {Type: Number, Default: 8080}
Resources:
  Mesh:
    Type: AWS::AppMesh::Mesh
    Properties: {MeshName: !Ref MeshName}
  Node:
    Type: AWS::AppMesh::VirtualNode
    Properties:
      MeshName: !GetAtt Mesh.MeshName
      VirtualNodeName: red
      Spec:
        Listeners: [{PortMapping: {Port: !Ref Port, Protocol: http}}]
        ServiceDiscovery: {DNS: {Hostname: red.local}}
"""


def test_parameter_overrides_give_values():
    model = load_texts([("stack.yaml", CFN)], parameters={"MeshName": "prod", "Port": "9090"})
    listener = model.meshes["prod"].virtual_nodes["red"].spec.listeners[0]
    assert listener.portMapping.port == 9090


def test_parameter_without_default_mentions_the_flag():
    with pytest.raises(ModelError) as err:
        load_texts([("stack.yaml", CFN)])
    assert "parameter MeshName has no Default: give its value with --parameter-overrides MeshName=VALUE" in messages(err)


def test_unknown_parameter_is_ignored_with_a_warning_naming_it():
    """As `aws cloudformation deploy` does (one override set given to several stacks)."""
    warnings: list[str] = []
    model = load_texts([("stack.yaml", CFN)], parameters={"MeshName": "prod", "Colour": "red"}, warnings=warnings)
    assert "prod" in model.meshes
    assert warnings == ["--parameter-overrides Colour ignored: no loaded CloudFormation template declares it "
                        "(declared: MeshName, Port)"]


def test_grpc_gateway_template_loads_with_the_flag(tmp_path):
    """The project's CloudFormation input as written: AppName has no Default, GrpcPort has one."""
    template = INPUTS / CFN_INPUT
    for command in ("validate", "render"):
        extra = ["--node", "mesh/ledger-mesh/virtualNode/ledger-v1", "-o", str(tmp_path / "out.yaml")] \
            if command == "render" else []
        done = subprocess.run([sys.executable, "-m", "xds_server.cli", command, str(template), *extra,
                               "--parameter-overrides", "AppName=ledger"],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "cds_ingress_ledger-mesh_ledger-v1_grpc_50051" in (tmp_path / "out.yaml").read_text()
    done = subprocess.run([sys.executable, "-m", "xds_server.cli", "render", str(template), "--parameter-overrides",
                           "AppName=books", "GrpcPort=9443", "--node", "mesh/books-mesh/virtualGateway/ledger-ingress",
                           "-o", str(tmp_path / "gateway.yaml")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cds_egress_books-mesh_ledger-v1_grpc_9443" in (tmp_path / "gateway.yaml").read_text()
    done = subprocess.run([sys.executable, "-m", "xds_server.cli", "validate", str(template)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 1 and "--parameter-overrides AppName=VALUE" in done.stderr


# ------------------------------------------------------------------ Terraform

def test_terraform_folder_and_show_json_compile_the_same():
    from_tf = load_paths([TF_CASE / "model"])
    from_show = load_paths([TF_CASE / "show.json"])
    assert sorted(from_tf.meshes["shop"].virtual_nodes) == ["blue", "client", "red"]
    for name in ("client", "red", "blue"):
        node_id = parse_node_id(f"mesh/shop/virtualNode/{name}")
        assert compile_node(from_tf, node_id) == compile_node(from_show, node_id)


def test_terraform_variables_from_flag_and_var_file(tmp_path):
    model = load_paths([TF_CASE / "model"], variables={"mesh_name": "prod", "red_weight": "70"})
    targets = model.meshes["prod"].routes["color"]["color-route"].spec.httpRoute.action.weightedTargets
    assert [(t.virtualNode, t.weight) for t in targets] == [("red", 70), ("blue", 10)]
    var_file = tmp_path / "prod.tfvars"
    var_file.write_text('mesh_name = "staging"\nred_weight = 60\n')
    done = subprocess.run([sys.executable, "-m", "xds_server.cli", "validate", str(TF_CASE / "model"),
                           "-var-file", str(var_file), "-var", "red_weight=50"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "mesh staging" in done.stderr


def test_terraform_unknown_variable_is_an_error():
    with pytest.raises(ModelError) as err:
        load_paths([TF_CASE / "model"], variables={"colour": "red"})
    assert "unknown variable colour" in messages(err)


def test_terraform_error_names_address_and_attribute():
    text = (TF_CASE / "model" / "main.tf").read_text()
    with pytest.raises(ModelError) as err:
        load_texts([("main.tf", text)], variables={"red_weight": "-1"})
    assert "main.tf: Route shop/color/color-route (aws_appmesh_route.color): " \
           "spec.http_route.action.weighted_target[0].weight: must be >= 0" in messages(err)


def test_terraform_unsupported_expression_and_reference():
    tf = """
resource "aws_appmesh_mesh" "m" { name = "shop" }
resource "aws_appmesh_virtual_node" "a" {
  name      = upper("a")
  mesh_name = aws_appmesh_mesh.m.id
}
resource "aws_appmesh_virtual_node" "b" {
  name      = "b"
  mesh_name = aws_appmesh_virtual_node.a.id
}
resource "aws_appmesh_virtual_node" "c" {
  name      = "c"
  mesh_name = var.nope
}
"""
    with pytest.raises(ModelError) as err:
        load_texts([("m.tf", tf)])
    text = messages(err)
    assert "aws_appmesh_virtual_node.a: name: expression `upper(\"a\")` is not evaluated" in text
    assert "aws_appmesh_virtual_node.b: mesh_name: aws_appmesh_virtual_node.a.id is an App Mesh ID, not its name" in text
    assert "aws_appmesh_virtual_node.c: mesh_name: var.nope: no variable \"nope\"" in text


def test_terraform_variable_without_value_mentions_the_flags():
    tf = 'variable "mesh" {}\nresource "aws_appmesh_mesh" "m" { name = var.mesh }\n'
    with pytest.raises(ModelError) as err:
        load_texts([("m.tf", tf)])
    assert "variable mesh has no value: give it with -var mesh=VALUE or -var-file" in messages(err)
    assert "mesh" in load_texts([("m.tf", tf)], variables={"mesh": "mesh"}).meshes


def test_terraform_invalid_hcl_names_the_file():
    with pytest.raises(ModelError) as err:
        load_texts([("broken.tf", 'resource "aws_appmesh_mesh" "m" {\n')])
    assert "broken.tf" in messages(err) and "not valid Terraform" in messages(err)


def test_terraform_show_error_names_address_and_json_path(tmp_path):
    data = json.loads((TF_CASE / "show.json").read_text())
    route = next(r for r in data["values"]["root_module"]["resources"] if r["type"] == "aws_appmesh_route")
    route["values"]["spec"][0]["http_route"][0]["action"][0]["weighted_target"][0]["weight"] = -1
    index = data["values"]["root_module"]["resources"].index(route)
    file = tmp_path / "show.json"
    file.write_text(json.dumps(data))
    with pytest.raises(ModelError) as err:
        load_paths([file])
    assert (f"aws_appmesh_route.color, document 1): values.root_module.resources[{index}].values.spec[0].http_route[0]"
            ".action[0].weighted_target[0].weight: must be >= 0") in messages(err)


def test_terraform_cloud_map_attributes_and_repeated_blocks():
    tf = """
resource "aws_appmesh_mesh" "m" { name = "shop" }
resource "aws_appmesh_virtual_node" "n" {
  name      = "n"
  mesh_name = "shop"
  spec {
    listener {
      port_mapping {
        port     = 8080
        protocol = "http"
      }
    }
    listener {
      port_mapping {
        port     = 9090
        protocol = "grpc"
      }
    }
    service_discovery {
      aws_cloud_map {
        namespace_name = "shop.local"
        service_name   = "n"
        attributes = {
          stack = "blue"
        }
      }
    }
  }
}
"""
    spec = load_texts([("n.tf", tf)]).meshes["shop"].virtual_nodes["n"].spec
    assert [l.portMapping.port for l in spec.listeners] == [8080, 9090]
    assert [(a.key, a.value) for a in spec.serviceDiscovery.awsCloudMap.attributes] == [("stack", "blue")]
