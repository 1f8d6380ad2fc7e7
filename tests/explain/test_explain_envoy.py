"""``explain`` agrees with a real Envoy.

Several hundred generated requests (random paths with dot segments and double slashes,
methods, query strings, headers, gRPC calls with metadata, unknown hosts and ports) go through
one real Envoy 1.40 per mesh, running the node's compiled config as a static bootstrap, and
through ``explain``. For every request the route Envoy matched (its access log's %ROUTE_NAME%)
is the route explain names, a 404 is a 404 on both sides, and the app that answered is one
explain lists with a non-zero weight; per weighted route the split over many requests matches
explain's probabilities within binomial tolerance.
"""
from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import grpc
import pytest
import yaml

from mesh_model.explain import explain, grpc_request, http_request
from tests.explain.live import ID_HEADER, start_live_mesh
from harness.traffic import http_request as send, split_violations
from tests.paths import GOLDEN

pytestmark = pytest.mark.usefixtures("envoy_binary")

COLORS = """
kind: VirtualService
mesh: retail
name: color.retail.local
spec: {provider: {virtualRouter: {virtualRouterName: color-router}}}
---
kind: VirtualRouter
mesh: retail
name: color-router
spec: {listeners: [{portMapping: {port: 50051, protocol: grpc}}]}
---
kind: Route
mesh: retail
virtualRouter: color-router
name: canary
spec:
  priority: 1
  grpcRoute:
    match:
      serviceName: color.ColorService
      metadata: [{name: x-canary, match: {exact: "yes"}}]
    action: {weightedTargets: [{virtualNode: color-v2, weight: 1}]}
---
kind: Route
mesh: retail
virtualRouter: color-router
name: tiers
spec:
  priority: 2
  grpcRoute:
    match:
      serviceName: color.ColorService
      metadata:
        - {name: x-tier, match: {range: {start: 10, end: 20}}}
        - {name: x-user, invert: true, match: {prefix: bot}}
    action: {weightedTargets: [{virtualNode: color-v1, weight: 1}]}
---
kind: Route
mesh: retail
virtualRouter: color-router
name: get-color
spec:
  priority: 3
  grpcRoute:
    match: {serviceName: color.ColorService, methodName: GetColor}
    action: {weightedTargets: [{virtualNode: color-v1, weight: 75}, {virtualNode: color-v2, weight: 25}]}
---
kind: Route
mesh: retail
virtualRouter: color-router
name: admin-service
spec:
  priority: 4
  grpcRoute:
    match: {serviceName: color.AdminService}
    action: {weightedTargets: [{virtualNode: color-v2, weight: 1}]}
---
kind: VirtualNode
mesh: retail
name: color-v1
spec:
  listeners: [{portMapping: {port: 50051, protocol: grpc}}]
  serviceDiscovery: {dns: {hostname: color-v1.retail.local}}
---
kind: VirtualNode
mesh: retail
name: color-v2
spec:
  listeners: [{portMapping: {port: 50051, protocol: grpc}}]
  serviceDiscovery: {dns: {hostname: color-v2.retail.local}}
"""


