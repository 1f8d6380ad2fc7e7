"""``meshplane export --api`` prints native YAML that ``validate`` accepts; ``meshplane apply
--api`` writes files (native, Kubernetes, CloudFormation) as one all-or-nothing change."""
from __future__ import annotations

import subprocess
import sys

from mesh_model import load_paths
from tests.api.specs import build_mesh, route_spec
from tests.paths import REPO, golden_model


def meshplane(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "xds_server.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"meshplane {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_export_is_valid_native_yaml(api, tmp_path):
    c = api.client()
    build_mesh(c)
    out = tmp_path / "export" / "model.yaml"
    out.parent.mkdir()
    meshplane("export", "--api", api.url, "-o", str(out))
    model = load_paths([out])
    mesh = model.meshes["m"]
    assert sorted(mesh.virtual_nodes) == ["blue", "green"] and sorted(mesh.routes["r"]) == ["main"]
    assert sorted(mesh.gateway_routes["gw"]) == ["to-svc"]
    assert "valid: mesh m (2 virtual nodes)" in meshplane("validate", str(out)).stderr


def test_apply_golden_models_dry_run_prune(api, tmp_path):
    c = api.client()
    retail = golden_model("retail")
    dry = meshplane("apply", str(retail), "--api", api.url, "--dry-run")
    assert "create Mesh retail" in dry.stdout and "dry run" in dry.stderr
    assert c.list_meshes()["meshes"] == []  # a dry run changes nothing
    meshplane("apply", str(retail), "--api", api.url)
    expected = load_paths([retail]).meshes["retail"]
    assert sorted(n["virtualNodeName"] for n in c.list_virtual_nodes(meshName="retail")["virtualNodes"]) == sorted(expected.virtual_nodes)
    again = meshplane("apply", str(retail), "--api", api.url)
    assert again.stdout == "" and "no changes" in again.stderr
    # Kubernetes custom resources and CloudFormation templates go through the same path
    k8s, cfn = golden_model("k8s-howto-http2"), golden_model("cfn-grpc-gateway")
    meshplane("apply", str(k8s), str(cfn), "--api", api.url)
    k8s_meshes = set(load_paths([k8s]).meshes) | set(load_paths([cfn]).meshes)
    assert {m["meshName"] for m in c.list_meshes()["meshes"]} == {"retail"} | k8s_meshes
    gateways = load_paths([cfn]).meshes["howto-grpc-mesh"].virtual_gateways
    assert sorted(g["virtualGatewayName"] for g in c.list_virtual_gateways(meshName="howto-grpc-mesh")["virtualGateways"]) == sorted(gateways)
    # an edit: one route changes, its version grows; --prune removes the k8s meshes
    exported = tmp_path / "exported.yaml"
    meshplane("export", "--api", api.url, "-o", str(exported))
    text = exported.read_text()
    pruned = meshplane("apply", str(retail), "--api", api.url, "--prune", "--dry-run")
    assert "delete Mesh " in pruned.stdout
    meshplane("apply", str(retail), "--api", api.url, "--prune")
    assert {m["meshName"] for m in c.list_meshes()["meshes"]} == {"retail"}
    assert text.startswith("# exported from")


def test_apply_is_all_or_nothing(api, tmp_path):
    c = api.client()
    build_mesh(c)
    files = tmp_path / "files"
    files.mkdir()
    meshplane("export", "--api", api.url, "-o", str(files / "m.yaml"))
    # refused locally (every problem, as validate prints it), nothing sent
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Route\nmesh: m\nvirtualRouter: r\nname: extra\nspec:\n  httpRoute:\n    match: {prefix: /x}\n"
                   "    action:\n      weightedTargets:\n        - {virtualNode: ghost, weight: 1}\n")
    refused = meshplane("apply", str(files), str(bad), "--api", api.url, check=False)
    assert refused.returncode != 0 and "virtual node 'ghost' not found" in refused.stderr
    # refused by the server as a whole: a good node and a bad route in one change -> neither is written
    import json
    import urllib.error
    import urllib.request

    docs = [{"kind": "VirtualNode", "mesh": "m", "name": "new", "spec": {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                                                                         "serviceDiscovery": {"dns": {"hostname": "new.local"}}}},
            {"kind": "Route", "mesh": "m", "virtualRouter": "r", "name": "extra", "spec": route_spec(("ghost", 1), prefix="/x")}]
    req = urllib.request.Request(api.url + "/meshplane/v1/apply", data=json.dumps({"documents": docs}).encode(), method="POST")
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("the server must refuse the change")
    except urllib.error.HTTPError as err:
        assert err.code == 400 and "weightedTargets[0].virtualNode" in json.loads(err.read())["message"]
    assert "new" not in [n["virtualNodeName"] for n in c.list_virtual_nodes(meshName="m")["virtualNodes"]]
    # a store change the files do not hold: --prune deletes it and sets the route back, in one change
    c.create_virtual_node(meshName="m", virtualNodeName="extra", spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
                                                                      "serviceDiscovery": {"dns": {"hostname": "x.local"}}})
    c.update_route(meshName="m", virtualRouterName="r", routeName="main", spec=route_spec(("blue", 1), ("extra", 1)))
    version = c.describe_route(meshName="m", virtualRouterName="r", routeName="main")["route"]["metadata"]["version"]
    ok = meshplane("apply", str(files), "--api", api.url, "--prune")
    assert "delete VirtualNode m/extra" in ok.stdout and "update Route m/r/main" in ok.stdout
    route = c.describe_route(meshName="m", virtualRouterName="r", routeName="main")["route"]
    assert route["metadata"]["version"] == version + 1 and route["spec"] == route_spec(("blue", 1), ("green", 1))
