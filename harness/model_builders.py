"""Builders for meshplane's native model documents, for tests and benchmarks.

Each builder returns one document as a plain dict, in the model format of README.md ("The
model format"): ``kind``, ``mesh``, ``name`` (``virtualRouter`` for a Route,
``virtualGateway`` for a GatewayRoute) and ``spec`` in App Mesh's camelCase API shape. They
only spell out the skeleton every test repeats (provider, port mapping, DNS hostname,
weighted targets, gateway target); anything a test is *about* (TLS, retry policies, access
logs, outlier detection, an invalid value) is passed in as an extra field and stays visible
in the test::

    write_model(tmp_path / "model" / "mesh.yaml",
                mesh("shop"),
                virtual_service("shop", "catalog.shop.local", router="catalog"),
                virtual_router("shop", "catalog", 8080),
                route("shop", "catalog", "main", {"v1": 90, "v2": 10}),
                virtual_node("shop", "v1", port=8080, host="10.0.0.1"),
                virtual_node("shop", "v2", port=8080, host="10.0.0.2"),
                virtual_node("shop", "front", backends=["catalog.shop.local"]))

``write_model`` writes YAML (one document each, keys in the order built, so the same
documents always give the same bytes) and replaces the file atomically, as a deploy tool or
a ConfigMap swap would. Arguments that are documents may also be lists of documents
(``service_with_node`` returns two).

The end of the module holds the one model shared by several test modules: the ``shop`` mesh
of the real-Envoy tests (``shop_model``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

Document = dict[str, Any]

# the key of each route type in a Route's or GatewayRoute's spec, by listener protocol
ROUTE_KEYS = {"http": "httpRoute", "http2": "http2Route", "grpc": "grpcRoute", "tcp": "tcpRoute"}


# ------------------------------------------------------------------------------- spec pieces


def listener(port: int, protocol: str = "http", **extra) -> dict:
    """A listener: ``portMapping`` plus any listener fields (``tls``, ``outlierDetection``, ...)."""
    return {"portMapping": {"port": port, "protocol": protocol}, **extra}


def backend(service: str, **extra) -> dict:
    """A backend virtual service; ``extra`` goes beside its name (e.g. ``clientPolicy``)."""
    return {"virtualService": {"virtualServiceName": service, **extra}}


def file_certificate(chain, key=None) -> dict:
    """A certificate (with its key) or a trust bundle (without) from local files."""
    source = {"certificateChain": str(chain)}
    if key is not None:
        source["privateKey"] = str(key)
    return {"file": source}


def sds(secret_name: str) -> dict:
    """A certificate or trust bundle served by SDS under ``secret_name``."""
    return {"sds": {"secretName": secret_name}}


def tls_validation(trust: dict, sans: Iterable[str] = ()) -> dict:
    """``validation``: whom to trust and, optionally, the exact subject alternative names wanted."""
    validation = {"trust": trust}
    if sans:
        validation["subjectAlternativeNames"] = {"match": {"exact": list(sans)}}
    return validation


def listener_tls(mode: str, certificate: dict, trust: dict | None = None, sans: Iterable[str] = ()) -> dict:
    """A listener's ``tls``: STRICT / PERMISSIVE / DISABLED, its certificate, and client validation."""
    tls = {"mode": mode, "certificate": certificate}
    if trust is not None:
        tls["validation"] = tls_validation(trust, sans)
    return tls


def client_policy_tls(certificate: dict | None, trust: dict, sans: Iterable[str] = ()) -> dict:
    """A ``clientPolicy`` doing TLS to the backend: the client certificate and server validation."""
    tls = {} if certificate is None else {"certificate": certificate}
    tls["validation"] = tls_validation(trust, sans)
    return {"tls": tls}


def weighted_targets(targets: Mapping[str, int]) -> list[dict]:
    """``weightedTargets`` from ``{virtual node: weight}``, in the mapping's order."""
    return [{"virtualNode": node, "weight": weight} for node, weight in targets.items()]


def _spec(spec: dict) -> dict:
    return {"spec": spec} if spec else {}


# ------------------------------------------------------------------------------- documents


def mesh(name: str, **spec) -> Document:
    """A Mesh (``spec`` only when fields are given, e.g. ``egressFilter``, ``serviceDiscovery``)."""
    return {"kind": "Mesh", "name": name, **_spec(spec)}


