"""`meshplane bootstrap` with several control-plane replicas: the xDS cluster lists every one,
and Envoy accepts the file (``envoy --mode validate``)."""
from __future__ import annotations

import pytest
import yaml

from mesh_model.node_id import parse_node_id
from mesh_model.render import XdsTls, dynamic_bootstrap
from tests.certs import CertificateAuthority
from harness.envoy import validate_config

NODE = parse_node_id("mesh/shop/virtualNode/front")


def xds_cluster(text: str) -> dict:
    doc = yaml.safe_load(text)
    (cluster,) = [c for c in doc["static_resources"]["clusters"] if c["name"] == "meshplane_xds"]
    return cluster


def endpoints(cluster: dict) -> list[tuple[str, int]]:
    (locality,) = cluster["load_assignment"]["endpoints"]
    return [(e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"])
            for e in locality["lb_endpoints"]]


@pytest.mark.parametrize("xds, discovery", [
    (["127.0.0.1:18000", "127.0.0.2:18000", "[::1]:18001"], "STATIC"),
    (["meshplane-0.meshplane:18000", "meshplane-1.meshplane:18000", "10.1.2.3:18000"], "STRICT_DNS"),
])
def test_every_replica_listed_and_valid(envoy_binary, xds, discovery, tmp_path):
    text = dynamic_bootstrap(NODE, xds, delta=True)
    cluster = xds_cluster(text)
    assert cluster["type"] == discovery and cluster["lb_policy"] == "ROUND_ROBIN"
    assert endpoints(cluster) == [(h.strip("[]"), int(p)) for h, _, p in (x.rpartition(":") for x in xds)]
    ok, output = validate_config(text, binary=envoy_binary)
    assert ok, output


def test_tls_names_every_replica(envoy_binary, tmp_path):
    ca = CertificateAuthority().write(tmp_path / "ca.pem")
    text = dynamic_bootstrap(NODE, ["cp-a.internal:18000", "cp-b.internal:18000", "127.0.0.9:18000"],
                             xds_tls=XdsTls(str(ca)))
    tls = xds_cluster(text)["transport_socket"]["typed_config"]
    sans = tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert [(s["san_type"], s["matcher"]["exact"]) for s in sans] == [
        ("DNS", "cp-a.internal"), ("DNS", "cp-b.internal"), ("IP_ADDRESS", "127.0.0.9")]
    assert tls["sni"] == "cp-a.internal"
    explicit = xds_cluster(dynamic_bootstrap(NODE, ["10.0.0.1:1", "10.0.0.2:1"], xds_tls=XdsTls(str(ca), server_name="cp.example")))
    tls = explicit["transport_socket"]["typed_config"]
    assert tls["sni"] == "cp.example"
    assert [s["matcher"]["exact"] for s in tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]] == ["cp.example"]
    ok, output = validate_config(text, binary=envoy_binary)
    assert ok, output


def test_one_replica_unchanged_and_duplicates_dropped():
    one = xds_cluster(dynamic_bootstrap(NODE, "127.0.0.1:18000"))
    assert "lb_policy" not in one and endpoints(one) == [("127.0.0.1", 18000)]
    assert dynamic_bootstrap(NODE, ["127.0.0.1:18000"]) == dynamic_bootstrap(NODE, "127.0.0.1:18000")
    assert endpoints(xds_cluster(dynamic_bootstrap(NODE, ["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2"]))) == [
        ("127.0.0.1", 1), ("127.0.0.1", 2)]
    with pytest.raises(ValueError, match="--xds must be HOST:PORT"):
        dynamic_bootstrap(NODE, ["127.0.0.1:1", "nope"])
    with pytest.raises(ValueError, match="at least one"):
        dynamic_bootstrap(NODE, [])


def test_cli_repeated_xds(envoy_binary, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "bootstrap.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "xds_server.cli", "bootstrap", "--node", "mesh/shop/virtualNode/front",
         "--xds", "127.0.0.1:18000", "--xds", "127.0.0.1:18001", "--xds", "meshplane-2.internal:18000",
         "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    cluster = xds_cluster(out.read_text())
    assert cluster["type"] == "STRICT_DNS"
    assert endpoints(cluster) == [("127.0.0.1", 18000), ("127.0.0.1", 18001), ("meshplane-2.internal", 18000)]
    ok, output = validate_config(out, binary=envoy_binary)
    assert ok, output


def test_envoy_fails_over_to_the_other_replica(procs, addresses, tmp_path, envoy_binary):
    """Two `meshplane serve` replicas of one model; Envoy's bootstrap lists both. Kill the one it
    streams from: it moves to the other, which hands it the same versions (no listener or
    cluster churn), and traffic keeps flowing."""
    import signal

    from mesh_model.compiler import Placement
    from harness.apps import AppServer
    from harness.envoy import EnvoyProcess
    from harness.mesh import MeshRunner
    from harness.processes import free_port, wait_until
    from harness.traffic import http_get
    from harness.model_builders import mesh, service_with_node, virtual_node, write_model

    app_host = addresses()
    port = free_port(app_host)
    model = tmp_path / "model" / "m.yaml"
    write_model(model, mesh("fo"), service_with_node("fo", "api.fo.local", "api", port=port, host=app_host),
                virtual_node("fo", "front", backends=["api.fo.local"]))
    replicas = [MeshRunner(procs, model.parent, tmp_path / f"replica-{i}") for i in range(2)]
    for r in replicas:
        r.start_control_plane()
    node_id = "mesh/fo/virtualNode/front"
    placement = Placement(explicit=True, ingress_address=addresses(), app_address=addresses(), egress_address=addresses())
    admin = ("127.0.0.1", free_port())
    config = tmp_path / "front.yaml"
    config.write_text(dynamic_bootstrap(parse_node_id(node_id), ["%s:%d" % r.xds for r in replicas],
                                        placement=placement, admin="%s:%d" % admin))
    envoy = EnvoyProcess.start(procs, config, name="envoy-front", admin=admin)
    envoy.wait_ready(timeout=30)

    def connected() -> MeshRunner | None:
        live = [r for r in replicas if r.serve_proc.alive() and r.status().get("nodes", {}).get(node_id, {}).get("streams")]
        return live[0] if len(live) == 1 else None

    first = wait_until(connected, 15, message="Envoy connected to one replica")
    before = first.wait_converged(node_id, types=("cds", "lds", "rds"))
    churn = r"listener_manager\.listener_(added|modified|removed)|cluster_manager\.cluster_(added|modified|removed)"
    stats_before = envoy.stats(churn)
    with AppServer("api", app_host, port):
        assert http_get(f"http://{placement.egress_address}:{port}/", host_header=f"api.fo.local:{port}").status == 200
        first.serve_proc.signal(signal.SIGKILL)
        first.serve_proc.stop()
        second = [r for r in replicas if r is not first][0]
        wait_until(lambda: connected() is second, 30, message="Envoy moved to the other replica")
        after = second.wait_converged(node_id, types=("cds", "lds", "rds"))
        assert after == before  # byte-identical resources, identical versions
        assert envoy.stats(churn) == stats_before  # nothing re-created or drained
        assert http_get(f"http://{placement.egress_address}:{port}/", host_header=f"api.fo.local:{port}").status == 200
