"""One table of kinds (``mesh_model/spec/kinds.py``): every other spelling of a kind is derived
from it, and each derived spelling is the one its outside world uses (checked against the
outside world where it is at hand: botocore's App Mesh model)."""
from __future__ import annotations

from botocore import xform_name

from mesh_model.adapters import cloudformation, describe, k8s, terraform
from mesh_model.spec import kinds, model
from xds_server.api import operations, resources
from xds_server.store import base


def test_every_table_of_kinds_is_the_one_table():
    assert model.KINDS == base.KINDS == kinds.NAMES
    app_mesh = {kind.name for kind in kinds.APP_MESH}
    assert set(operations.KIND_NAMES) == set(resources.KINDS) == set(cloudformation.TYPES) == app_mesh
    assert {row[0] for row in describe.KINDS.values()} == {row[0] for row in terraform.TYPES.values()} == app_mesh
    assert set(k8s.KINDS) == app_mesh - {"Route"}  # a CRD VirtualRouter holds its routes


def test_the_api_spellings_are_botocores():
    """Each App Mesh kind's operations, payload member, name parameter and list member exist
    in botocore's model under the names the table derives."""
    service = operations.service_model()
    names = set(service.operation_names)
    for kind in kinds.APP_MESH:
        for verb in ("Create", "Describe", "Update", "Delete"):
            operation = service.operation_model(f"{verb}{kind.name}")
            assert kind.member in operation.output_shape.members, (verb, kind.name)
            assert kind.name_param in operation.input_shape.members, (verb, kind.name)
        plural = "Meshes" if kind.name == "Mesh" else kind.name + "s"
        assert f"List{plural}" in names
        assert kind.list_member in service.operation_model(f"List{plural}").output_shape.members
        assert xform_name(f"Describe{kind.name}", "-") == f"describe-{kind.cli_noun}"  # the AWS CLI's command
        parent = kinds.parent_of(kind)
        if parent is not None:
            assert parent.name_param in service.operation_model(f"Create{kind.name}").input_shape.members
