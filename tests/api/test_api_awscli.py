"""The AWS CLI (``aws appmesh ... --endpoint-url``) as the client: create, describe, list,
update (version growth), tags, errors with their exit codes and messages, pagination, delete."""
from __future__ import annotations

import json


def test_aws_cli_round_trip(api, tmp_path):
    api.aws("create-mesh", "--mesh-name", "m", "--tags", "key=team,value=a")
    node = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "a.local"}}}
    for name in ("a", "b", "c"):
        created = api.aws_json("create-virtual-node", "--mesh-name", "m", "--virtual-node-name", name,
                               "--spec", json.dumps({**node, "serviceDiscovery": {"dns": {"hostname": f"{name}.local"}}}))
        assert created["virtualNode"]["metadata"]["version"] == 1
        assert created["virtualNode"]["metadata"]["arn"] == f"arn:aws:appmesh:us-west-2:111122223333:mesh/m/virtualNode/{name}"
    api.aws("create-virtual-router", "--mesh-name", "m", "--virtual-router-name", "r",
            "--spec", json.dumps({"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}))
    spec_file = tmp_path / "route.json"
    spec_file.write_text(json.dumps({"httpRoute": {"match": {"prefix": "/"}, "action": {
        "weightedTargets": [{"virtualNode": "a", "weight": 9}, {"virtualNode": "b", "weight": 1}]}}}))
    api.aws("create-route", "--mesh-name", "m", "--virtual-router-name", "r", "--route-name", "main", "--spec", f"file://{spec_file}")
    described = api.aws_json("describe-route", "--mesh-name", "m", "--virtual-router-name", "r", "--route-name", "main")["route"]
    assert described["spec"]["httpRoute"]["action"]["weightedTargets"][0] == {"virtualNode": "a", "weight": 9}
    assert described["status"]["status"] == "ACTIVE"
    spec_file.write_text(json.dumps({"httpRoute": {"match": {"prefix": "/"}, "action": {
        "weightedTargets": [{"virtualNode": "a", "weight": 5}, {"virtualNode": "b", "weight": 5}]}}}))
    updated = api.aws_json("update-route", "--mesh-name", "m", "--virtual-router-name", "r", "--route-name", "main",
                           "--spec", f"file://{spec_file}")["route"]
    assert updated["metadata"]["version"] == 2
    # the CLI pages through everything itself (--page-size uses limit/nextToken)
    listed = api.aws_json("list-virtual-nodes", "--mesh-name", "m", "--page-size", "2")
    assert [n["virtualNodeName"] for n in listed["virtualNodes"]] == ["a", "b", "c"]
    first = api.aws_json("list-virtual-nodes", "--mesh-name", "m", "--max-items", "1")
    assert [n["virtualNodeName"] for n in first["virtualNodes"]] == ["a"] and first.get("NextToken")
    assert [m["meshName"] for m in api.aws_json("list-meshes")["meshes"]] == ["m"]
    arn = described["metadata"]["arn"]
    api.aws("tag-resource", "--resource-arn", arn, "--tags", "key=k,value=v")
    assert api.aws_json("list-tags-for-resource", "--resource-arn", arn)["tags"] == [{"key": "k", "value": "v"}]
    api.aws("untag-resource", "--resource-arn", arn, "--tag-keys", "k")
    assert api.aws_json("list-tags-for-resource", "--resource-arn", arn)["tags"] == []
    # errors: a failure exit code (254 in CLI v2, 255 in v1) and App Mesh's error name and message on stderr
    failed = api.aws("delete-virtual-node", "--mesh-name", "m", "--virtual-node-name", "a", check=False)
    assert failed.returncode in (254, 255) and "ResourceInUseException" in failed.stderr and "Route m/r/main" in failed.stderr
    failed = api.aws("describe-virtual-node", "--mesh-name", "m", "--virtual-node-name", "zz", check=False)
    assert failed.returncode in (254, 255) and "NotFoundException" in failed.stderr
    failed = api.aws("create-mesh", "--mesh-name", "m", check=False)
    assert failed.returncode in (254, 255) and "ConflictException" in failed.stderr
    spec_file.write_text(json.dumps({"httpRoute": {"match": {"prefix": "/"}, "action": {
        "weightedTargets": [{"virtualNode": "ghost", "weight": 5}]}}}))
    failed = api.aws("update-route", "--mesh-name", "m", "--virtual-router-name", "r", "--route-name", "main",
                     "--spec", f"file://{spec_file}", check=False)
    assert failed.returncode in (254, 255) and "NotFoundException" in failed.stderr  # a missing target node, as App Mesh answers
    assert "spec.httpRoute.action.weightedTargets[0].virtualNode: virtual node 'ghost' not found" in failed.stderr
    deleted = api.aws_json("delete-route", "--mesh-name", "m", "--virtual-router-name", "r", "--route-name", "main")
    assert deleted["route"]["status"]["status"] == "DELETED"
