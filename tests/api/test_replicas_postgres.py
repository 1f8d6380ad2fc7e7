"""Two ``meshplane serve --store postgresql://...`` replicas on one database: a write on one is
read on the other at once; PostgreSQL going away and coming back while both run."""
from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import start_serve
from tests.api.specs import node_spec
from harness.processes import wait_until


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def nodes(c, mesh: str = "m") -> list[str]:
    return sorted(n["virtualNodeName"] for n in c.list_virtual_nodes(meshName="m")["virtualNodes"])


def test_two_replicas_and_a_postgres_outage(procs, free_port, tmp_path, postgres):
    url = postgres.new_database()
    a = start_serve(procs, free_port, tmp_path, "--store", url, name="replica-a")
    b = start_serve(procs, free_port, tmp_path, "--store", url, name="replica-b")
    ca, cb = a.client(), b.client()

    ca.create_mesh(meshName="m")
    written = []
    for i, (writer, reader) in enumerate([(ca, cb), (cb, ca), (ca, cb)]):
        name = f"n{i}"
        writer.create_virtual_node(meshName="m", virtualNodeName=name, spec=node_spec())
        written.append(name)
        start = time.monotonic()
        wait_until(lambda: name in nodes(reader), timeout=2, message=f"{name} did not reach the other replica in 2 s")
        assert time.monotonic() - start <= 2
    for server in (a, b):
        assert get(f"http://{server.http}/readyz")[0] == 200

    with postgres.outage():
        for server, c in ((a, ca), (b, cb)):
            assert nodes(c) == written  # reads answer from the replica's copy
            assert c.describe_mesh(meshName="m")["mesh"]["meshName"] == "m"
            with pytest.raises(ClientError) as info:
                c.create_virtual_node(meshName="m", virtualNodeName="lost", spec=node_spec())
            err = info.value.response
            assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == ("ServiceUnavailableException", 503)
            assert "PostgreSQL" in err["Error"]["Message"] and "refused" in err["Error"]["Message"]
            with pytest.raises(ClientError) as info:
                c.update_virtual_node(meshName="m", virtualNodeName="n0", spec=node_spec(port=9999))
            assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
            wait_until(lambda: get(f"http://{server.http}/readyz")[0] == 503, timeout=10,
                       message="/readyz did not turn 503 while PostgreSQL was down")
            code, body = get(f"http://{server.http}/healthz")
            assert code == 200 and "UNAVAILABLE" in body, body
            code, body = get(f"http://{server.http}/status")
            assert code == 200 and '"available": false' in body, body

    for server in (a, b):
        wait_until(lambda: get(f"http://{server.http}/readyz")[0] == 200, timeout=30,
                   message="/readyz did not come back after PostgreSQL returned")
    cb.create_virtual_node(meshName="m", virtualNodeName="after-b", spec=node_spec())
    ca.create_virtual_node(meshName="m", virtualNodeName="after-a", spec=node_spec())
    expected = sorted(written + ["after-a", "after-b"])
    for c in (ca, cb):
        wait_until(lambda: nodes(c) == expected, timeout=5, message="a replica misses a committed write")
        assert c.describe_virtual_node(meshName="m", virtualNodeName="n0")["virtualNode"]["metadata"]["version"] == 1
