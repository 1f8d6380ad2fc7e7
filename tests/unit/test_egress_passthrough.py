"""The transparent egress listener's App Mesh passthrough chains (mesh_model/compiler/passthrough.py)."""
from __future__ import annotations

from google.protobuf import json_format

from mesh_model import load_texts
from mesh_model.compiler import Placement, changed_keys, compile_node, node_dependencies, type_urls
from mesh_model.node_id import parse_node_id
from mesh_model.render import dump_yaml, static_bootstrap
from harness.envoy import validate_config
from tests.paths import GOLDEN

TCP_MODEL = GOLDEN / "tcp" / "model" / "mesh.yaml"
NODE = parse_node_id("mesh/data/virtualNode/app")


def _model(egress_filter: str):
    text = TCP_MODEL.read_text()
    head, sep, rest = text.partition("\n---\n")
    assert "kind: Mesh" in head and "egressFilter" not in head
    mesh_doc = f"kind: Mesh\nname: data\nspec:\n  egressFilter: {{type: {egress_filter}}}\n"
    return load_texts([("mesh.yaml", mesh_doc + sep + rest)])


def _egress(resources) -> dict:
    listener = resources[type_urls.LISTENER]["lds_egress_0.0.0.0_15001"]
    return json_format.MessageToDict(listener)


def _chains(listener: dict) -> list[tuple]:
    out = []
    for chain in listener["filterChains"]:
        match = chain.get("filterChainMatch", {})
        config = chain["filters"][0]["typedConfig"]
        target = config.get("cluster") or ("HCM" if "rds" in config else "tcp-backend")
        out.append((match.get("destinationPort"), tuple(match.get("serverNames", ())), match.get("transportProtocol"),
                    tuple(match.get("applicationProtocols", ())), target))
    return out


def test_drop_all_chains_aws_by_sni_then_plaintext_http_tls_elsewhere_refused():
    resources = compile_node(_model("DROP_ALL"), NODE, Placement())
    listener = _egress(resources)
    assert _chains(listener) == [
        (5432, (), None, (), "tcp-backend"),
        (6379, (), None, (), "tcp-backend"),
        (None, ("*.amazonaws.com", "*.amazonaws.com.cn"), "tls", (), "cds_egress_data_amazonaws"),
        (None, (), "raw_buffer", (), "HCM"),
    ]
    filters = [f["name"] for f in listener["listenerFilters"]]
    assert filters == ["envoy.filters.listener.original_dst", "envoy.filters.listener.tls_inspector"]
    # the inspector stays off the TCP backends' ports (server-first protocols are not held up)
    disabled = listener["listenerFilters"][1]["filterDisabled"]["orMatch"]["rules"]
    assert [r["destinationPortRange"] for r in disabled] == [{"start": 5432, "end": 5433}, {"start": 6379, "end": 6380}]
    assert listener["continueOnListenerFiltersTimeout"] is True
    clusters = resources[type_urls.CLUSTER]
    aws = json_format.MessageToDict(clusters["cds_egress_data_amazonaws"])
    assert aws["type"] == "ORIGINAL_DST" and aws["lbPolicy"] == "CLUSTER_PROVIDED"
    assert "cds_egress_data_mesh-allow-all" not in clusters


def test_allow_all_passes_tls_and_non_http_tcp_to_the_original_destination():
    resources = compile_node(_model("ALLOW_ALL"), NODE, Placement())
    listener = _egress(resources)
    allow = "cds_egress_data_mesh-allow-all"
    assert _chains(listener)[2:] == [
        (None, ("*.amazonaws.com", "*.amazonaws.com.cn"), "tls", (), "cds_egress_data_amazonaws"),
        (None, (), "tls", (), allow),
        (None, (), "raw_buffer", ("http/1.0", "http/1.1", "h2c"), "HCM"),
        (None, (), "raw_buffer", (), allow),
    ]
    assert [f["name"] for f in listener["listenerFilters"]][1:] == [
        "envoy.filters.listener.tls_inspector", "envoy.filters.listener.http_inspector"]
    assert {"cds_egress_data_amazonaws", allow} <= set(resources[type_urls.CLUSTER])


def test_allow_all_config_passes_envoy_validate(tmp_path):
    resources = compile_node(_model("ALLOW_ALL"), NODE, Placement())
    resources = {**resources, type_urls.SECRET: {}}
    config = tmp_path / "bootstrap.yaml"
    config.write_text(dump_yaml(static_bootstrap(NODE, resources)))
    ok, output = validate_config(config)
    assert ok, output


def test_explicit_path_has_no_passthrough():
    resources = compile_node(_model("ALLOW_ALL"), NODE, Placement(explicit=True, ingress_address="127.0.0.4", app_address="127.0.0.5", egress_address="127.0.0.6"))
    assert not any(name.endswith(("_amazonaws", "_mesh-allow-all")) for name in resources[type_urls.CLUSTER])
    for listener in resources[type_urls.LISTENER].values():
        assert "tls_inspector" not in str(listener) or "ingress" in listener.name


def test_egress_filter_is_a_recorded_dependency():
    drop, allow = _model("DROP_ALL"), _model("ALLOW_ALL")
    changed = changed_keys(drop, allow)
    assert ("Mesh", "data") in changed
    assert ("Mesh", "data") in node_dependencies(drop, "data", "app")
    assert _egress(compile_node(drop, NODE)) != _egress(compile_node(allow, NODE))
