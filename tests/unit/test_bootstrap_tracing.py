"""Tracing and stats in the bootstrap (`meshplane bootstrap --tracing/--stats-tags/--dogstatsd/--merge`)
and the HCM `tracing` block the compiler adds for an instance with a tracer (compiler/tracing.py)."""
from __future__ import annotations

import json

import pytest
import yaml
from google.protobuf import json_format

from mesh_model import load_texts
from mesh_model.compiler import Placement, compile_node, type_urls
from mesh_model.compiler import tracing
from mesh_model.node_id import parse_node_id
from mesh_model.render import dynamic_bootstrap, static_bootstrap
from mesh_model.render.bootstrap import merge_documents
from harness.envoy import validate_config
from harness.model_builders import dump_model, mesh, service_with_node, virtual_gateway, gateway_route, virtual_node

FRONT = parse_node_id("mesh/trace/virtualNode/front")
GATEWAY = parse_node_id("mesh/trace/virtualGateway/gw")
TRACERS = {
    "zipkin": {"driver": "zipkin", "cluster": "meshplane_tracing_zipkin"},
    "jaeger": {"driver": "jaeger", "cluster": "meshplane_tracing_jaeger", "version": "JSON"},
    "datadog": {"driver": "datadog", "cluster": "meshplane_tracing_datadog", "serviceName": "envoy-trace/front"},
    "xray": {"driver": "xray", "address": "127.0.0.1", "port": 2000, "samplingRate": 0.25, "segmentName": "trace/front"},
    "custom": {"driver": "custom", "provider": {"name": "envoy.tracers.zipkin", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig", "collector_cluster": "meshplane_tracing_zipkin",
        "collector_endpoint": "/api/v2/spans", "collector_endpoint_version": "HTTP_JSON"}}},
}


def _model():
    return load_texts([("m.yaml", dump_model(
        mesh("trace"),
        service_with_node("trace", "api.trace.local", "api", host="api.trace.local", port=8080),
        virtual_node("trace", "front", port=9080, host="front.trace.local", backends=["api.trace.local"]),
        virtual_gateway("trace", "gw", port=8443),
        gateway_route("trace", "gw", "to-api", "api.trace.local"),
    ))])


def _hcms(resources) -> list[dict]:
    out = []
    for listener in resources[type_urls.LISTENER].values():
        for chain in json_format.MessageToDict(listener, preserving_proto_field_name=True).get("filter_chains", []):
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    out.append(f["typed_config"])
    return out


def _placement(tracer: dict | None, **kw) -> Placement:
    return Placement(tracing=json.dumps(tracer) if tracer else "", **kw)


def test_placement_without_tracer_is_unchanged_and_with_one_keys_differently():
    plain = Placement()
    assert plain.key == "transparent,0.0.0.0:15000,127.0.0.1,0.0.0.0:15001"
    assert "tracing" not in plain.to_metadata()
    traced = _placement(TRACERS["zipkin"])
    assert traced.key != plain.key and traced != plain
    assert traced.to_metadata()["tracing"] == TRACERS["zipkin"]
    # node.metadata arrives as a protobuf Struct: numbers are floats; the placement is the same
    struct_form = json.loads(json.dumps({"meshplane": _placement(TRACERS["xray"]).to_metadata()}))
    struct_form["meshplane"]["tracing"]["port"] = 2000.0
    assert Placement.from_metadata(struct_form) == _placement(TRACERS["xray"])
    assert Placement.from_metadata({"meshplane": traced.to_metadata()}) == traced


@pytest.mark.parametrize("bad, message", [
    ({"driver": "opencensus"}, "driver must be one of"),
    ({"driver": "zipkin"}, "cluster"),
    ({"driver": "xray", "samplingRate": 2}, "samplingRate"),
    ({"driver": "jaeger", "cluster": "c", "version": "THRIFT"}, "version"),
    ({"driver": "custom", "provider": {}}, "provider"),
])
def test_bad_tracer_metadata_names_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        Placement.from_metadata({"meshplane": {"tracing": bad}})


def test_no_tracer_no_tracing_block():
    model = _model()
    for node in (FRONT, GATEWAY):
        assert all("tracing" not in hcm for hcm in _hcms(compile_node(model, node, Placement())))


