"""`meshplane bootstrap --node NODE_ID --xds HOST:PORT [--xds HOST:PORT...]`: the bootstrap of a sidecar fed
by meshplane (by any of several replicas: the xDS cluster lists every one)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import yaml

from mesh_model.compiler.tracing import cluster_name
from mesh_model.node_id import NodeRef, parse_node_id
from mesh_model.render import XdsTls, dynamic_bootstrap

from xds_server.cli.options import add_placement_arguments, placement, write_output


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bootstrap", help="print the bootstrap of an Envoy sidecar that gets its config from meshplane")
    p.add_argument("--node", required=True, metavar="NODE_ID")
    p.add_argument("--xds", required=True, action="append", metavar="HOST:PORT",
                   help="where `meshplane serve` listens; repeat it for every replica (Envoy moves to another "
                        "one when its replica goes away)")
    p.add_argument("--admin-address", default="0.0.0.0:9901", metavar="HOST:PORT")
    p.add_argument("--delta", action="store_true", help="use incremental (delta) xDS")
    p.add_argument("--node-cluster", metavar="NAME", help="node.cluster, the name in Envoy's metrics and traces (App Mesh: APPMESH_RESOURCE_CLUSTER; default: the node id)")
    p.add_argument("--admin-access-log", default="/dev/null", metavar="FILE", help="Envoy admin access log (App Mesh: ENVOY_ADMIN_ACCESS_LOG_FILE)")
    p.add_argument("--initial-fetch-timeout", type=float, default=0.0, metavar="SECONDS",
                   help="how long Envoy waits for its first clusters/listeners before starting without them (0 = forever, App Mesh's default)")
    p.add_argument("-o", "--output", metavar="FILE")
    obs = p.add_argument_group("tracing and stats (App Mesh's ENABLE_ENVOY_*_TRACING, ENABLE_ENVOY_STATS_TAGS, ENABLE_ENVOY_DOG_STATSD, ...)")
    obs.add_argument("--tracing", choices=("xray", "jaeger", "datadog", "zipkin"),
                     help="trace every HTTP request: the tracer's collector cluster goes into the bootstrap and "
                          "meshplane adds the tracing block to this instance's HTTP connection managers")
    obs.add_argument("--tracing-address", metavar="HOST:PORT",
                     help="the collector (defaults: xray 127.0.0.1:2000 UDP, jaeger/zipkin 127.0.0.1:9411, datadog 127.0.0.1:8126)")
    obs.add_argument("--xray-sampling-rate", type=float, metavar="RATE", help="X-Ray: fraction of requests sampled, 0..1 (App Mesh: XRAY_SAMPLING_RATE)")
    obs.add_argument("--xray-segment-name", metavar="NAME", help="X-Ray segment name (App Mesh: XRAY_SEGMENT_NAME; default mesh/<node>)")
    obs.add_argument("--jaeger-version", choices=("PROTO", "JSON"), default="PROTO", help="Jaeger's Zipkin-compatible encoding (App Mesh: JAEGER_TRACER_VERSION)")
    obs.add_argument("--datadog-service", metavar="NAME", help="Datadog service name (App Mesh: DD_SERVICE; default envoy-<mesh>/<node>)")
    obs.add_argument("--tracing-config", metavar="FILE",
                     help="a bootstrap fragment with `tracing: {http: <provider>}` (App Mesh: ENVOY_TRACING_CFG_FILE): its provider "
                          "goes into the HTTP connection managers, the rest (e.g. a collector cluster) is merged into the bootstrap")
    obs.add_argument("--stats-tags", action="store_true", help="tag stats with appmesh.mesh and appmesh.virtual_node/virtual_gateway (App Mesh: ENABLE_ENVOY_STATS_TAGS)")
    obs.add_argument("--dogstatsd", metavar="HOST:PORT", help="DogStatsD sink over UDP (App Mesh: ENABLE_ENVOY_DOG_STATSD, STATSD_ADDRESS, STATSD_PORT)")
    obs.add_argument("--dogstatsd-socket", metavar="PATH", help="DogStatsD sink over a unix socket (App Mesh: STATSD_SOCKET_PATH)")
    obs.add_argument("--merge", action="append", default=[], metavar="FILE",
                     help="a YAML/JSON bootstrap fragment merged into the bootstrap (mappings merged, lists appended); repeatable "
                          "(App Mesh: ENVOY_STATS_SINKS_CFG_FILE, ENVOY_STATS_CONFIG_FILE)")
    add_placement_arguments(p)
    group = p.add_argument_group("credentials for meshplane's xDS port (see serve --xds-tls-* / --xds-token-file)")
    group.add_argument("--xds-ca", metavar="FILE", help="talk TLS to meshplane, trusting this CA (PEM)")
    group.add_argument("--xds-cert", metavar="FILE", help="client certificate (mTLS); its URI SAN names this node")
    group.add_argument("--xds-key", metavar="FILE", help="private key of --xds-cert")
    group.add_argument("--xds-server-name", metavar="NAME", help="name meshplane's certificate carries (default: any of the --xds hosts)")
    group.add_argument("--xds-token-file", metavar="FILE", help="a file holding this node's bearer token (written into the bootstrap; the output file is made 0600)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    node = parse_node_id(args.node)
    xds_tls = None
    if args.xds_ca:
        xds_tls = XdsTls(
            ca=str(Path(args.xds_ca).resolve()),
            cert=str(Path(args.xds_cert).resolve()) if args.xds_cert else None,
            key=str(Path(args.xds_key).resolve()) if args.xds_key else None,
            server_name=args.xds_server_name or "",
        )
    elif args.xds_cert or args.xds_key:
        raise ValueError("--xds-cert/--xds-key need --xds-ca (the CA that signed meshplane's certificate)")
    token = Path(args.xds_token_file).read_text().strip() if args.xds_token_file else None
    where, merge, tracer_address = placement(args), [], None
    if args.tracing and args.tracing_config:
        raise ValueError("--tracing and --tracing-config: one tracer per Envoy")
    if args.tracing:
        tracer_address = args.tracing_address or f"127.0.0.1:{DEFAULT_TRACER_PORTS[args.tracing]}"
        where = dataclasses.replace(where, tracing=json.dumps(_tracer(args, node, tracer_address)))
    if args.tracing_config:
        fragment = _fragment(args.tracing_config)
        provider = (fragment.pop("tracing", None) or {}).get("http") if isinstance(fragment.get("tracing"), dict) else None
        if not isinstance(provider, dict) or not provider.get("name"):
            raise ValueError(f"{args.tracing_config}: needs `tracing: {{http: {{name: ..., typed_config: ...}}}}`")
        where = dataclasses.replace(where, tracing=json.dumps({"driver": "custom", "provider": provider}))
        merge.append(fragment)
    merge += [_fragment(path) for path in args.merge]
    text = dynamic_bootstrap(
        node, args.xds, placement=where, tracer_address=tracer_address, stats_tags=args.stats_tags,
        dogstatsd=args.dogstatsd, dogstatsd_socket=args.dogstatsd_socket, merge=merge, admin=args.admin_address, delta=args.delta, xds_tls=xds_tls, xds_token=token,
        node_cluster=args.node_cluster, admin_access_log=args.admin_access_log,
        initial_fetch_timeout=f"{args.initial_fetch_timeout:g}s",
    )
    write_output(text, args.output)
    if token and args.output and args.output != "-":
        os.chmod(args.output, 0o600)  # the bootstrap now holds a credential
    return 0


DEFAULT_TRACER_PORTS = {"xray": 2000, "jaeger": 9411, "zipkin": 9411, "datadog": 8126}


def _tracer(args: argparse.Namespace, node: NodeRef, address: str) -> dict:
    """``node.metadata.meshplane.tracing`` for ``--tracing`` (see mesh_model/compiler/tracing.py)."""
    if args.tracing == "xray":
        from mesh_model.render.bootstrap import split_host_port

        host, port = split_host_port(address, "--tracing-address")
        tracer = {"driver": "xray", "address": host, "port": port, "segmentName": args.xray_segment_name or f"{node.mesh}/{node.name}"}
        if args.xray_sampling_rate is not None:
            tracer["samplingRate"] = args.xray_sampling_rate
        return tracer
    tracer = {"driver": args.tracing, "cluster": cluster_name(args.tracing)}
    if args.tracing == "jaeger":
        tracer["version"] = args.jaeger_version
    if args.tracing == "datadog":
        tracer["serviceName"] = args.datadog_service or f"envoy-{node.mesh}/{node.name}"
    return tracer


def _fragment(path: str) -> dict:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a bootstrap fragment must be a YAML/JSON mapping")
    return data
