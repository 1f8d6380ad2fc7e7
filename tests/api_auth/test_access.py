"""Cross-account sharing and per-key mesh rights (xds_server/api/access.py)."""
from __future__ import annotations

from dataclasses import dataclass

from xds_server.api.access import (
    FORBIDDEN, NOT_FOUND, MeshAccess, is_member, may_change_mesh, may_change_resource, may_create_in_mesh,
    may_create_mesh, may_delete_resource, may_read_mesh, may_see_mesh, owners_for_create, shared_accounts_errors,
)
from xds_server.api.sigv4 import Caller

OWNER, PARTNER, STRANGER = "111111111111", "222222222222", "333333333333"
SHOP = MeshAccess.of("shop", OWNER, [PARTNER])

owner = Caller(OWNER, "AKOWNER", ("*",), ("*",))
owner_ro = Caller(OWNER, "AKOWNERRO", ("*",), ())
partner = Caller(PARTNER, "AKPARTNER", ("*",), ("shop",))
partner_other = Caller(PARTNER, "AKPARTNER2", ("cart",), ("cart",))
stranger = Caller(STRANGER, "AKSTRANGER", ("*",), ("*",))


def refused(decision, error_type, *words):
    assert not decision and decision.error_type == error_type, decision
    for w in words:
        assert w in decision.message, (w, decision.message)
    return True


def test_membership_and_reads():
    assert is_member(OWNER, SHOP) and is_member(PARTNER, SHOP) and not is_member(STRANGER, SHOP)
    assert may_read_mesh(owner, SHOP) and may_read_mesh(owner_ro, SHOP) and may_read_mesh(partner, SHOP)
    assert refused(may_read_mesh(stranger, SHOP), NOT_FOUND, "shop")  # another account's mesh does not exist for it
    assert refused(may_read_mesh(partner_other, SHOP), FORBIDDEN, "AKPARTNER2", "meshes.read")
    assert may_see_mesh(partner, SHOP) and not may_see_mesh(stranger, SHOP) and not may_see_mesh(partner_other, SHOP)


def test_mesh_owner_parameter():
    assert may_read_mesh(partner, SHOP, requested_owner=OWNER)
    assert refused(may_read_mesh(partner, SHOP, requested_owner=PARTNER), NOT_FOUND, PARTNER)
    assert refused(may_create_in_mesh(partner, SHOP, requested_owner=STRANGER), NOT_FOUND)


def test_create_mesh_needs_key_write_right():
    assert may_create_mesh(owner, "anything")
    assert may_create_mesh(partner, "shop")
    assert refused(may_create_mesh(owner_ro, "x"), FORBIDDEN, "meshes.write", "AKOWNERRO")


def test_mesh_itself_owner_only():
    assert may_change_mesh(owner, SHOP)
    assert refused(may_change_mesh(partner, SHOP, action="delete"), FORBIDDEN, "delete", OWNER, "shared")
    assert refused(may_change_mesh(stranger, SHOP), NOT_FOUND)
    assert refused(may_change_mesh(owner_ro, SHOP), FORBIDDEN, "meshes.write")


def test_create_in_shared_mesh():
    assert may_create_in_mesh(owner, SHOP) and may_create_in_mesh(partner, SHOP)
    assert owners_for_create(partner, SHOP) == (OWNER, PARTNER)
    assert owners_for_create(owner, SHOP) == (OWNER, OWNER)
    assert refused(may_create_in_mesh(stranger, SHOP), NOT_FOUND)
    assert refused(may_create_in_mesh(owner_ro, SHOP), FORBIDDEN)
    assert refused(may_create_in_mesh(partner_other, SHOP), FORBIDDEN)
    # not shared (any more): nobody but the owner
    private = MeshAccess.of("shop", OWNER)
    assert refused(may_create_in_mesh(partner, private), NOT_FOUND)


def test_update_own_resources_only():
    assert may_change_resource(partner, SHOP, PARTNER)
    assert refused(may_change_resource(partner, SHOP, OWNER, what="route r"), FORBIDDEN, "route r", OWNER)
    assert refused(may_change_resource(owner, SHOP, PARTNER), FORBIDDEN, PARTNER)
    assert may_change_resource(owner, SHOP, OWNER)
    assert refused(may_change_resource(stranger, SHOP, STRANGER), NOT_FOUND)


def test_delete_by_resource_owner_or_mesh_owner():
    assert may_delete_resource(partner, SHOP, PARTNER)
    assert may_delete_resource(owner, SHOP, PARTNER)  # the mesh owner can clean up
    assert refused(may_delete_resource(partner, SHOP, OWNER), FORBIDDEN, "mesh owner")
    # sharing revoked: the partner's resources stay, only the owner can reach them
    revoked = MeshAccess.of("shop", OWNER)
    assert refused(may_delete_resource(partner, revoked, PARTNER), NOT_FOUND)
    assert may_delete_resource(owner, revoked, PARTNER)


def test_duck_typed_caller():
    @dataclass
    class ApiCaller:  # the API's own caller shape: account + may(mesh, write)
        account: str
        name: str = "k"

        def may(self, mesh, write):
            return mesh == "shop" and not write

    c = ApiCaller(PARTNER)
    assert may_read_mesh(c, SHOP) and refused(may_create_in_mesh(c, SHOP), FORBIDDEN, "access key k")


def test_shared_accounts_validation():
    assert shared_accounts_errors(OWNER, None) == [] and shared_accounts_errors(OWNER, [PARTNER]) == []
    assert shared_accounts_errors(OWNER, "x") == ["spec.sharedWith: expected a list of 12-digit account ids, got str"]
    errors = shared_accounts_errors(OWNER, ["12", OWNER, PARTNER, PARTNER])
    assert errors == [
        "spec.sharedWith[0]: '12' is not a 12-digit account id",
        f"spec.sharedWith[1]: {OWNER} is the mesh owner itself",
        f"spec.sharedWith[3]: {PARTNER} is listed twice",
    ]