@pytest.mark.parametrize("driver", sorted(TRACERS))
def test_every_hcm_of_a_traced_instance_gets_the_provider(driver):
    model = _model()
    for node in (FRONT, GATEWAY):
        hcms = _hcms(compile_node(model, node, _placement(TRACERS[driver])))
        assert len(hcms) >= 2 if node is FRONT else len(hcms) >= 1
        providers = [hcm["tracing"]["provider"] for hcm in hcms]
        expected_name = {"zipkin": "envoy.tracers.zipkin", "jaeger": "envoy.tracers.zipkin", "custom": "envoy.tracers.zipkin",
                         "datadog": "envoy.tracers.datadog", "xray": "envoy.tracers.xray"}[driver]
        assert {p["name"] for p in providers} == {expected_name}
    config = providers[0]["typed_config"]
    if driver in ("zipkin", "jaeger", "datadog"):
        assert config["collector_cluster"] == TRACERS[driver]["cluster"]
    if driver == "jaeger":
        assert config["collector_endpoint_version"] == "HTTP_JSON"
    if driver == "xray":
        assert config["daemon_endpoint"]["port_value"] == 2000
        assert json.loads(config["sampling_rule_manifest"]["inline_string"])["default"]["rate"] == 0.25


@pytest.mark.parametrize("driver", sorted(TRACERS))
def test_traced_resources_and_bootstrap_pass_envoy_validate(driver, tmp_path):
    """Envoy accepts the provider in every HCM, with the collector cluster the bootstrap holds."""
    placement = _placement(TRACERS[driver], ingress_address="127.0.0.2", egress_address="127.0.0.3")
    static = static_bootstrap(FRONT, compile_node(_model(), FRONT, placement))
    collector = "meshplane_tracing_zipkin" if driver == "custom" else tracing.cluster_name(driver)
    static["static_resources"]["clusters"].append({
        "name": collector, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": collector, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9411}}}}]}]}})
    ok, output = validate_config(yaml.safe_dump(static))
    assert ok, output
    dynamic = dynamic_bootstrap(FRONT, "127.0.0.1:18000", placement=placement, tracer_address="127.0.0.1:9411")
    data = yaml.safe_load(dynamic)
    assert data["node"]["metadata"]["meshplane"]["tracing"] == json.loads(placement.tracing)
    clusters = [c["name"] for c in data["static_resources"]["clusters"]]
    assert (tracing.cluster_name(driver) in clusters) == (driver in ("zipkin", "jaeger", "datadog"))
    ok, output = validate_config(dynamic)
    assert ok, output


def test_plain_bootstrap_has_no_observability_sections():
    data = yaml.safe_load(dynamic_bootstrap(FRONT, "127.0.0.1:18000"))
    assert not {"stats_config", "stats_sinks", "tracing"} & set(data)
    assert [c["name"] for c in data["static_resources"]["clusters"]] == ["meshplane_xds"]
    assert "tracing" not in data["node"]["metadata"]["meshplane"]


def test_stats_tags_sinks_and_merge():
    text = dynamic_bootstrap(GATEWAY, "127.0.0.1:18000", stats_tags=True, dogstatsd="127.0.0.1:8125", merge=[
        {"stats_sinks": [{"name": "envoy.stat_sinks.statsd", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
            "address": {"socket_address": {"protocol": "UDP", "address": "127.0.0.1", "port_value": 9125}}}}]},
        {"stats_config": {"stats_matcher": {"reject_all": False}}},
    ])
    data = yaml.safe_load(text)
    assert data["stats_config"]["stats_tags"] == [{"tag_name": "appmesh.mesh", "fixed_value": "trace"},
                                                  {"tag_name": "appmesh.virtual_gateway", "fixed_value": "gw"}]
    assert data["stats_config"]["stats_matcher"] == {"reject_all": False}
    assert [s["name"] for s in data["stats_sinks"]] == ["envoy.stat_sinks.dog_statsd", "envoy.stat_sinks.statsd"]
    ok, output = validate_config(text)
    assert ok, output
    with pytest.raises(ValueError, match="not both"):
        dynamic_bootstrap(GATEWAY, "127.0.0.1:18000", dogstatsd="127.0.0.1:8125", dogstatsd_socket="/tmp/s")
    with pytest.raises(ValueError, match="tracing-address"):
        dynamic_bootstrap(FRONT, "127.0.0.1:18000", placement=_placement(TRACERS["zipkin"]))


def test_merge_documents():
    assert merge_documents({"a": {"b": 1, "l": [1]}, "c": 2}, {"a": {"l": [2], "d": 3}, "c": 4}) == \
        {"a": {"b": 1, "l": [1, 2], "d": 3}, "c": 4}


def test_instances_with_and_without_a_tracer_share_a_compile_cache():
    from mesh_model.compiler import CompileCache

    model = _model()
    cache = CompileCache(model)
    for _ in range(2):
        assert all("tracing" not in hcm for hcm in _hcms(compile_node(model, FRONT, Placement(), cache)))
        assert all("tracing" in hcm for hcm in _hcms(compile_node(model, FRONT, _placement(TRACERS["zipkin"]), cache)))
    assert {hcm["tracing"]["provider"]["name"] for hcm in _hcms(compile_node(model, FRONT, _placement(TRACERS["datadog"]), cache))} \
        == {"envoy.tracers.datadog"}