def virtual_service(mesh: str, name: str, *, node: str | None = None, router: str | None = None) -> Document:
    """A VirtualService provided by virtual node ``node`` or virtual router ``router`` (or none)."""
    if node is not None and router is not None:
        raise ValueError("a virtual service has one provider: node or router")
    if node is not None:
        spec = {"provider": {"virtualNode": {"virtualNodeName": node}}}
    elif router is not None:
        spec = {"provider": {"virtualRouter": {"virtualRouterName": router}}}
    else:
        spec = {}
    return {"kind": "VirtualService", "mesh": mesh, "name": name, **_spec(spec)}


def virtual_node(mesh: str, name: str, *, port: int | None = None, protocol: str = "http",
                 host: str | None = None, backends: Iterable[str | dict] = (),
                 listeners: list[dict] | None = None, **spec) -> Document:
    """A VirtualNode.

    ``port``/``protocol``: one plain listener (or pass ``listeners=[listener(...)]`` for
    listeners with TLS, health checks, ...); ``host``: DNS service discovery (or pass
    ``serviceDiscovery=`` yourself, e.g. for Cloud Map); ``backends``: virtual service names,
    or ``backend(...)`` dicts; ``spec``: any other field (``logging``, ``backendDefaults``, ...).
    """
    if port is not None:
        if listeners is not None:
            raise ValueError("give port or listeners, not both")
        listeners = [listener(port, protocol)]
    body: dict = {}
    if listeners is not None:
        body["listeners"] = listeners
    if host is not None:
        body["serviceDiscovery"] = {"dns": {"hostname": host}}
    if backends:
        body["backends"] = [backend(b) if isinstance(b, str) else b for b in backends]
    body.update(spec)
    return {"kind": "VirtualNode", "mesh": mesh, "name": name, **_spec(body)}


def service_with_node(mesh: str, service: str, node: str, *, host: str, port: int | None = None,
                      protocol: str = "http", **node_spec) -> list[Document]:
    """The common pair: VirtualService ``service`` provided by VirtualNode ``node``, which
    listens on ``port`` (or ``listeners=``) and is found at DNS name ``host``; ``node_spec``
    as for ``virtual_node``."""
    return [virtual_service(mesh, service, node=node),
            virtual_node(mesh, node, port=port, protocol=protocol, host=host, **node_spec)]


def virtual_router(mesh: str, name: str, port: int, protocol: str = "http") -> Document:
    """A VirtualRouter with one listener."""
    return {"kind": "VirtualRouter", "mesh": mesh, "name": name, "spec": {"listeners": [listener(port, protocol)]}}


def route(mesh: str, router: str, name: str, targets: Mapping[str, int], *, protocol: str = "http",
          match: dict | None = None, priority: int | None = None, **extra) -> Document:
    """A Route of ``router`` sending to ``targets`` (``{virtual node: weight}``).

    ``protocol`` picks the route type (httpRoute, http2Route, grpcRoute, tcpRoute); ``match``
    defaults to ``{prefix: /}`` for http/http2 and to none for grpc/tcp; ``extra`` goes into
    the route beside match and action (``retryPolicy``, ``timeout``).
    """
    body: dict = {}
    if match is None and protocol in ("http", "http2"):
        match = {"prefix": "/"}
    if match is not None:
        body["match"] = match
    body["action"] = {"weightedTargets": weighted_targets(targets)}
    body.update(extra)
    spec: dict = {} if priority is None else {"priority": priority}
    spec[ROUTE_KEYS[protocol]] = body
    return {"kind": "Route", "mesh": mesh, "virtualRouter": router, "name": name, "spec": spec}


def virtual_gateway(mesh: str, name: str, *, port: int | None = None, protocol: str = "http",
                    listeners: list[dict] | None = None, **spec) -> Document:
    """A VirtualGateway with one plain listener on ``port`` (or ``listeners=[listener(...)]``);
    ``spec``: other fields (``backendDefaults``, ``logging``)."""
    if port is not None:
        if listeners is not None:
            raise ValueError("give port or listeners, not both")
        listeners = [listener(port, protocol)]
    body = {"listeners": listeners} if listeners is not None else {}
    body.update(spec)
    return {"kind": "VirtualGateway", "mesh": mesh, "name": name, **_spec(body)}


def gateway_route(mesh: str, gateway: str, name: str, service: str, *, protocol: str = "http",
                  match: dict | None = None, rewrite: dict | None = None, priority: int | None = None,
                  **extra) -> Document:
    """A GatewayRoute of ``gateway`` handing matching requests to virtual service ``service``.

    ``match`` defaults to ``{prefix: /}`` for http/http2; ``rewrite`` goes into the action;
    ``extra`` into the route beside match and action.
    """
    body: dict = {}
    if match is None and protocol in ("http", "http2"):
        match = {"prefix": "/"}
    if match is not None:
        body["match"] = match
    action: dict = {"target": {"virtualService": {"virtualServiceName": service}}}
    if rewrite is not None:
        action["rewrite"] = rewrite
    body["action"] = action
    body.update(extra)
    spec: dict = {} if priority is None else {"priority": priority}
    spec[ROUTE_KEYS[protocol]] = body
    return {"kind": "GatewayRoute", "mesh": mesh, "virtualGateway": gateway, "name": name, "spec": spec}


