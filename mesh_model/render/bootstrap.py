"""Envoy bootstraps: the dynamic one a sidecar starts with, and a static one for `render`.

The dynamic bootstrap carries the node identity (App Mesh's ``APPMESH_RESOURCE_ARN`` form)
and the instance placement in ``node.metadata``; everything else arrives over ADS. The
static bootstrap inlines every compiled resource so a config can be run or validated with
no control plane at all (``envoy --mode validate -c``) — handy in CI before shipping a change.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import jinja2
import yaml
from google.protobuf import json_format

from mesh_model.compiler import NodeResources, Placement, type_urls
from mesh_model.node_id import NodeRef
from mesh_model.render.static_sds import static_sds

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mesh_model.render", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def split_host_port(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) -> (host, port); ``ValueError`` naming ``what``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class XdsTls:
    """TLS to the control plane: trust for meshplane's certificate, optionally a client
    certificate (mTLS: the server then knows which node is asking). Paths are read by Envoy."""

    ca: str
    cert: str | None = None
    key: str | None = None
    server_name: str = ""  # SNI and the SAN the server certificate must carry (default: the --xds hosts)


def _san_type(name: str) -> str:
    return "IP_ADDRESS" if _is_ip(name) else "DNS"


def dynamic_bootstrap(
    node: NodeRef,
    xds: str | Sequence[str],
    *,
    xds_tls: XdsTls | None = None,
    xds_token: str | None = None,
    placement: Placement = Placement(),
    admin: str = "0.0.0.0:9901",
    delta: bool = False,
    node_cluster: str | None = None,
    admin_access_log: str = "/dev/null",
    initial_fetch_timeout: str = "0s",
    tracer_address: str | None = None,
    stats_tags: bool = False,
    dogstatsd: str | None = None,
    dogstatsd_socket: str | None = None,
    merge: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The bootstrap YAML of one Envoy instance of ``node`` talking to meshplane at ``xds``.

    ``xds`` is one ``HOST:PORT`` or several (replicas of meshplane serving the same model): the
    xDS cluster then lists every one (STATIC when all are IP addresses, else STRICT_DNS,
    round robin), so when the replica an Envoy streams from goes away, its next ADS stream
    goes to another. With TLS and no explicit ``server_name``, the certificate may name any of
    the hosts; SNI is the first DNS host.

    Observability (App Mesh's image variables, see ``envoy/entrypoint.sh``): a tracer in
    ``placement.tracing`` (zipkin, jaeger, datadog) gets its collector cluster at
    ``tracer_address`` (the compiler adds the HCM ``tracing`` blocks; X-Ray needs no cluster);
    ``stats_tags`` adds App Mesh's ``appmesh.mesh``/``appmesh.virtual_node`` (or
    ``appmesh.virtual_gateway``) tags; ``dogstatsd`` (``HOST:PORT``, UDP) or ``dogstatsd_socket``
    (a unix socket) adds a DogStatsD sink; every ``merge`` document (a user's stats sinks, stats
    config or tracing file) is then merged in: mappings key by key, lists appended.
    """
    addresses = [xds] if isinstance(xds, str) else list(xds)
    if not addresses:
        raise ValueError("--xds: at least one HOST:PORT")
    endpoints = []
    for address in addresses:
        endpoint = split_host_port(address, "--xds")
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    admin_host, admin_port = split_host_port(admin, "--admin-address")
    tls = None
    if xds_tls is not None:
        if bool(xds_tls.cert) != bool(xds_tls.key):
            raise ValueError("--xds-cert and --xds-key go together")
        hosts = list(dict.fromkeys(host for host, _ in endpoints))
        names = [xds_tls.server_name] if xds_tls.server_name else hosts
        sni = next((n for n in names if not _is_ip(n)), "")
        tls = {
            "ca": xds_tls.ca, "cert": xds_tls.cert, "key": xds_tls.key, "sni": sni,
            "sans": [{"type": _san_type(n), "name": n} for n in names],
        }
    tracer = json.loads(placement.tracing) if placement.tracing else None
    tracer_cluster = None
    if tracer is not None and "cluster" in tracer:
        if not tracer_address:
            raise ValueError(f"the {tracer['driver']} tracer needs its collector's HOST:PORT (--tracing-address)")
        host, port = split_host_port(tracer_address, "--tracing-address")
        tracer_cluster = {"name": tracer["cluster"], "host": host, "port": port,
                          "discovery": "STATIC" if _is_ip(host) else "STRICT_DNS"}
    if dogstatsd and dogstatsd_socket:
        raise ValueError("DogStatsD goes to a HOST:PORT or to a unix socket, not both")
    statsd = None
    if dogstatsd:
        host, port = split_host_port(dogstatsd, "--dogstatsd")
        statsd = {"host": host, "port": port, "path": None}
    elif dogstatsd_socket:
        statsd = {"path": dogstatsd_socket}
    tags = []
    if stats_tags:
        tags = [("appmesh.mesh", node.mesh), ("appmesh.virtual_gateway" if node.kind == "virtualGateway" else "appmesh.virtual_node", node.name)]
    text = _ENV.get_template("bootstrap.yaml.j2").render(
        tracer_cluster=tracer_cluster,
        stats_tags=tags,
        statsd=statsd,
        xds_tls=tls,
        xds_token=xds_token,
        node_id=node.node_id,
        node_cluster=node_cluster or node.node_id,
        placement=placement.to_metadata(),
        admin_host=admin_host,
        admin_port=admin_port,
        admin_access_log=admin_access_log,
        xds_endpoints=endpoints,
        xds_discovery="STATIC" if all(_is_ip(host) for host, _ in endpoints) else "STRICT_DNS",
        delta=delta,
        initial_fetch_timeout=initial_fetch_timeout,
    )
    if not merge:
        return text
    data = yaml.safe_load(text)
    for document in merge:
        data = merge_documents(data, document)
    header = "".join(line + "\n" for line in text.splitlines()[:2])  # the "written by" comment
    return header + "# merged with the user's bootstrap fragments (stats sinks / stats config / tracing files)\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, width=120)


