"""Creation in any order (issue 23), as a property: the shop mesh (``tests/golden/retail``) and
every project input (``tests/inputs/appmesh``), created resource by resource through the App
Mesh API in CloudFormation order, in reverse order and in seeded random orders, end as the
same model and the same compiled config, byte for byte, with no refused call.

What App Mesh itself checks still orders the calls, as it would for any client: a resource
after its mesh (and a route after its router, a gateway route after its gateway), a route
after the nodes it targets, a gateway route after the service it targets, and a service's
provider set once the provider exists (a service whose provider is not there yet is created
without one and updated later). A node's backends order nothing: App Mesh does not check
them, so callers may come before the services they call, and a node before its own service.

* CloudFormation order: the order a stack creates the resources in, each after everything it
  refers to, backends included where that is possible (a node after the services it calls,
  unless that is a cycle: a node calling a service it provides comes first), ties in the
  order of the model's documents;
* reverse order: that list backwards (callers and services first), each call as soon as App
  Mesh would take it;
* random orders: a seeded shuffle, each call as soon as App Mesh would take it.

Cloud Map stand-ins (``CloudMapService``, meshplane's own, no App Mesh resource) are in the
store from the start. (In-process ``ApiService`` over SQLite, through boto3.)
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mesh_model import load_paths

from tests.appmesh_inputs import CASES, input_paths, prepared_inputs
from tests.creation_order import check_every_order
from tests.paths import GOLDEN

INPUTS = ["retail"] + sorted(CASES)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_inputs(tmp_path_factory.mktemp("inputs"))


def _model(name: str, prepared: dict[str, Path]):
    return load_paths([GOLDEN / "retail" / "model"] if name == "retail" else input_paths(prepared, name))


@pytest.mark.parametrize("name", INPUTS)
def test_any_creation_order_gives_the_same_model_and_config(name, prepared, inproc_api):
    check_every_order(name, _model(name, prepared), inproc_api, seed_base=INPUTS.index(name))
