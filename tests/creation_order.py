"""Creation orders of a model's resources through the App Mesh API, as App Mesh's clients
(CloudFormation, CDK, Terraform, scripts) would make the calls: the helpers of the creation
order property tests (``tests/api/test_creation_order_property.py`` on the project's inputs,
``examples_check/test_public_creation_order.py`` on the public examples).

What App Mesh itself checks orders the calls: a resource after its mesh (a route after its
router, a gateway route after its gateway), a route after the nodes it targets, a gateway route
after the service it targets, and a service's provider set once the provider exists (a service
whose provider is not there yet is created without one and updated later). A node's backends
order nothing: App Mesh does not check them.
"""
from __future__ import annotations

import random

from botocore.exceptions import ClientError

from mesh_model.compiler import compile_node
from mesh_model.load import load_documents
from mesh_model.node_id import NodeRef
from xds_server.store.file_model import resources_of
from xds_server.api.resources import native
from xds_server.store.base import Put

RANDOM_ORDERS = 3
KIND_RANK = {"Mesh": 0, "VirtualNode": 1, "VirtualRouter": 2, "Route": 3, "VirtualService": 4, "VirtualGateway": 5, "GatewayRoute": 6}


def _key(doc: dict) -> tuple:
    return (doc["kind"], doc.get("mesh", ""), doc.get("virtualRouter", doc.get("virtualGateway", "")), doc["name"])


def _body(doc: dict) -> dict:
    return next(v for v in doc["spec"].values() if isinstance(v, dict) and "action" in v)


def _needs(doc: dict) -> set[tuple]:
    """What App Mesh checks exists before it takes ``doc`` (its provider apart: see ``_provider``)."""
    kind, mesh = doc["kind"], doc.get("mesh", "")
    if kind == "Mesh":
        return set()
    needs = {("Mesh", "", "", mesh)}
    if kind == "Route":
        needs.add(("VirtualRouter", mesh, "", doc["virtualRouter"]))
        needs |= {("VirtualNode", mesh, "", t["virtualNode"]) for t in _body(doc)["action"]["weightedTargets"]}
    elif kind == "GatewayRoute":
        needs.add(("VirtualGateway", mesh, "", doc["virtualGateway"]))
        needs.add(("VirtualService", mesh, "", _body(doc)["action"]["target"]["virtualService"]["virtualServiceName"]))
    return needs


def _provider(doc: dict) -> tuple | None:
    provider = (doc.get("spec") or {}).get("provider") if doc["kind"] == "VirtualService" else None
    if not provider:
        return None
    if "virtualNode" in provider:
        return ("VirtualNode", doc["mesh"], "", provider["virtualNode"]["virtualNodeName"])
    return ("VirtualRouter", doc["mesh"], "", provider["virtualRouter"]["virtualRouterName"])


def backends(doc: dict) -> set[tuple]:
    if doc["kind"] != "VirtualNode":
        return set()
    return {("VirtualService", doc["mesh"], "", b["virtualService"]["virtualServiceName"])
            for b in (doc.get("spec") or {}).get("backends") or ()}


def _steps(priority: list[dict], *, soft_backends: bool) -> list[tuple[str, dict]]:
    """``("create", doc)`` / ``("provide", service doc)`` calls: repeatedly the first document of
    ``priority`` App Mesh would take now (with ``soft_backends``, preferring one whose backends
    exist); a service is created without its provider when the provider is not there yet,
    and given it right after the provider is created."""
    keys = {_key(d) for d in priority}
    done: set[tuple] = set()
    unprovided: list[dict] = []
    pending = list(priority)
    steps = []
    while pending:
        ready = [d for d in pending if _needs(d) <= done]
        assert ready, f"nothing can be created next: {[_key(d) for d in pending]}"
        if soft_backends:
            # a backend counts once it exists, or when waiting for it would be a cycle (the
            # service it names waits, through its provider, for this very node)
            preferred = [d for d in ready if all(b in done or b not in keys or _waits_for(b, _key(d), pending) for b in backends(d))]
            ready = preferred or ready
        doc = ready[0]
        pending.remove(doc)
        provider = _provider(doc)
        if provider is not None and provider not in done:
            steps.append(("create", {**doc, "spec": {k: v for k, v in doc["spec"].items() if k != "provider"}}))
            unprovided.append(doc)
        else:
            steps.append(("create", doc))
        done.add(_key(doc))
        for service in [s for s in unprovided if _provider(s) in done]:
            steps.append(("provide", service))
            unprovided.remove(service)
    assert not unprovided
    return steps


def _waits_for(service: tuple, node: tuple, pending: list[dict]) -> bool:
    """Whether creating ``service`` with its provider waits for ``node`` (its provider is
    ``node``, or a router whose routes target ``node``)."""
    doc = next((d for d in pending if _key(d) == service), None)
    provider = _provider(doc) if doc is not None else None
    if provider is None:
        return False
    if provider == node:
        return True
    return provider[0] == "VirtualRouter" and any(
        d["kind"] == "Route" and d["virtualRouter"] == provider[3] and ("VirtualNode", d["mesh"], "", node[3]) in _needs(d)
        for d in pending)


