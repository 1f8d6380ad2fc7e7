"""`serve` takes the imported formats' outside values too: CloudFormation stack parameters
(`--parameter-overrides`) and Terraform variables (`-var`), as `validate` and `render` do."""
from __future__ import annotations

import json

from harness.mesh import MeshRunner
from harness.traffic import http_get
from tests.appmesh_inputs import CFN, INPUTS
from tests.paths import GOLDEN


def _config_dump(runner: MeshRunner, node_id: str) -> str:
    return http_get(runner.http_url(f"/config_dump?node={node_id}"), timeout=5).body.decode()


def test_serve_cloudformation_template_with_parameter_overrides(procs, tmp_path):
    runner = MeshRunner(procs, INPUTS / CFN, tmp_path)
    runner.start_control_plane("--parameter-overrides", "AppName=ledger", "GrpcPort=9443")
    assert "cds_ingress_ledger-mesh_ledger-v1_grpc_9443" in _config_dump(runner, "mesh/ledger-mesh/virtualNode/ledger-v1")


def test_serve_without_the_parameter_refuses_to_start(procs, tmp_path):
    runner = MeshRunner(procs, INPUTS / CFN, tmp_path)
    try:
        runner.start_control_plane(timeout=15)
    except RuntimeError as exc:  # serve exited: an invalid model at start-up is fatal
        assert "--parameter-overrides AppName=" in str(exc)
    else:
        raise AssertionError("serve started without the stack parameter")


def test_serve_terraform_with_variables(procs, tmp_path):
    runner = MeshRunner(procs, GOLDEN / "terraform" / "model", tmp_path)
    runner.start_control_plane("-var", "mesh_name=prod")  # the module's default is "shop"
    dump = json.loads(_config_dump(runner, "mesh/prod/virtualNode/client"))
    assert "cds_egress_prod_red_http_8080" in json.dumps(dump)


def test_serve_reloads_a_stack_instance_when_its_template_changes(procs, tmp_path):
    """``TEMPLATE@Key=Value`` is no file: serve watches the template behind it."""
    from harness.processes import wait_until

    template = tmp_path / "stack.yaml"
    template.write_text((INPUTS / CFN).read_text())
    runner = MeshRunner(procs, f"{template}@AppName=ledger,GrpcPort=9443", tmp_path / "run")
    runner.start_control_plane()
    gateway = "mesh/ledger-mesh/virtualGateway/ledger-ingress"
    assert '"0.800s"' in _config_dump(runner, gateway)  # the route's retries: PerRetryTimeout 800 ms
    template.write_text(template.read_text().replace("PerRetryTimeout: {Unit: ms, Value: 800}",
                                                     "PerRetryTimeout: {Unit: ms, Value: 900}"))
    wait_until(lambda: '"0.900s"' in _config_dump(runner, gateway), 20, message="the edit was not served")
