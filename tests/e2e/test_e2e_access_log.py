"""App Mesh access logs in real Envoy: `logging.accessLog.file` with a JSON format.
(Text formats are compiled the same way; an invalid one is refused by validation, tests/unit/test_servable_validation.py.)"""
from __future__ import annotations

import json

from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.traffic import http_get
from harness.model_builders import mesh, service_with_node, virtual_node, write_model


def test_json_access_log_is_written(procs, addresses, tmp_path, envoy_binary):
    app_host = addresses()
    port = free_port(app_host)
    json_log = tmp_path / "front.log"
    model = tmp_path / "model" / "m.yaml"
    write_model(model, mesh("logs"),
                service_with_node("logs", "api.logs.local", "api", port=port, host=app_host),
                virtual_node("logs", "front", backends=["api.logs.local"], logging={"accessLog": {"file": {
                    "path": str(json_log),
                    "format": {"json": [{"key": "status", "value": "%RESPONSE_CODE%"},
                                        {"key": "path", "value": "%REQ(:PATH)%"},
                                        {"key": "upstream", "value": "%UPSTREAM_CLUSTER%"}]},
                }}}))
    runner = MeshRunner(procs, model.parent, tmp_path)
    runner.start_control_plane()
    sidecar = runner.start_sidecar("mesh/logs/virtualNode/front", ingress=addresses(), app=addresses(), egress=addresses(),
                                   envoy_args=("--file-flush-interval-msec", "100"))
    with AppServer("api", app_host, port):
        for path in ("/a", "/b?x=1"):
            assert http_get(sidecar.egress_url(port, path), host_header=f"api.logs.local:{port}").status == 200

    def entries():
        lines = json_log.read_text().splitlines() if json_log.exists() else []
        return [json.loads(line) for line in lines] if len(lines) >= 2 else None

    logged = wait_until(entries, 10, message="no access log lines")  # Envoy flushes the file every 100 ms here
    assert [(e["status"], e["path"]) for e in logged] == [(200, "/a"), (200, "/b?x=1")]
    assert {e["upstream"] for e in logged} == {f"cds_egress_logs_api_http_{port}"}