def call(client, step: str, doc: dict) -> None:
    kind, mesh, spec = doc["kind"], doc.get("mesh"), doc.get("spec") or {}
    if kind == "Mesh":
        client.create_mesh(meshName=doc["name"], spec=spec)
    elif step == "provide":
        client.update_virtual_service(meshName=mesh, virtualServiceName=doc["name"], spec=spec)
    elif kind == "VirtualService":
        client.create_virtual_service(meshName=mesh, virtualServiceName=doc["name"], spec=spec)
    elif kind == "VirtualNode":
        client.create_virtual_node(meshName=mesh, virtualNodeName=doc["name"], spec=spec)
    elif kind == "VirtualRouter":
        client.create_virtual_router(meshName=mesh, virtualRouterName=doc["name"], spec=spec)
    elif kind == "Route":
        client.create_route(meshName=mesh, virtualRouterName=doc["virtualRouter"], routeName=doc["name"], spec=spec)
    elif kind == "VirtualGateway":
        client.create_virtual_gateway(meshName=mesh, virtualGatewayName=doc["name"], spec=spec)
    elif kind == "GatewayRoute":
        client.create_gateway_route(meshName=mesh, virtualGatewayName=doc["virtualGateway"], gatewayRouteName=doc["name"], spec=spec)
    else:  # pragma: no cover
        raise AssertionError(f"no App Mesh call creates {kind}")


def compiled(model) -> dict:
    """Every node's and gateway's resources, serialized deterministically."""
    out = {}
    for mesh in model.meshes.values():
        for kind, names in (("virtualNode", mesh.virtual_nodes), ("virtualGateway", mesh.virtual_gateways)):
            for name in sorted(names):
                resources = compile_node(model, NodeRef(mesh.name, kind, name))
                out[(mesh.name, kind, name)] = {t: {n: m.SerializeToString(deterministic=True) for n, m in items.items()}
                                                for t, items in resources.items()}
    return out


def orders(docs: list[dict], seed_base: int) -> dict[str, list[tuple[str, dict]]]:
    by_kind = sorted(docs, key=lambda d: KIND_RANK[d["kind"]])  # stable: document order within a kind
    cfn = _steps(by_kind, soft_backends=True)
    cfn_docs = [doc for step, doc in cfn if step == "create"]
    originals = {_key(d): d for d in docs}
    orders = {"cloudformation": cfn, "reverse": _steps([originals[_key(d)] for d in reversed(cfn_docs)], soft_backends=False)}
    for i in range(RANDOM_ORDERS):
        shuffled = list(docs)
        random.Random(seed_base * 100 + i).shuffle(shuffled)
        orders[f"random-{i}"] = _steps(shuffled, soft_backends=False)
    return orders


def dangles(steps: list[tuple[str, dict]]) -> bool:
    """Whether some node is created before a service it lists as a backend."""
    done = set()
    for step, doc in steps:
        if step == "create" and backends(doc) - done:
            return True
        done.add(_key(doc))
    return False


def key_any(doc: dict) -> tuple:
    return (doc["kind"], doc.get("mesh", doc.get("namespaceName", "")), doc.get("virtualRouter", doc.get("virtualGateway", "")), doc["name"])


def check_every_order(name: str, model, make_api, seed_base: int | None = None) -> None:
    """Create ``model`` through a fresh API (``make_api()`` -> an ``Api`` with ``client()`` and
    ``extra["store"]``) in CloudFormation, reverse and random orders: no call is refused, and
    every order ends as the same model (the store's documents) and byte-identical config."""
    resources = resources_of(model)
    docs = [native(r) for r in resources if r.key.kind != "CloudMapService"]
    cloud_map = [r for r in resources if r.key.kind == "CloudMapService"]
    expected_docs = sorted((native(r) for r in resources), key=key_any)
    expected_config = compiled(model)
    assert expected_config, f"{name}: no node to compile"
    seed = seed_base if seed_base is not None else sum(map(ord, name))
    every = orders(docs, seed)
    assert any(step == "provide" for step, _ in every["reverse"]) or not any(_provider(d) for d in docs), \
        "the reverse order creates a service before its provider"
    if any(backends(d) for d in docs):
        assert dangles(every["reverse"]), "the reverse order creates a caller before the service it calls"
    for order, steps in every.items():
        api = make_api()
        store = api.extra["store"]
        if cloud_map:
            store.commit([Put(r, expected_version=0) for r in cloud_map])
        client = api.client()
        for i, (step, doc) in enumerate(steps):
            try:
                call(client, step, doc)
            except ClientError as exc:
                raise AssertionError(f"{name}, {order} order, call {i} ({step} {_key(doc)}) refused: {exc}") from None
        final = sorted((native(r) for r in store.read_all().resources), key=key_any)
        assert final == expected_docs, f"{name}, {order} order: another model"
        assert compiled(load_documents([("store", d) for d in final])) == expected_config, f"{name}, {order} order: another config"