def cloud_map_service(namespace: str, name: str, instances: Mapping[str, str]) -> Document:
    """A CloudMapService (meshplane's stand-in for AWS Cloud Map): ``{instance id: IPv4}``."""
    return {"kind": "CloudMapService", "namespaceName": namespace, "name": name, "spec": {
        "instances": [{"instanceId": i, "attributes": {"AWS_INSTANCE_IPV4": ip}} for i, ip in instances.items()]}}


# ------------------------------------------------------------------------------- files


def documents(*items: Document | Iterable[Document]) -> list[Document]:
    """Flatten documents and lists of documents into one list."""
    flat: list[Document] = []
    for item in items:
        if isinstance(item, Mapping):
            flat.append(dict(item))
        else:
            flat.extend(documents(*item))
    return flat


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors and aliases: a dict used twice (one TLS block for two
    listeners) is written out twice, as a person would (and as the loader's limits expect)."""

    def ignore_aliases(self, data) -> bool:
        return True


def dump_model(*items: Document | Iterable[Document]) -> str:
    """The documents as YAML, one each, keys in the order built: same documents, same text."""
    return yaml.dump_all(documents(*items), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def write_model(path: Path, *items: Document | Iterable[Document]) -> str:
    """Write the documents to ``path`` (parents created), replacing the file atomically;
    returns the text written."""
    text = dump_model(*items)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


# ------------------------------------------------------------------------------- the shop mesh

SHOP = "shop"
CATALOG = "catalog.shop.local"
RECOMMEND = "recommend.shop.local"
FRONT = "mesh/shop/virtualNode/front"


def shop_model(env, *, main_weights: tuple[int, int] = (90, 10), front_backends: Iterable[str] = (CATALOG, RECOMMEND),
               max_server_errors: int = 3, **front_spec) -> list[Document]:
    """The shop mesh of the real-Envoy tests (test_e2e_envoy, test_e2e_delta)::

        front -> catalog.shop.local (router: route "beta" on header x-beta: yes -> catalog-v2,
                                     route "main" -> catalog-v1 / catalog-v2 by main_weights)
              -> recommend.shop.local (node recommend, Cloud Map instances rec-a and rec-b,
                                       outlier detection after max_server_errors 5xx)

    ``env`` gives this run's addresses: ``port``, ``front_ingress``, ``v1_ingress``,
    ``v2_ingress``, ``rec_a.host``, ``rec_b.host``. Keyword arguments are the edits tests
    make; ``front_spec`` adds fields to node front's spec (e.g. ``logging``).
    """
    port = env.port
    v1_weight, v2_weight = main_weights
    return [
        mesh(SHOP),
        virtual_service(SHOP, CATALOG, router="catalog-router"),
        virtual_router(SHOP, "catalog-router", port),
        route(SHOP, "catalog-router", "beta", {"catalog-v2": 1}, priority=10,
              match={"prefix": "/", "headers": [{"name": "x-beta", "match": {"exact": "yes"}}]},
              retryPolicy={"maxRetries": 2, "perRetryTimeout": {"unit": "ms", "value": 2000},
                           "httpRetryEvents": ["gateway-error"]}),
        route(SHOP, "catalog-router", "main", {"catalog-v1": v1_weight, "catalog-v2": v2_weight}, priority=100),
        virtual_service(SHOP, RECOMMEND, node="recommend"),
        virtual_node(SHOP, "front", port=port, host=env.front_ingress, backends=front_backends, **front_spec),
        virtual_node(SHOP, "catalog-v1", port=port, host=env.v1_ingress),
        virtual_node(SHOP, "catalog-v2", port=port, host=env.v2_ingress),
        virtual_node(SHOP, "recommend",
                     listeners=[listener(port, outlierDetection={
                         "maxServerErrors": max_server_errors, "maxEjectionPercent": 50,
                         "interval": {"unit": "s", "value": 1}, "baseEjectionDuration": {"unit": "s", "value": 60}})],
                     serviceDiscovery={"awsCloudMap": {"namespaceName": "shop.local", "serviceName": "recommend"}}),
        cloud_map_service("shop.local", "recommend", {"rec-a": env.rec_a.host, "rec-b": env.rec_b.host}),
    ]