def merge_documents(base: Any, extra: Any) -> Any:
    """``extra`` merged into ``base``: mappings key by key (recursively), lists appended, other
    values replaced (how App Mesh's image combined its variables' files with the bootstrap)."""
    if isinstance(base, dict) and isinstance(extra, Mapping):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = merge_documents(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(extra, list):
        return base + list(extra)
    return extra


def _plain(value: Any) -> Any:
    """Plain dicts and lists (MessageToDict returns OrderedDicts for Any, which YAML can't dump)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_dict(message) -> dict[str, Any]:
    """A proto as Envoy-style YAML data (snake_case field names, typed Any with ``@type``)."""
    return _plain(json_format.MessageToDict(message, preserving_proto_field_name=True))


def resources_document(resources: NodeResources) -> dict[str, list[dict[str, Any]]]:
    """The ``render --resources`` form: short type name -> list of resources, in push order."""
    return {type_urls.PLURAL_NAMES[t]: [to_dict(m) for m in resources[t].values()] for t in type_urls.PUSH_ORDER}


def _inline_routes(node: Any, routes: Mapping[str, dict]) -> Any:
    """Replace every HCM ``rds`` reference by the route configuration it names."""
    if isinstance(node, dict):
        if "rds" in node and isinstance(node["rds"], dict) and "route_config_name" in node["rds"]:
            node = dict(node)
            node["route_config"] = routes[node.pop("rds")["route_config_name"]]
        return {k: _inline_routes(v, routes) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_routes(v, routes) for v in node]
    return node


def static_bootstrap(node: NodeRef, resources: NodeResources, *, admin: str = "127.0.0.1:9901") -> dict[str, Any]:
    """A complete static bootstrap holding every resource of the node inline.

    EDS clusters become STATIC clusters carrying the ClusterLoadAssignment meshplane would
    have streamed; listeners carry their RouteConfiguration instead of an RDS reference.
    """
    admin_host, admin_port = split_host_port(admin, "--admin-address")
    endpoints = {name: to_dict(cla) for name, cla in resources[type_urls.ENDPOINT].items()}
    routes = {name: to_dict(rc) for name, rc in resources[type_urls.ROUTE].items()}
    clusters = []
    for cluster in resources[type_urls.CLUSTER].values():
        data = to_dict(cluster)
        if data.get("type") == "EDS":
            data.pop("eds_cluster_config", None)
            data["type"] = "STATIC"
            data["load_assignment"] = endpoints.get(data["name"], {"cluster_name": data["name"]})
        clusters.append(data)
    listeners = [_inline_routes(to_dict(l), routes) for l in resources[type_urls.LISTENER].values()]
    secrets = {name: to_dict(secret) for name, secret in resources.get(type_urls.SECRET, {}).items()}
    bootstrap = {
        "node": {"id": node.node_id, "cluster": node.node_id},
        "admin": {"address": {"socket_address": {"address": admin_host, "port_value": admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    # SDS-over-ADS references crash Envoy inside static resources (envoyproxy/envoy#15517).
    return static_sds(bootstrap, secrets)


def dump_yaml(data: Any) -> str:
    # Sorted keys: map fields (e.g. a JSON log format) come back from protobuf in hash order,
    # which differs between processes; sorted output is byte-stable for golden files and diffs.
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=120)
