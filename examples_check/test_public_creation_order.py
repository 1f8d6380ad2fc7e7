"""Creation in any order on the public App Mesh examples (issue 23): each example, created
resource by resource through the App Mesh API in CloudFormation order, in reverse order and in
seeded random orders, ends as the same model and byte-identical config, with no refused call
(the property of ``tests/api/test_creation_order_property.py``, on these inputs)."""
from __future__ import annotations

import pytest

from mesh_model import load_paths
from xds_server.api import ApiService
from xds_server.store import open_store

from examples_check.public_examples import FILES, example_paths, prepared_examples
from tests.api.conftest import Api
from tests.api.inproc import serve_in_thread
from tests.creation_order import check_every_order


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepared_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture
def make_api(tmp_path):
    started = []

    def make() -> Api:
        store = open_store(f"sqlite:///{tmp_path}/order{len(started)}.db")
        server, url = serve_in_thread(ApiService(store))
        started.append((server, store))
        return Api(url=url, home=tmp_path, store_url=store.url, extra={"store": store})

    yield make
    for server, store in started:
        server.shutdown()
        server.server_close()
        store.close()


@pytest.mark.parametrize("number", [name[:2] for name in FILES])
def test_any_creation_order_gives_the_same_model_and_config(number, prepared, make_api):
    check_every_order(f"example {number}", load_paths(example_paths(prepared, number)), make_api)
