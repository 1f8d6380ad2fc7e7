"""App Mesh's API rules for native files and the API; the App Mesh controller's webhook rules
for ``appmesh.k8s.aws`` manifests only (issue 23): a route matching on ``port`` alone, as in
App Mesh's multiple-listeners walkthrough, is an App Mesh route; the webhook wants a prefix."""
from __future__ import annotations

import textwrap

import pytest

from mesh_model import ModelError, load_texts
from mesh_model.compiler import compile_node
from mesh_model.node_id import parse_node_id

from tests.appmesh_inputs import envoy_rejections

NATIVE = """
kind: Mesh
name: multi
---
kind: VirtualNode
mesh: multi
name: api
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
    - portMapping: {port: 9090, protocol: http}
  serviceDiscovery: {dns: {hostname: api.multi.local}}
---
kind: VirtualRouter
mesh: multi
name: api-router
spec:
  listeners:
    - portMapping: {port: 8080, protocol: http}
    - portMapping: {port: 9090, protocol: http}
---
kind: Route
mesh: multi
virtualRouter: api-router
name: admin-port
spec:
  httpRoute:
    match: {port: 9090}
    action: {weightedTargets: [{virtualNode: api, weight: 1, port: 9090}]}
---
kind: Route
mesh: multi
virtualRouter: api-router
name: main-port
spec:
  httpRoute:
    match: {port: 8080, headers: [{name: x-tenant, match: {exact: blue}}]}
    action: {weightedTargets: [{virtualNode: api, weight: 1, port: 8080}]}
---
kind: VirtualService
mesh: multi
name: api.multi.local
spec: {provider: {virtualRouter: {virtualRouterName: api-router}}}
---
kind: VirtualNode
mesh: multi
name: caller
spec:
  listeners: [{portMapping: {port: 8000, protocol: http}}]
  serviceDiscovery: {dns: {hostname: caller.multi.local}}
  backends: [{virtualService: {virtualServiceName: api.multi.local}}]
"""

K8S_ROUTER = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: multi}
spec: {namespaceSelector: {matchLabels: {mesh: multi}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: api, namespace: multi}
spec:
  listeners: [{portMapping: {port: 9090, protocol: http}}]
  serviceDiscovery: {dns: {hostname: api.multi.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: api-router, namespace: multi}
spec:
  listeners: [{portMapping: {port: 9090, protocol: http}}]
  routes:
    - name: admin-port
      httpRoute:
        match: {port: 9090}
        action: {weightedTargets: [{virtualNodeRef: {name: api}, weight: 1}]}
"""


def test_a_native_route_may_match_on_port_alone_and_matches_every_path(tmp_path):
    model = load_texts([("multi.yaml", NATIVE)])
    resources = compile_node(model, parse_node_id("mesh/multi/virtualNode/caller"))
    routes = resources["type.googleapis.com/envoy.config.route.v3.RouteConfiguration"]
    text = "\n".join(str(r) for r in routes.values())
    assert 'prefix: "/"' in text and "x-tenant" in text
    assert envoy_rejections(model, tmp_path) == []


def test_the_controller_webhook_rule_stays_for_its_manifests():
    with pytest.raises(ModelError) as err:
        load_texts([("router.yaml", textwrap.dedent(K8S_ROUTER))])
    messages = [f"{i.path}: {i.message}" for i in err.value.issues]
    assert any(m.startswith("spec.routes[0].httpRoute.match: exactly one of prefix, path must be set (the App Mesh "
                            "controller's webhook rule") for m in messages), messages
    fixed = K8S_ROUTER.replace("match: {port: 9090}", "match: {port: 9090, prefix: /}")
    assert "multi" in load_texts([("router.yaml", textwrap.dedent(fixed))]).meshes
