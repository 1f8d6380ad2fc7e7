"""A *static* bootstrap's SDS references (``render``, ``envoy --mode validate``): Envoy cannot
take SDS over ADS in static resources, so ``static_sds`` inlines the known secrets and points
the others at a placeholder SDS cluster."""
from __future__ import annotations

from typing import Any, Mapping

STATIC_SDS_CLUSTER = "meshplane_static_sds"


def static_sds(bootstrap: dict[str, Any], secrets: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Make a *static* bootstrap (``render``, ``envoy --mode validate``) safe for SDS-over-ADS references.

    Envoy 1.40 crashes (SIGSEGV, even in ``--mode validate``) on an ``sds_config: {ads: {}}``
    inside a *static cluster*, because static clusters subscribe before the ADS mux exists
    (envoyproxy/envoy#15517); a static bootstrap has no ADS at all anyway. Over a real ADS
    stream (CDS/LDS) the same config is fine. So, in the snake_case bootstrap dict (modified
    in place and returned), every SDS-over-ADS reference (clusters and listeners):

    * a secret present in ``secrets`` (name -> Secret as a snake_case dict, e.g. the compiled
      ``type_urls.SECRET`` resources) becomes a static secret: the reference loses its
      ``sds_config`` and the secret goes to ``static_resources.secrets`` (so its content is
      validated too);
    * any other secret is fetched from a gRPC SDS source on a placeholder cluster
      (``meshplane_static_sds`` -> 127.0.0.1:1). ``--mode validate`` accepts it; a real run
      keeps that listener/cluster warming, which is the truth: the secret is not known yet.
    """
    secrets = dict(secrets or {})
    used: dict[str, dict[str, Any]] = {}
    placeholder = [False]

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            sds = node.get("sds_config")
            if isinstance(sds, dict) and "ads" in sds and "name" in node:
                name = node["name"]
                if name in secrets:
                    del node["sds_config"]
                    used[name] = secrets[name]
                else:
                    node["sds_config"] = {
                        "api_config_source": {
                            "api_type": "GRPC",
                            "transport_api_version": "V3",
                            "grpc_services": [{"envoy_grpc": {"cluster_name": STATIC_SDS_CLUSTER}}],
                        },
                        "resource_api_version": "V3",
                    }
                    placeholder[0] = True
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    static = bootstrap.setdefault("static_resources", {})
    visit(static)
    if used:
        static["secrets"] = [{**used[name], "name": name} for name in sorted(used)]
    if placeholder[0]:
        static.setdefault("clusters", []).append({
            "name": STATIC_SDS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}},
                },
            },
            "load_assignment": {
                "cluster_name": STATIC_SDS_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1}}}}]}],
            },
        })
    return bootstrap
