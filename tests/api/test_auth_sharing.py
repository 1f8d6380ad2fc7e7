"""``serve --api-credentials``: SigV4 with boto3 clients of three accounts against a real server,
cross-account sharing through the ``meshplane:sharedWith`` mesh tag; and the loopback-only
default without credentials."""
from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import client, signed_json, start_serve
from tests.api.specs import node_spec

OWNER, PARTNER, STRANGER = "111111111111", "222222222222", "333333333333"
CREDENTIALS = f"""
AKOWNER:
  secretAccessKey: owner-secret
  accountId: "{OWNER}"
  meshes: {{write: ["*"]}}
AKPARTNER:
  secretAccessKey: partner-secret
  accountId: "{PARTNER}"
  meshes: {{write: ["*"]}}
AKSTRANGER:
  secretAccessKey: stranger-secret
  accountId: "{STRANGER}"
  meshes: {{write: ["*"]}}
AKPARTNERSHOP:
  secretAccessKey: partner-shop-secret
  accountId: "{PARTNER}"
  meshes: {{read: ["shop"], write: ["shop"]}}
"""


def error_of(call, **kwargs) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def signed(procs, free_port, tmp_path):
    creds = tmp_path / "credentials.yaml"
    creds.write_text(CREDENTIALS)
    server = start_serve(procs, free_port, tmp_path, "--store", f"sqlite:///{tmp_path}/m.db", "--api-credentials", str(creds))
    keys = {"owner": ("AKOWNER", "owner-secret"), "partner": ("AKPARTNER", "partner-secret"),
            "stranger": ("AKSTRANGER", "stranger-secret"), "partner_shop": ("AKPARTNERSHOP", "partner-shop-secret")}
    server.extra["clients"] = {name: client(server.url, key=k, secret=s) for name, (k, s) in keys.items()}
    return server


def test_sharing_across_three_accounts(signed):
    c = signed.extra["clients"]
    owner, partner, stranger = c["owner"], c["partner"], c["stranger"]
    mesh = owner.create_mesh(meshName="shop", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])["mesh"]
    assert mesh["metadata"]["meshOwner"] == OWNER == mesh["metadata"]["resourceOwner"]

    # the shared account sees the mesh and creates in it: its node, the owner's mesh
    assert [m["meshName"] for m in partner.list_meshes()["meshes"]] == ["shop"]
    node = partner.create_virtual_node(meshName="shop", virtualNodeName="cart", spec=node_spec())["virtualNode"]
    assert (node["metadata"]["meshOwner"], node["metadata"]["resourceOwner"]) == (OWNER, PARTNER)
    assert owner.describe_virtual_node(meshName="shop", virtualNodeName="cart")["virtualNode"]["metadata"][
        "resourceOwner"] == PARTNER
    # ... but not change the mesh, nor the owner's resources
    assert error_of(partner.update_mesh, meshName="shop", spec={})[0] == "ForbiddenException"
    owner.create_virtual_node(meshName="shop", virtualNodeName="web", spec=node_spec())
    code, message, status = error_of(partner.update_virtual_node, meshName="shop", virtualNodeName="web",
                                     spec=node_spec())
    assert (code, status) == ("ForbiddenException", 403) and OWNER in message
    assert error_of(partner.tag_resource, resourceArn=mesh["metadata"]["arn"],
                    tags=[{"key": "meshplane:sharedWith", "value": STRANGER}])[0] == "ForbiddenException"

    # an outsider: the mesh does not exist for it
    assert stranger.list_meshes()["meshes"] == []
    assert error_of(stranger.describe_mesh, meshName="shop")[:3:2] == ("NotFoundException", 404)
    assert error_of(stranger.create_virtual_node, meshName="shop", virtualNodeName="x", spec=node_spec())[0] == \
        "NotFoundException"
    assert error_of(stranger.list_virtual_nodes, meshName="shop")[0] == "NotFoundException"

    # sharing with a third account, then un-sharing
    owner.tag_resource(resourceArn=mesh["metadata"]["arn"],
                       tags=[{"key": "meshplane:sharedWith", "value": f"{PARTNER}, {STRANGER}"}])
    stranger.create_virtual_node(meshName="shop", virtualNodeName="pay", spec=node_spec())
    owner.untag_resource(resourceArn=mesh["metadata"]["arn"], tagKeys=["meshplane:sharedWith"])
    assert error_of(partner.describe_virtual_node, meshName="shop", virtualNodeName="cart")[0] == "NotFoundException"
    # the owner may still clean up what the others created
    owner.delete_virtual_node(meshName="shop", virtualNodeName="pay")
    owner.delete_virtual_node(meshName="shop", virtualNodeName="cart")


