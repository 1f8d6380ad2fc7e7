"""`meshplane bootstrap` with several control-plane replicas: the xDS cluster lists every one,
and Envoy accepts the file (``envoy --mode validate``)."""
from __future__ import annotations

import pytest
import yaml

from mesh_model.node_id import parse_node_id
from mesh_model.render import XdsTls, dynamic_bootstrap
from tests.certs import CertificateAuthority
from tests.harness.envoy import validate_config

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
