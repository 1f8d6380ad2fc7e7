"""File mode (``serve PATH...``): the API answers reads from the files' model and refuses every
write with ForbiddenException saying the model is managed by files."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mesh_model import load_paths
from tests.api.conftest import client
from tests.api.inproc import serve_in_thread
from tests.paths import golden_model


def test_file_mode_reads_and_refuses_writes():
    from xds_server.api import ApiService
    from xds_server.store.file_model import FILE_MODE_MESSAGE, ModelSource

    model = load_paths([golden_model("retail")])
    service = ApiService(ModelSource(lambda: model, lambda: 1), read_only=FILE_MODE_MESSAGE)
    server, url = serve_in_thread(service)
    try:
        c = client(url)
        assert [m["meshName"] for m in c.list_meshes()["meshes"]] == ["retail"]
        nodes = c.list_virtual_nodes(meshName="retail")["virtualNodes"]
        assert sorted(n["virtualNodeName"] for n in nodes) == sorted(model.meshes["retail"].virtual_nodes)
        route = c.describe_route(meshName="retail", virtualRouterName="catalog-router", routeName="admin")["route"]
        assert route["metadata"]["version"] == 1 and route["spec"]["priority"] == 20
        for call in (lambda: c.create_mesh(meshName="x"),
                     lambda: c.update_route(meshName="retail", virtualRouterName="catalog-router", routeName="admin", spec=route["spec"]),
                     lambda: c.delete_virtual_node(meshName="retail", virtualNodeName=nodes[0]["virtualNodeName"]),
                     lambda: c.tag_resource(resourceArn=route["metadata"]["arn"], tags=[{"key": "a", "value": "b"}])):
            with pytest.raises(ClientError) as info:
                call()
            err = info.value.response
            assert err["Error"]["Code"] == "ForbiddenException" and err["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert "managed by files" in err["Error"]["Message"]
    finally:
        server.shutdown()
        server.server_close()


def test_serve_paths_api_is_read_only(procs, free_port, tmp_path):
    """A real ``meshplane serve PATH``: the API lists the files' model, a write is ForbiddenException."""
    from tests.api.conftest import start_serve

    server = start_serve(procs, free_port, tmp_path, str(golden_model("retail")))
    c = server.client()
    assert [m["meshName"] for m in c.list_meshes()["meshes"]] == ["retail"]
    with pytest.raises(ClientError) as info:
        c.create_virtual_node(meshName="retail", virtualNodeName="x",
                              spec={"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]})
    assert info.value.response["Error"]["Code"] == "ForbiddenException"
    assert "managed by files" in info.value.response["Error"]["Message"]