def test_key_rights_and_signatures(signed):
    c = signed.extra["clients"]
    c["owner"].create_mesh(meshName="shop", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
    c["owner"].create_mesh(meshName="bank", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
    limited = c["partner_shop"]
    limited.create_virtual_node(meshName="shop", virtualNodeName="a", spec=node_spec())
    code, message, status = error_of(limited.create_virtual_node, meshName="bank", virtualNodeName="a", spec=node_spec())
    assert (code, status) == ("ForbiddenException", 403) and "AKPARTNERSHOP" in message and "bank" in message
    assert error_of(limited.describe_mesh, meshName="bank")[0] == "ForbiddenException"
    assert [m["meshName"] for m in limited.list_meshes()["meshes"]] == ["shop"]

    # wrong secret, unknown key, tampered signature, unsigned: App Mesh's 403s, nothing written
    assert error_of(client(signed.url, key="AKOWNER", secret="wrong").create_mesh, meshName="x")[:3:2] == \
        ("InvalidSignatureException", 403)
    assert error_of(client(signed.url, key="AKNOBODY", secret="s").list_meshes)[:3:2] == \
        ("UnrecognizedClientException", 403)
    tampered = client(signed.url, key="AKOWNER", secret="owner-secret")

    def tamper(request, **_):
        auth = request.headers["Authorization"]
        auth = auth.decode() if isinstance(auth, bytes) else auth
        request.headers["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")

    tampered.meta.events.register("before-send.app-mesh.CreateMesh", tamper)
    assert error_of(tampered.create_mesh, meshName="x")[:3:2] == ("InvalidSignatureException", 403)
    req = urllib.request.Request(f"{signed.url}/v20190125/meshes", method="PUT", data=b'{"meshName": "x"}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")
    assert [m["meshName"] for m in c["owner"].list_meshes()["meshes"]] == ["bank", "shop"]


def test_shared_with_tag_is_validated(signed):
    owner = signed.extra["clients"]["owner"]
    code, message, status = error_of(owner.create_mesh, meshName="shop",
                                     tags=[{"key": "meshplane:sharedWith", "value": "12345 222222222222"}])
    assert (code, status) == ("BadRequestException", 400) and "meshplane:sharedWith" in message and "12345" in message
    assert owner.list_meshes()["meshes"] == []
    arn = owner.create_mesh(meshName="shop")["mesh"]["metadata"]["arn"]
    assert error_of(owner.tag_resource, resourceArn=arn, tags=[{"key": "meshplane:sharedWith", "value": "abc"}])[0] == \
        "BadRequestException"
    node = owner.create_virtual_node(meshName="shop", virtualNodeName="a", spec=node_spec())["virtualNode"]
    code, message, _ = error_of(owner.tag_resource, resourceArn=node["metadata"]["arn"],
                                tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
    assert code == "BadRequestException" and "only a mesh" in message
    assert owner.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_without_credentials_loopback_only_and_a_warning(api):
    from xds_server.api import ApiService
    from xds_server.store import open_store

    api.client().create_mesh(meshName="m")  # unsigned from 127.0.0.1: accepted
    log = api.extra["proc"].output()
    assert log.count("without --api-credentials") == 1, log
    from xds_server.api.local_auth import LoopbackOnly

    store = open_store(api.store_url)
    try:
        service = ApiService(store, authenticator=LoopbackOnly())
        status, headers, body = service.handle("GET", "/v20190125/meshes", "", {}, b"", peer="10.1.2.3")
        assert status == 403 and headers["x-amzn-ErrorType"].startswith("ForbiddenException")
        assert b"--api-credentials" in body and b"10.1.2.3" in body
        assert service.handle("GET", "/v20190125/meshes", "", {}, b"", peer="::1")[0] == 200
        assert service.handle("GET", "/v20190125/meshes", "", {}, b"", peer="::ffff:127.0.0.1")[0] == 200
    finally:
        store.close()


def test_export_and_apply_only_reach_member_meshes(signed):
    c = signed.extra["clients"]
    c["owner"].create_mesh(meshName="shop", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
    c["owner"].create_virtual_node(meshName="shop", virtualNodeName="a", spec=node_spec())
    stranger, partner = c["stranger"], c["partner"]

    def call(cl, method, path, payload=None):
        """A signed request to meshplane's whole-model endpoints, made by botocore's signer."""
        credentials = cl._request_signer._credentials
        return signed_json(signed.url + path, method, credentials.access_key, credentials.secret_key, payload)

    status, model = call(stranger, "GET", "/meshplane/v1/model")
    assert status == 200 and model["documents"] == []
    status, model = call(partner, "GET", "/meshplane/v1/model")
    assert status == 200 and len(model["documents"]) == 2
    doc = {"kind": "VirtualNode", "mesh": "shop", "name": "evil", "spec": node_spec()}
    status, answer = call(stranger, "POST", "/meshplane/v1/apply", {"documents": [doc]})
    assert status == 404, answer  # as CreateVirtualNode answers a non-member: the mesh does not exist for it
    assert [n["virtualNodeName"] for n in c["owner"].list_virtual_nodes(meshName="shop")["virtualNodes"]] == ["a"]


def test_aws_cli_signs_like_with_aws(signed):
    import json

    signed.extra["clients"]["owner"].create_mesh(meshName="shop", tags=[{"key": "meshplane:sharedWith", "value": PARTNER}])
    proc = signed.aws("create-virtual-node", "--mesh-name", "shop", "--virtual-node-name", "cli",
                      "--spec", json.dumps(node_spec()),
                      key="AKPARTNER", secret="partner-secret")
    node = json.loads(proc.stdout)["virtualNode"]
    assert (node["metadata"]["meshOwner"], node["metadata"]["resourceOwner"]) == (OWNER, PARTNER)
    refused = signed.aws("list-meshes", key="AKOWNER", secret="not-the-secret", check=False)
    assert refused.returncode != 0 and "InvalidSignatureException" in refused.stderr, refused.stderr