def _docs(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _retail_docs() -> list[dict]:
    docs = _docs(GOLDEN / "retail" / "model") + [d for d in yaml.safe_load_all(COLORS) if d]
    for doc in docs:
        if doc.get("kind") == "VirtualNode" and doc["name"] == "front":
            doc["spec"]["backends"].append({"virtualService": {"virtualServiceName": "color.retail.local"}})
    return docs


class Observed:
    """What the real Envoy did with each request, next to what explain said."""

    def __init__(self):
        self.sent: list[tuple[str, object, str | None]] = []  # (id, explanation, answer or None)
        self.by_route: dict[str, Counter] = defaultdict(Counter)
        self.weights: dict[str, dict[str, float]] = {}

    def record(self, request_id: str, explanation, answer: str | None) -> None:
        self.sent.append((request_id, explanation, answer))

    def check(self, live) -> list[str]:
        reached = [s for s in self.sent if s[1].outcome != "no-listener"]
        log = live.routes_by_id(len(reached))
        problems = []
        for request_id, ex, answer in self.sent:
            what = f"{ex.request.describe()} {dict(ex.request.headers)}"
            if ex.outcome == "no-listener":
                if answer != "refused":
                    problems.append(f"{what}: explain says no listener, Envoy answered {answer}")
                continue
            lines = log.get(request_id)
            if not lines:
                problems.append(f"{what}: no access log line for {request_id}")
                continue
            envoy_routes = [route for route, _, _ in lines]
            explained = [hop.route or "-" for hop in ex.hops if hop.route_config]
            if ex.outcome == "not-found":
                explained[-1] = "-"
            if sorted(envoy_routes) != sorted(explained):  # an inner hop (gateway egress) is logged first
                problems.append(f"{what}: Envoy matched routes {envoy_routes}, explain says {explained} ({ex.reason})")
            if ex.outcome == "not-found":
                if answer not in ("404", "UNIMPLEMENTED"):
                    problems.append(f"{what}: explain says 404, Envoy answered {answer}")
                continue
            probabilities = ex.probabilities
            if answer not in probabilities:
                problems.append(f"{what}: answered by {answer}, explain lists {probabilities}")
                continue
            if len(probabilities) > 1:
                self.by_route[ex.envoy_route][answer] += 1
                self.weights[ex.envoy_route] = probabilities
        return problems

    def split_problems(self, minimum: int) -> list[str]:
        problems = []
        for route, counts in self.by_route.items():
            if sum(counts.values()) >= minimum:
                problems.extend(f"route {route}: {p}" for p in split_violations(counts, self.weights[route]))
        return problems


def send_http(live, obs: Observed, *, port: int, host: str, method: str, path: str, headers: dict[str, str],
              to: str | None = None) -> None:
    """One request explained and sent to the live Envoy (``to``: the address it is sent to; by
    default the sidecar's egress, a gateway's ingress for gateways), both outcomes recorded."""
    request_id = uuid.uuid4().hex
    request = http_request(f"http://{host}{path}", method=method, headers=headers, port=port)
    ex = explain(live.resources, request, node=live.node, model=live.model)
    try:
        response = send(method, f"http://{to or live.placement.egress_address}:{port}{path}", host_header=host,
                        headers={**headers, ID_HEADER: request_id}, timeout=10)
        answer = response.headers.get("x-app") if response.status == 200 else str(response.status)
    except ConnectionRefusedError:
        answer = "refused"
    obs.record(request_id, ex, answer)


def _call_grpc(live, obs: Observed, channels, *, authority: str, call: str, metadata: dict[str, str]) -> None:
    request_id = uuid.uuid4().hex
    request = grpc_request(authority, call, metadata=metadata, port=50051)
    ex = explain(live.resources, request, node=live.node, model=live.model)
    try:
        answer = channels[authority].unary_unary(f"/{call}")(b"", metadata=tuple(metadata.items()) + ((ID_HEADER, request_id),), timeout=10).decode()
    except grpc.RpcError as err:
        answer = err.code().name
    obs.record(request_id, ex, answer)


HTTP_HOSTS = [
    ("catalog.retail.local", 8080), ("catalog.retail.local:8080", 8080), ("CATALOG.Retail.Local", 8080),
    ("cart.retail.local", 7070), ("cart.retail.local:7070", 7070), ("recommend.retail.local:9090", 9090),
    ("unknown.retail.local", 8080), ("catalog.retail.local:9999", 8080), ("cart.retail.local", 8080),
    ("catalog.retail.local", 6553),
]
PATHS = ["/", "/admin", "/admin/", "/ADMIN", "/a/../admin", "//admin", "/./admin", "/items/12", "/items/007", "/items/x1",
         "/items/12/more", "/items//12", "/beta", "/deep/er/path", "/items/", "/admin/../items/3"]
QUERIES = ["", "?confirm=true", "?confirm=false", "?confirm", "?x=1&confirm=true", "?confirm=true&confirm=false", "?Confirm=true"]
HEADER_CHOICES = {
    "x-beta": ["yes", "no", "YES"],
    "user-agent": ["curl/8", "googlebot/2.1", "bot"],
    "x-tier": ["0", "1", "4", "5", "-3", "abc", " 3"],
    "x-region": ["eu-west-1", "us-east-1", "EU-west"],
    "x-env": ["staging-prod", "prod-staging", "-prod"],
}
ADMIN = {"x-tier": "3", "x-region": "eu-central", "x-env": "blue-prod"}


def _random_headers(rng: random.Random) -> dict[str, str]:
    if rng.random() < 0.25:
        headers = dict(ADMIN)  # a nearly matching admin request, then spoil one thing or not
        if rng.random() < 0.5:
            name = rng.choice(list(HEADER_CHOICES))
            headers[name] = rng.choice(HEADER_CHOICES[name])
        return headers
    return {name: rng.choice(values) for name, values in HEADER_CHOICES.items() if rng.random() < 0.35}


def test_sidecar_routes_agree_with_envoy(procs, addresses, tmp_path):
    rng = random.Random(11)
    live = start_live_mesh(_retail_docs(), "mesh/retail/virtualNode/front", procs, addresses, tmp_path)
    egress = live.placement.egress_address
    channels = {a: grpc.insecure_channel(f"{egress}:50051", options=[("grpc.default_authority", a)])
                for a in ("color.retail.local:50051", "color.retail.local", "nothing.retail.local:50051")}
    obs = Observed()
    try:
        for _ in range(260):
            host, port = rng.choice(HTTP_HOSTS)
            method = rng.choice(["GET", "GET", "POST", "POST", "PUT", "DELETE"])
            send_http(live, obs, port=port, host=host, method=method, path=rng.choice(PATHS) + rng.choice(QUERIES),
                       headers=_random_headers(rng))
        for _ in range(140):
            metadata = {}
            if rng.random() < 0.3:
                metadata["x-canary"] = rng.choice(["yes", "no"])
            if rng.random() < 0.4:
                metadata["x-tier"] = rng.choice(["5", "10", "15", "19", "20", "abc"])
            if rng.random() < 0.4:
                metadata["x-user"] = rng.choice(["bob", "bot-7", "robot"])
            call = rng.choice(["color.ColorService/GetColor", "color.ColorService/Other", "color.AdminService/List", "other.Service/GetColor"])
            _call_grpc(live, obs, channels, authority=rng.choice(list(channels)), call=call, metadata=metadata)
        # enough traffic on each weighted route to compare the split with explain's probabilities
        for i in range(160):
            send_http(live, obs, port=8080, host="catalog.retail.local", method="GET", path=f"/shop/{i}", headers={})
            send_http(live, obs, port=8080, host="catalog.retail.local:8080", method="GET", path=f"/items/{i}", headers={})
            _call_grpc(live, obs, channels, authority="color.retail.local:50051", call="color.ColorService/GetColor", metadata={})
        problems = obs.check(live)
        assert not problems, f"{len(problems)} of {len(obs.sent)} requests disagree:\n" + "\n".join(problems[:30])
        assert {"main", "items-regex", "get-color"} <= set(obs.by_route), dict(obs.by_route)
        split = obs.split_problems(minimum=100)
        assert not split, split
        outcomes = Counter(ex.outcome for _, ex, _ in obs.sent)
        assert outcomes["not-found"] >= 20 and outcomes["routed"] >= 300 and outcomes["no-listener"] >= 5, outcomes
        routes = Counter(ex.envoy_route for _, ex, _ in obs.sent if ex.outcome == "routed")
        assert {"beta-testers", "admin", "items-regex", "main", "provider", "all", "canary", "tiers", "get-color", "admin-service"} <= set(routes), routes
    finally:
        for channel in channels.values():
            channel.close()
        live.stop()


GATEWAY_PATHS = ["/", "/paths/green", "/paths/green/x", "/paths", "/pathsX", "/paths/red", "/test/", "/test", "/test/abc",
                 "/test/../paths/green", "/rewrite/path/blue", "/rewrite/path/blue/", "/query", "/query/x", "/red", "/blue/1"]
GATEWAY_HOSTS = ["gw.local:8088", "shop.example.com", "shop.example.com:8088", "SHOP.EXAMPLE.COM", "example.com", "a.example.community"]


def test_gateway_routes_and_rewrites_agree_with_envoy(procs, addresses, tmp_path):
    rng = random.Random(7)
    live = start_live_mesh(_docs(GOLDEN / "gateway" / "model"), "mesh/ingress/virtualGateway/gateway", procs, addresses, tmp_path)
    ingress = live.placement.ingress_address
    obs = Observed()
    rewrites: list[str] = []
    channel = grpc.insecure_channel(f"{ingress}:9090", options=[("grpc.default_authority", "gw.local:9090")])
    try:
        for _ in range(220):
            host = rng.choice(GATEWAY_HOSTS)
            path = rng.choice(GATEWAY_PATHS) + rng.choice(["", "?color_type=white", "?color_type=black", "?a=b"])
            headers = {"color_header": rng.choice(["yellow", "blue"])} if rng.random() < 0.3 else {}
            method = rng.choice(["GET", "POST", "PUT"])
            request_id = uuid.uuid4().hex
            ex = explain(live.resources, http_request(f"http://{host}{path}", method=method, headers=headers, port=8088),
                         node=live.node, model=live.model)
            response = send(method, f"http://{ingress}:8088{path}", host_header=host, headers={**headers, ID_HEADER: request_id}, timeout=10)
            answer = response.headers.get("x-app") if response.status == 200 else str(response.status)
            obs.record(request_id, ex, answer)
            if response.status == 200:
                seen = response.json()
                expected_path = ex.final.request["path"]
                expected_host = ex.final.request["host"]
                if seen["path"] != expected_path or seen["host"] != expected_host:
                    rewrites.append(f"{method} {host}{path}: app saw {seen['host']}{seen['path']}, explain says {expected_host}{expected_path}")
        for _ in range(40):
            call = rng.choice(["color.ColorService/GetColor", "color.ColorService/X", "other.Service/GetColor"])
            request_id = uuid.uuid4().hex
            ex = explain(live.resources, grpc_request("gw.local:9090", call, port=9090), node=live.node, model=live.model)
            try:
                answer = channel.unary_unary(f"/{call}")(b"", metadata=((ID_HEADER, request_id),), timeout=10).decode()
            except grpc.RpcError as err:
                answer = err.code().name
            obs.record(request_id, ex, answer)
        problems = obs.check(live) + rewrites
        assert not problems, f"{len(problems)} of {len(obs.sent)} requests disagree:\n" + "\n".join(problems[:30])
        gateway_routes = Counter(ex.gateway_route for _, ex, _ in obs.sent if ex.outcome == "routed")
        assert {"header-match", "method-match", "path-match", "prefix-match", "query-match", "rewrite-path", "rewrite-prefix",
                "by-hostname-keep-host", "grpc-colors"} <= set(gateway_routes), gateway_routes
        assert sum(1 for _, ex, _ in obs.sent if ex.outcome == "not-found") >= 5
    finally:
        channel.close()
        live.stop()


def test_kubernetes_gateway_input_agrees_with_envoy(procs, addresses, tmp_path):
    """The project's ingress-gateway input (tests/inputs/appmesh/03: a header router and a
    path router behind two gateway routes), loaded from its Kubernetes manifests."""
    from mesh_model import load_paths
    from tests.appmesh_inputs import input_paths, prepared_inputs
    from tests.explain.live import model_documents

    prepared = prepared_inputs(tmp_path)
    model = load_paths(input_paths(prepared, "03"))
    mesh = next(iter(model.meshes.values()))
    gateway = next(iter(mesh.virtual_gateways.values()))
    assert (mesh.name, gateway.name) == ("bookstore", "edge_bookstore")
    port = gateway.spec.listeners[0].portMapping.port
    live = start_live_mesh(model_documents(model), f"mesh/{mesh.name}/virtualGateway/{gateway.name}", procs, addresses, tmp_path)
    rng = random.Random(3)
    obs = Observed()
    try:
        for _ in range(150):
            path = rng.choice(["/account", "/account/orders", "/accounts", "/books", "/books/fiction", "/books/science/42",
                               "/books/poetry", "/booksfiction", "/other", "/", "/account/../books/fiction", "/books//science"])
            tier = rng.choice(["gold", "Gold", "beta-12", "beta-x", "ann@staff", "staff", "silver", ""])
            headers = {"x-shopper-tier": tier} if rng.random() < 0.7 else {}
            host = rng.choice(["shop.example.net", f"shop.example.net:{port}"])
            send_http(live, obs, port=port, host=host, method="GET", path=path, headers=headers,
                      to=live.placement.ingress_address)
        problems = obs.check(live)
        assert not problems, f"{len(problems)} of {len(obs.sent)} requests disagree:\n" + "\n".join(problems[:30])
        routes = Counter(ex.route for _, ex, _ in obs.sent if ex.outcome == "routed")
        assert {"tier-gold", "tier-beta", "tier-staff", "tier-any", "tier-anonymous",
                "section-fiction", "section-science", "section-rest"} <= set(routes), routes
        assert sum(1 for _, ex, _ in obs.sent if ex.outcome == "not-found") >= 5
    finally:
        live.stop()
