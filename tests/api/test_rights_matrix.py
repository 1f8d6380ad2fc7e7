"""One authorization rule for every path into the model (``xds_server.api.rights``).

Five callers (the mesh owner, a partner the owner shares the mesh with, a stranger, a
read-only key of the owner's account, a key with no rights) x every change: the App Mesh
operation and the equivalent ``POST /meshplane/v1/apply`` get the same answer, which is the one
the table below says; ``GET /meshplane/v1/model`` exports exactly what the caller may read;
``prune`` deletes only what the caller could delete. Each cell runs on a fresh in-process API
over its own SQLite store, signed with SigV4 by botocore, as AWS clients sign.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from xds_server.api import ApiService
from xds_server.api.sigv4 import Verifier, parse_credentials
from xds_server.api.sigv4_auth import SigV4Authenticator
from xds_server.store import open_store

from tests.api.conftest import client, signed_json
from tests.api.inproc import serve_in_thread
from tests.api.specs import node_spec

OWNER, PARTNER, STRANGER, NOBODY = "111111111111", "222222222222", "333333333333", "444444444444"
KEYS = {  # role -> (access key id, secret, account, meshes, cloudMap)
    "owner": ("AKOWNER", "s-owner", OWNER, {"write": ["*"]}, {"write": ["shop.local"]}),
    "partner": ("AKPARTNER", "s-partner", PARTNER, {"write": ["*"]}, {"write": ["*.local"]}),
    "stranger": ("AKSTRANGER", "s-stranger", STRANGER, {"write": ["*"]}, {}),
    "readonly": ("AKREADER", "s-reader", OWNER, {"read": ["shop"]}, {"read": ["shop.local"]}),
    "norights": ("AKNOBODY", "s-nobody", NOBODY, {}, {}),
}
ROLES = tuple(KEYS)
OK, FORBIDDEN, NOT_FOUND = "ok", "ForbiddenException", "NotFoundException"


def credentials_text() -> str:
    return json.dumps({key: {"secretAccessKey": secret, "accountId": account, "meshes": meshes, "cloudMap": cloud_map}
                       for key, secret, account, meshes, cloud_map in KEYS.values()})


class World:
    """A fresh API: mesh ``shop`` of OWNER shared with PARTNER; the owner's node ``web``, service
    and router/route ``r/main`` (to ``web``); the partner's node ``cart``; the owner's Cloud
    Map stand-in ``shop.local/catalog``."""

    def __init__(self, tmp_path, n: int):
        self.store = open_store(f"sqlite:///{tmp_path}/rights{n}.db")
        auth = SigV4Authenticator(Verifier(parse_credentials(credentials_text())))
        self.service = ApiService(self.store, authenticator=auth)
        self.server, self.url = serve_in_thread(self.service)
        owner, partner = self.client("owner"), self.client("partner")
        owner.create_mesh(meshName="shop", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
        owner.create_virtual_node(meshName="shop", virtualNodeName="web", spec=node_spec("web.shop.local"))
        owner.create_virtual_router(meshName="shop", virtualRouterName="r",
                                    spec={"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]})
        owner.create_route(meshName="shop", virtualRouterName="r", routeName="main", spec=route_to("web"))
        owner.create_virtual_service(meshName="shop", virtualServiceName="web.shop.local",
                                     spec={"provider": {"virtualRouter": {"virtualRouterName": "r"}}})
        partner.create_virtual_node(meshName="shop", virtualNodeName="cart", spec=node_spec("cart.shop.local"))
        status, answer = self.call("owner", "POST", "/meshplane/v1/apply", {"documents": [CATALOG]})
        assert status == 200, answer

    def client(self, role: str):
        key, secret, *_ = KEYS[role]
        return client(self.url, key=key, secret=secret)

    def call(self, role: str, method: str, path: str, payload=None) -> tuple[int, dict]:
        key, secret, *_ = KEYS[role]
        return signed_json(self.url + path, method, key, secret, payload)

    def apply(self, role: str, documents: list, prune: bool = False) -> str:
        status, answer = self.call(role, "POST", "/meshplane/v1/apply", {"documents": documents, "prune": prune})
        return OK if status == 200 else answer["code"]

    def exported(self, role: str) -> list[str]:
        status, answer = self.call(role, "GET", "/meshplane/v1/model")
        assert status == 200, answer
        return sorted(_label(d) for d in answer["documents"])

    def keys(self) -> list[str]:
        return sorted(str(k) for k in self.service.index()[1])

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.store.close()


def route_to(node: str, weight: int = 1) -> dict:
    return {"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": [{"virtualNode": node, "weight": weight}]}}}


def _label(doc: dict) -> str:
    where = doc.get("namespaceName") or doc.get("mesh") or ""
    return f"{doc['kind']} {where}/{doc['name']}".replace(" /", " ")


CATALOG = {"kind": "CloudMapService", "namespaceName": "shop.local", "name": "catalog",
           "spec": {"instances": [{"instanceId": "i-1", "attributes": {"AWS_INSTANCE_IPV4": "10.0.0.1"}}]}}


@pytest.fixture
def worlds(tmp_path):
    made = []

    def make() -> World:
        world = World(tmp_path, len(made))
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


def _code(call) -> str:
    try:
        call()
    except ClientError as err:
        return err.response["Error"]["Code"]
    return OK


# change -> (App Mesh operation on a boto3 client, the same change as an apply document set,
#            expected answer per role in ROLES order)
CHANGES = {
    "update the mesh": (
        lambda c: c.update_mesh(meshName="shop", spec={"egressFilter": {"type": "ALLOW_ALL"}}),
        [{"kind": "Mesh", "name": "shop", "spec": {"egressFilter": {"type": "ALLOW_ALL"}}}],
        (OK, FORBIDDEN, NOT_FOUND, FORBIDDEN, FORBIDDEN)),
    "create a node": (
        lambda c: c.create_virtual_node(meshName="shop", virtualNodeName="new", spec=node_spec("new.shop.local")),
        [{"kind": "VirtualNode", "mesh": "shop", "name": "new", "spec": node_spec("new.shop.local")}],
        (OK, OK, NOT_FOUND, FORBIDDEN, FORBIDDEN)),
    "update the owner's route": (
        lambda c: c.update_route(meshName="shop", virtualRouterName="r", routeName="main", spec=route_to("cart")),
        [{"kind": "Route", "mesh": "shop", "virtualRouter": "r", "name": "main", "spec": route_to("cart")}],
        (OK, FORBIDDEN, NOT_FOUND, FORBIDDEN, FORBIDDEN)),
    "update the partner's node": (
        lambda c: c.update_virtual_node(meshName="shop", virtualNodeName="cart", spec=node_spec("cart2.shop.local")),
        [{"kind": "VirtualNode", "mesh": "shop", "name": "cart", "spec": node_spec("cart2.shop.local")}],
        (FORBIDDEN, OK, NOT_FOUND, FORBIDDEN, FORBIDDEN)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_apply_answers_as_the_app_mesh_operation_does(worlds, change):
    operation, documents, expected = CHANGES[change]
    table = {}
    for role, want in zip(ROLES, expected):
        by_operation, by_apply = worlds(), worlds()
        before = by_operation.keys()
        got_operation = _code(lambda: operation(by_operation.client(role)))
        got_apply = by_apply.apply(role, documents)
        table[role] = (want, got_operation, got_apply)
        if want != OK:  # a refused change changes nothing, on either path
            assert by_operation.keys() == before == by_apply.keys(), role
    assert all(want == got_operation == got_apply for want, got_operation, got_apply in table.values()), table


@pytest.mark.parametrize("role,expected", [
    ("owner", (OK, OK)), ("partner", (OK, OK)), ("stranger", (NOT_FOUND, NOT_FOUND)),
    ("readonly", (FORBIDDEN, FORBIDDEN)), ("norights", (FORBIDDEN, FORBIDDEN)),
])
def test_deleting_the_partners_node(worlds, role, expected):
    """The resource's owner or the mesh owner, as ``DeleteVirtualNode``; through apply that is a
    prune of everything but that node."""
    by_operation, by_apply = worlds(), worlds()
    got_operation = _code(lambda: by_operation.client(role).delete_virtual_node(meshName="shop", virtualNodeName="cart"))
    shop_but_cart = [d for d in by_apply.call("owner", "GET", "/meshplane/v1/model")[1]["documents"]
                     if d.get("mesh", d["name"]) == "shop" and d["name"] != "cart"]
    assert len(shop_but_cart) == 5
    got_apply = by_apply.apply(role, shop_but_cart, prune=True)
    for world, got in ((by_operation, got_operation), (by_apply, got_apply)):
        assert ("VirtualNode shop/cart" in world.keys()) == (got != OK), role
    assert (got_operation, got_apply) == expected


def test_export_returns_only_what_the_caller_may_read(worlds):
    world = worlds()
    shop = ["Mesh shop", "Route shop/main", "VirtualNode shop/cart", "VirtualNode shop/web",
            "VirtualRouter shop/r", "VirtualService shop/web.shop.local"]
    assert world.exported("owner") == sorted(shop + ["CloudMapService shop.local/catalog"])
    assert world.exported("partner") == sorted(shop + ["CloudMapService shop.local/catalog"])  # given *.local
    assert world.exported("readonly") == sorted(shop + ["CloudMapService shop.local/catalog"])
    assert world.exported("stranger") == []
    assert world.exported("norights") == []


def test_prune_deletes_only_what_the_caller_could_delete(worlds):
    # the partner prunes "everything": only its own node goes (the owner's mesh, route, nodes stay)
    world = worlds()
    status, answer = world.call("partner", "POST", "/meshplane/v1/apply", {"documents": [], "prune": True})
    assert status == 200, answer
    assert [c["resource"] for c in answer["changes"]] == ["VirtualNode shop/cart"]
    assert "Mesh shop" in world.keys() and "VirtualNode shop/web" in world.keys()
    # strangers, read-only and rightless keys prune nothing
    for role in ("stranger", "readonly", "norights"):
        world = worlds()
        before = world.keys()
        status, answer = world.call(role, "POST", "/meshplane/v1/apply", {"documents": [], "prune": True})
        assert (status, answer.get("changes"), world.keys()) == (200, [], before), role
    # the owner may delete everything in its mesh, the partner's node included, and its namespace
    world = worlds()
    status, answer = world.call("owner", "POST", "/meshplane/v1/apply", {"documents": [], "prune": True})
    assert status == 200 and world.keys() == [], answer


@pytest.mark.parametrize("role,update,create", [
    ("owner", OK, OK),
    ("partner", FORBIDDEN, OK),      # given *.local: may create a service there, not rewrite the owner's
    ("stranger", FORBIDDEN, FORBIDDEN),
    ("readonly", FORBIDDEN, FORBIDDEN),
    ("norights", FORBIDDEN, FORBIDDEN),
])
def test_cloud_map_services_have_an_owner_and_namespace_rights(worlds, role, update, create):
    world = worlds()
    hijack = {**CATALOG, "spec": {"instances": [{"instanceId": "evil", "attributes": {"AWS_INSTANCE_IPV4": "10.6.6.6"}}]}}
    assert world.apply(role, [hijack]) == update
    new = {**CATALOG, "name": f"{role}-svc"}
    assert world.apply(role, [new]) == create
    stored = world.service.index()[1]
    catalog = next(r for k, r in stored.items() if k.kind == "CloudMapService" and k.name == "catalog")
    expected_ip = "10.6.6.6" if update == OK else "10.0.0.1"
    assert catalog.spec["instances"][0]["attributes"]["AWS_INSTANCE_IPV4"] == expected_ip
    if create == OK:
        created = next(r for k, r in stored.items() if k.name == f"{role}-svc")
        assert created.metadata["resourceOwner"] == KEYS[role][2]


def test_names_that_cannot_round_trip_are_refused(worlds):
    world = worlds()
    owner = world.client("owner")
    for name in (".", ".."):
        with pytest.raises(ClientError) as err:
            owner.create_virtual_node(meshName="shop", virtualNodeName=name, spec=node_spec())
        assert err.value.response["Error"]["Code"] == "BadRequestException"
        assert "cannot be resource names" in err.value.response["Error"]["Message"]
        status, answer = world.call("partner", "POST", "/meshplane/v1/apply",
                                    {"documents": [{"kind": "VirtualNode", "mesh": "shop", "name": name, "spec": {}}]})
        assert status == 400 and "cannot be resource names" in answer["message"], answer
    owner.delete_virtual_node(meshName="shop", virtualNodeName="cart")
    owner.delete_route(meshName="shop", virtualRouterName="r", routeName="main")
    owner.delete_virtual_service(meshName="shop", virtualServiceName="web.shop.local")
    owner.delete_virtual_router(meshName="shop", virtualRouterName="r")
    owner.delete_virtual_node(meshName="shop", virtualNodeName="web")
    owner.delete_mesh(meshName="shop")  # nothing unreachable was left behind to block it


@pytest.mark.parametrize("bad", [
    {"kind": "VirtualNode", "mesh": ["shop"], "name": "x", "spec": {}},
    {"kind": "VirtualNode", "mesh": "shop", "name": {"a": 1}, "spec": {}},
    {"kind": "VirtualNode", "mesh": "shop", "name": 7, "spec": {}},
    {"kind": ["Mesh"], "name": "x"},
    {"kind": "Route", "mesh": "shop", "virtualRouter": None, "name": "x", "spec": {}},
    {"kind": "VirtualNode", "mesh": "shop", "name": "x", "spec": [1]},
])
def test_apply_documents_of_the_wrong_shape_are_a_400(worlds, bad):
    world = worlds()
    status, answer = world.call("owner", "POST", "/meshplane/v1/apply", {"documents": [bad]})
    assert status == 400 and answer["code"] == "BadRequestException" and "documents[0]" in answer["message"], answer


def test_deeply_nested_apply_json_is_a_400(worlds):
    world = worlds()
    key, secret, *_ = KEYS["owner"]
    body = b'{"documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    request = AWSRequest(method="POST", url=world.url + "/meshplane/v1/apply", data=body)
    SigV4Auth(Credentials(key, secret), "appmesh", "us-west-2").add_auth(request)
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=body, method="POST", headers=dict(prepared.headers))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and b"nested deeper than" in err.value.read()


def test_concurrent_retries_of_one_client_token_get_the_first_answer(worlds):
    """A client's retry after a timeout races its first try: both must get the first answer."""
    world = worlds()
    owner = world.client("owner")
    for round_ in range(30):
        answers: list = [None, None]
        barrier = threading.Barrier(2)

        def send(i):
            barrier.wait()
            try:
                answers[i] = owner.create_virtual_node(meshName="shop", virtualNodeName=f"n{round_}",
                                                       spec=node_spec(f"n{round_}.shop.local"),
                                                       clientToken=f"token-{round_}")["virtualNode"]
            except ClientError as err:
                answers[i] = err.response["Error"]["Code"]

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert isinstance(answers[0], dict) and answers[0] == answers[1], (round_, answers)
