"""Kubernetes manifests as the App Mesh controller reads them: its field spellings
(certificateARN, certificateAuthorityARNs), objects without metadata.namespace (kubectl's
current namespace: --namespace), the same Mesh in two clusters' manifests, and the legacy
controller's appmesh.k8s.aws/v1beta1 objects."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mesh_model import ModelError, load_paths, load_texts

from tests.appmesh_inputs import envoy_rejections
from tests.paths import REPO

FOLDER = REPO / "tests" / "inputs" / "k8s"
EAST, WEST, LEGACY = FOLDER / "shop-cluster-east.yaml", FOLDER / "shop-cluster-west.yaml", FOLDER / "colorapp-v1beta1.yaml"


def messages(err: pytest.ExceptionInfo) -> str:
    return "\n".join(str(issue) for issue in err.value.issues)


def test_two_clusters_one_mesh_controller_spellings_and_namespace(tmp_path, envoy_binary):
    model = load_paths([EAST, WEST], namespace="shop")
    assert set(model.meshes) == {"shop"}
    mesh = model.meshes["shop"]
    assert set(mesh.virtual_nodes) == {"front_shop", "catalog_shop"}  # <name>_<namespace>, namespace from --namespace
    assert set(mesh.virtual_services) == {"catalog.shop.svc.cluster.local"}
    front = mesh.virtual_nodes["front_shop"].spec
    assert front.listeners[0].tls.certificate.acm.certificateArn == "arn:aws:acm:us-west-2:111122223333:certificate/front-east"
    trust = front.backendDefaults.clientPolicy.tls.validation.trust.acm
    assert list(trust.certificateAuthorityArns) == ["arn:aws:acm-pca:us-west-2:111122223333:certificate-authority/shop-ca"]
    assert envoy_rejections(model, tmp_path) == []


def test_namespace_defaults_to_default_as_kubectl():
    model = load_paths([EAST, WEST])
    assert set(model.meshes["shop"].virtual_nodes) == {"front_default", "catalog_default"}


def test_different_copies_of_a_mesh_are_an_error_naming_both_files(tmp_path):
    west = tmp_path / "west.yaml"
    west.write_text(WEST.read_text().replace("egressFilter: {type: DROP_ALL}", "egressFilter: {type: ALLOW_ALL}", 1))
    with pytest.raises(ModelError) as err:
        load_paths([EAST, west], namespace="shop")
    text = messages(err)
    assert f"{west}: Mesh shop (k8s Mesh shop, document 1, line 3): metadata.name: duplicate Mesh 'shop': also defined " \
        f"in {EAST}" in text


def test_both_spellings_at_once_is_an_error():
    manifest = EAST.read_text().replace(
        "certificateARN: arn:aws:acm:us-west-2:111122223333:certificate/front-east",
        "{certificateARN: 'arn:aws:acm:us-west-2:1:certificate/a', certificateArn: 'arn:aws:acm:us-west-2:1:certificate/b'}")
    with pytest.raises(ModelError) as err:
        load_texts([("east.yaml", manifest), ("west.yaml", WEST.read_text())], namespace="shop")
    assert "spec.listeners[0].tls.certificate.acm.certificateARN: set one of certificateARN, certificateArn, not both" \
        in messages(err)


def test_legacy_v1beta1_color_app(tmp_path, envoy_binary):
    model = load_paths([LEGACY])
    mesh = model.meshes["color-mesh"]
    assert mesh.resource.spec.egressFilter.type == "ALLOW_ALL"
    assert set(mesh.virtual_nodes) == {"front-appmesh-demo", "colorteller-appmesh-demo", "colorteller-black-appmesh-demo"}
    front = mesh.virtual_nodes["front-appmesh-demo"].spec
    assert front.serviceDiscovery.dns.hostname == "front.appmesh-demo.svc.cluster.local"
    assert front.backends[0].virtualService.virtualServiceName == "colorteller.appmesh-demo.svc.cluster.local"
    check = front.listeners[0].healthCheck  # the controller's defaults
    assert (check.port, check.protocol, check.healthyThreshold, check.intervalMillis, check.timeoutMillis,
            check.unhealthyThreshold, check.path) == (8080, "http", 10, 30000, 5000, 2, "/ping")
    black = mesh.virtual_nodes["colorteller-black-appmesh-demo"].spec.serviceDiscovery.awsCloudMap
    assert {(a.key, a.value) for a in black.attributes} == {
        ("version", "black"), ("appmesh.k8s.aws/mesh", "color-mesh"),
        ("appmesh.k8s.aws/virtualNode", "colorteller-black-appmesh-demo")}
    service = mesh.virtual_services["colorteller.appmesh-demo.svc.cluster.local"]
    assert service.spec.provider.virtualRouter.virtualRouterName == "colorteller-router-appmesh-demo"
    route = mesh.routes["colorteller-router-appmesh-demo"]["color-route-appmesh-demo"].spec
    assert route.priority == 10
    assert [t.virtualNode for t in route.httpRoute.action.weightedTargets] == [
        "colorteller-appmesh-demo", "colorteller-black-appmesh-demo"]
    assert route.httpRoute.retryPolicy.perRetryTimeout.value == 1000
    assert route.httpRoute.match.headers[0].match.exact == "black"
    assert envoy_rejections(model, tmp_path) == []


def test_legacy_v1beta1_router_listener_from_the_first_target_as_the_controller():
    text = LEGACY.read_text().replace("    listeners:\n      - portMapping: {port: 9080, protocol: http}\n  routes:", "  routes:")
    assert "virtualRouter:\n    name: colorteller-router\n  routes:" in text
    router = load_texts([("color.yaml", text)]).meshes["color-mesh"].virtual_routers["colorteller-router-appmesh-demo"]
    assert router.spec.listeners[0].portMapping.port == 9080
    # the first target without a listener: nothing to take
    text = text.replace("            - {virtualNodeName: colorteller, weight: 1}\n", "            - {virtualNodeName: nowhere, weight: 1}\n")
    with pytest.raises(ModelError) as err:
        load_texts([("color.yaml", text)])
    assert "spec.virtualRouter.listeners: required: the legacy controller took the router's listener from the first " \
        "route's first target VirtualNode, and none is loaded with a listener" in messages(err)


def test_legacy_v1beta1_refuses_what_it_does_not_read():
    text = LEGACY.read_text()
    text = text.replace("  virtualRouter:\n    name: colorteller-router\n    listeners:\n      - portMapping: {port: 9080, protocol: http}\n",
                        "  virtualRouter:\n    name: colorteller-router\n")
    text = text.replace("  meshName: color-mesh\n  listeners:\n    - portMapping: {port: 9080, protocol: http}\n  serviceDiscovery:\n"
                        "    dns:", "  meshName: color-mesh\n  podSelector: {app: x}\n  listeners:\n    - portMapping: {port: 9080, "
                        "protocol: http}\n  serviceDiscovery:\n    dns:", 1)
    text += "---\napiVersion: appmesh.k8s.aws/v1beta1\nkind: VirtualRouter\nmetadata: {name: r, namespace: appmesh-demo}\n"
    with pytest.raises(ModelError) as err:
        load_texts([("color.yaml", text)])
    found = messages(err)
    assert "spec.virtualRouter.listeners" not in found  # taken from colorteller's listener, as the controller did
    assert "k8s VirtualNode appmesh-demo/colorteller (document 4, line" in found
    assert "spec.podSelector: not a field meshplane reads in appmesh.k8s.aws/v1beta1" in found
    assert "kind: appmesh.k8s.aws/v1beta1 has no VirtualRouter" in found


def test_cli_validate_takes_namespace():
    done = subprocess.run([sys.executable, "-m", "xds_server.cli", "validate", str(EAST), str(WEST), "--namespace", "shop"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "mesh shop (2 virtual nodes)" in done.stderr


def test_errors_name_the_namespace_the_object_was_applied_to():
    with pytest.raises(ModelError) as err:
        load_paths([EAST], namespace="shop")  # the catalog node is in the west file
    assert "k8s VirtualService shop/catalog" in messages(err)
    assert "no VirtualNode 'catalog' in namespace 'shop' in the loaded files" in messages(err)
