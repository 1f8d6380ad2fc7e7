"""Tracing: the HTTP connection manager's ``tracing`` block of an instance whose bootstrap has a tracer.

App Mesh's Envoy image turns ``ENABLE_ENVOY_XRAY_TRACING``, ``ENABLE_ENVOY_JAEGER_TRACING``,
``ENABLE_ENVOY_DATADOG_TRACING`` (meshplane adds ``ENABLE_ENVOY_ZIPKIN_TRACING``) or
``ENVOY_TRACING_CFG_FILE`` into a tracer; ``meshplane bootstrap --tracing ...`` writes the
collector's cluster into the bootstrap and describes the tracer in
``node.metadata.meshplane.tracing`` (part of the instance ``Placement``, so instances with and
without a tracer get different snapshots). The compiler then gives every HTTP connection
manager of that instance a ``tracing`` block with the provider for that driver:

* ``zipkin``  ``envoy.tracers.zipkin``, ``/api/v2/spans``, JSON (Zipkin's v2 API)
* ``jaeger``  ``envoy.tracers.zipkin`` against Jaeger's Zipkin-compatible collector (App Mesh's
  way; ``version`` PROTO by default, JSON with ``JAEGER_TRACER_VERSION=JSON``)
* ``datadog`` ``envoy.tracers.datadog`` (the agent's trace port)
* ``xray``    ``envoy.tracers.xray`` (UDP to the X-Ray daemon: no cluster), segment name and
  sampling rate
* ``custom``  the provider of the user's ``ENVOY_TRACING_CFG_FILE`` (its ``tracing.http``)

Metadata form (camelCase, as the rest of ``node.metadata.meshplane``)::

    tracing: {driver: zipkin, cluster: meshplane_tracing_zipkin}
    tracing: {driver: xray, address: 127.0.0.1, port: 2000, samplingRate: 0.05, segmentName: m/n}
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from envoy.config.trace.v3 import datadog_pb2, xray_pb2, zipkin_pb2  # noqa: F401  (their Any types, for to_proto)

DRIVERS = ("xray", "jaeger", "datadog", "zipkin", "custom")
ZIPKIN_SPANS_PATH = "/api/v2/spans"
_TRACE = "envoy.config.trace.v3"


def cluster_name(driver: str) -> str:
    """The bootstrap cluster of a tracer's collector."""
    return f"meshplane_tracing_{driver}"


def normalize(section: Any) -> dict[str, Any]:
    """``node.metadata.meshplane.tracing`` checked and in canonical form (ints as ints: a Struct
    arrives with floats); ``ValueError`` naming the bad field."""
    where = "node.metadata.meshplane.tracing"
    if not isinstance(section, Mapping):
        raise ValueError(f"{where} must be a mapping")
    driver = section.get("driver")
    if driver not in DRIVERS:
        raise ValueError(f"{where}.driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
    out: dict[str, Any] = {"driver": driver}
    if driver in ("zipkin", "jaeger", "datadog"):
        cluster = section.get("cluster")
        if not isinstance(cluster, str) or not cluster:
            raise ValueError(f"{where}.cluster (the collector's bootstrap cluster) is required for {driver}")
        out["cluster"] = cluster
    if driver == "jaeger":
        version = str(section.get("version", "PROTO")).upper()
        if version not in ("PROTO", "JSON"):
            raise ValueError(f"{where}.version must be PROTO or JSON, got {version!r}")
        out["version"] = version
    if driver == "datadog" and section.get("serviceName"):
        out["serviceName"] = str(section["serviceName"])
    if driver == "xray":
        out["address"] = str(section.get("address", "127.0.0.1"))
        port = section.get("port", 2000)
        if not isinstance(port, (int, float)) or not 1 <= int(port) <= 65535 or int(port) != port:
            raise ValueError(f"{where}.port must be 1..65535, got {port!r}")
        out["port"] = int(port)
        rate = section.get("samplingRate")
        if rate is not None:
            if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise ValueError(f"{where}.samplingRate must be a number in 0..1, got {rate!r}")
            out["samplingRate"] = float(rate)
        if section.get("segmentName"):
            out["segmentName"] = str(section["segmentName"])
    if driver == "custom":
        provider = section.get("provider")
        if not isinstance(provider, Mapping) or not provider.get("name"):
            raise ValueError(f"{where}.provider must be a tracing provider ({{name, typed_config}})")
        out["provider"] = json.loads(json.dumps(provider))
    return out


def canonical(section: Mapping[str, Any] | None) -> str:
    """The canonical text of a tracer (``""``: none), what ``Placement`` holds and keys on."""
    return json.dumps(normalize(section), sort_keys=True, separators=(",", ":")) if section else ""


def provider(section: Mapping[str, Any]) -> dict[str, Any]:
    """The HCM ``tracing.provider`` of a (normalized) tracer."""
    driver = section["driver"]
    if driver == "custom":
        _import_trace_protos()
        return dict(section["provider"])
    if driver in ("zipkin", "jaeger"):
        version = "HTTP_JSON" if driver == "zipkin" or section.get("version") == "JSON" else "HTTP_PROTO"
        return {"name": "envoy.tracers.zipkin", "typedConfig": {
            "@type": f"type.googleapis.com/{_TRACE}.ZipkinConfig",
            "collectorCluster": section["cluster"], "collectorEndpoint": ZIPKIN_SPANS_PATH,
            "collectorEndpointVersion": version, "sharedSpanContext": False,
        }}
    if driver == "datadog":
        return {"name": "envoy.tracers.datadog", "typedConfig": {
            "@type": f"type.googleapis.com/{_TRACE}.DatadogConfig",
            "collectorCluster": section["cluster"], "serviceName": section.get("serviceName", "envoy"),
        }}
    config: dict[str, Any] = {
        "@type": f"type.googleapis.com/{_TRACE}.XRayConfig",
        "daemonEndpoint": {"protocol": "UDP", "address": section["address"], "portValue": section["port"]},
        "segmentName": section.get("segmentName", "envoy"),
    }
    if "samplingRate" in section:
        manifest = {"version": 2, "default": {"fixed_target": 1, "rate": section["samplingRate"]}}
        config["samplingRuleManifest"] = {"inlineString": json.dumps(manifest, sort_keys=True)}
    return {"name": "envoy.tracers.xray", "typedConfig": config}


def _import_trace_protos() -> None:
    """A user's provider may be any of Envoy's tracers: register every one's config type."""
    import importlib
    import pkgutil

    import envoy.config.trace.v3 as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def hcm_tracing(tracer: str) -> dict[str, Any]:
    """The fields to add to an HCM (camelCase JSON) for ``tracer`` (``Placement.tracing``, the
    canonical text): ``{"tracing": {...}}``, or ``{}`` without a tracer (the HCM stays
    byte-identical)."""
    if not tracer:
        return {}
    return {"tracing": {"provider": provider(json.loads(tracer))}}
