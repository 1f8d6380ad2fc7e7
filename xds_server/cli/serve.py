"""`meshplane serve PATH...`: run the ADS server and watch the model files.

To add a setting: a field of ``xds_server.config.ServeConfig``, its argument in ``register``
and its line in ``config``. The server itself (and grpc) loads only when the command runs.
"""
from __future__ import annotations

import argparse
import asyncio

from xds_server.cli.options import add_import_arguments, duration, load_options
from xds_server.config import ServeConfig

D = ServeConfig  # the defaults are the dataclass's


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("serve", help="run the ADS server and watch the model files (or serve a store's model)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="model files or folders (file mode: the API is read-only)")
    p.add_argument("--store", metavar="URL",
                   help="keep the model in a store instead of files, changed through the App Mesh API on --http: "
                        "sqlite:///path/meshplane.db or postgresql://...")
    p.add_argument("--region", default=D.region, help=f"region in the API's ARNs (default {D.region})")
    p.add_argument("--api-max-meshes", type=int, default=D.api_max_meshes, metavar="N",
                   help=f"meshes per account the API creates (LimitExceededException beyond; default {D.api_max_meshes})")
    p.add_argument("--api-max-resources-per-mesh", type=int, default=D.api_max_resources_per_mesh, metavar="N",
                   help=f"resources per mesh the API creates (default {D.api_max_resources_per_mesh})")
    p.add_argument("--api-credentials", metavar="FILE",
                   help="require AWS SigV4-signed API requests with these access keys (YAML: access key id -> "
                        "secretAccessKey, accountId, meshes: {read, write}); without it the API accepts unsigned "
                        "requests from loopback only")
    p.add_argument("--xds", default=D.xds, metavar="HOST:PORT", help=f"gRPC ADS address (default {D.xds})")
    p.add_argument("--http", default=D.http, metavar="HOST:PORT",
                   help=f"HTTP address of the App Mesh API and /healthz, /readyz, /status, /metrics, /config_dump "
                        f"(default {D.http}); an address other hosts reach needs --api-credentials (or --insecure-http)")
    group = p.add_argument_group("the HTTP port (API and admin endpoints)")
    group.add_argument("--insecure-http", action="store_true",
                       help="allow a non-loopback --http without --api-credentials: /status, /config_dump and /metrics "
                            "are then open to every client that reaches the port (the API still answers loopback only)")
    group.add_argument("--metrics-token-file", metavar="FILE",
                       help="/metrics requires 'Authorization: Bearer TOKEN', TOKEN the file's first line (16+ "
                            "characters); without it /metrics is open without --api-credentials and takes SigV4-signed "
                            "requests with them")
    group.add_argument("--http-max-connections", type=int, default=D.http_max_connections, metavar="N",
                       help=f"open HTTP connections in total; more are closed at once (default {D.http_max_connections}; "
                            "0 = unlimited)")
    group.add_argument("--http-max-connections-per-client", type=int, default=D.http_max_connections_per_client,
                       metavar="N", help="open HTTP connections per client IP address (default "
                                         f"{D.http_max_connections_per_client}; 0 = unlimited)")
    group.add_argument("--api-max-body", type=int, default=D.api_max_body, metavar="BYTES",
                       help=f"largest request body on App Mesh's paths (HTTP 413 beyond; default {D.api_max_body})")
    group.add_argument("--apply-max-body", type=int, default=D.apply_max_body, metavar="BYTES",
                       help=f"largest body of POST /meshplane/v1/apply (default {D.apply_max_body}, also the most)")
    group.add_argument("--http-max-buffered", type=int, default=D.http_max_buffered, metavar="BYTES",
                       help="request bodies held at once over all connections (HTTP 429 beyond; default "
                            f"{D.http_max_buffered}; 0 = unlimited)")
    p.add_argument("--max-proxies-per-node", type=int, default=D.max_proxies_per_node, metavar="N",
                   help="connected Envoys allowed per node id; more are refused with RESOURCE_EXHAUSTED "
                        f"(default {D.max_proxies_per_node}; App Mesh allowed 50; 0 = unlimited)")
    p.add_argument("--max-new-streams-per-second", type=float, default=D.max_new_streams_per_second, metavar="RATE",
                   help="refuse new ADS streams above this rate with RESOURCE_EXHAUSTED (Envoy retries with backoff); "
                        "smooths reconnect storms (default 0 = unlimited)")
    p.add_argument("--max-streams", type=int, default=D.max_streams, metavar="N",
                   help=f"ADS streams allowed in total (default {D.max_streams}; 0 = unlimited)")

    group = p.add_argument_group("xDS security (a stream then gets only the config of the node it proved)")
    group.add_argument("--xds-tls-cert", metavar="FILE", help="serve xDS over TLS with this certificate (PEM)")
    group.add_argument("--xds-tls-key", metavar="FILE", help="private key of --xds-tls-cert (PEM)")
    group.add_argument("--xds-client-ca", metavar="FILE",
                       help="require client certificates signed by this CA; the URI SAN spiffe://<mesh>/virtualNode/<name> names the node")
    group.add_argument("--xds-token-file", metavar="FILE",
                       help="accept per-node bearer tokens (YAML: tokens: [{node: NODE_ID, sha256: HEX}, {admin: true, sha256: HEX}])")
    group.add_argument("--admin-uri", action="append", default=[], metavar="URI",
                       help="a client-certificate URI SAN that may use CSDS (repeatable)")

    group = p.add_argument_group("mesh CA (SDS secrets meshplane:identity and meshplane:trust)")
    group.add_argument("--ca-dir", metavar="DIR",
                       help="run the built-in mesh CA with its roots in DIR (created on first start, mode 0700)")
    group.add_argument("--cert-lifetime", type=duration, default=D.cert_lifetime, metavar="DURATION",
                       help="lifetime of node certificates, renewed at 2/3 of it (default 24h; e.g. 30s, 10m, 24h)")
    group.add_argument("--trust-domain", metavar="NAME",
                       help="SPIFFE ids spiffe://NAME/mesh/<mesh>/virtualNode/<name> "
                            "(default: spiffe://<mesh>/virtualNode/<name>)")
    group.add_argument("--ca-rotation-grace", type=duration, default=D.rotation_grace, metavar="DURATION",
                       help="longest wait for every connected node to ACK a new root before it signs (default 60s)")

    group = p.add_argument_group("live AWS Cloud Map (nodes with serviceDiscovery.awsCloudMap)")
    group.add_argument("--cloudmap", action="store_true",
                       help="poll AWS Cloud Map's DiscoverInstances (HEALTHY instances, the node's attributes as "
                            "QueryParameters) for every service the nodes use and no CloudMapService document covers; "
                            "region and credentials the usual AWS way (AWS_REGION, AWS_PROFILE, roles)")
    group.add_argument("--cloudmap-endpoint-url", metavar="URL", help="another Cloud Map endpoint (e.g. a VPC endpoint, a test server)")
    group.add_argument("--cloudmap-interval", type=duration, default=D.cloudmap_interval, metavar="DURATION",
                       help="time between polls (default 5s; e.g. 1s, 30s)")
    add_import_arguments(p)
    p.set_defaults(func=run)


def config(args: argparse.Namespace) -> ServeConfig:
    """The parsed arguments as the server's one settings object."""
    if bool(args.paths) == bool(args.store):
        raise ValueError("serve: give model PATH... (file mode) or --store URL, not both and not neither")
    return ServeConfig(
        paths=tuple(args.paths),
        load_options=load_options(args),
        store=args.store,
        region=args.region,
        api_max_meshes=args.api_max_meshes,
        api_max_resources_per_mesh=args.api_max_resources_per_mesh,
        api_credentials=args.api_credentials,
        insecure_http=args.insecure_http,
        metrics_token_file=args.metrics_token_file,
        http_max_connections=args.http_max_connections,
        http_max_connections_per_client=args.http_max_connections_per_client,
        api_max_body=args.api_max_body,
        apply_max_body=args.apply_max_body,
        http_max_buffered=args.http_max_buffered,
        xds=args.xds,
        http=args.http,
        max_proxies_per_node=args.max_proxies_per_node,
        max_streams=args.max_streams,
        max_new_streams_per_second=args.max_new_streams_per_second,
        ca_dir=args.ca_dir,
        cert_lifetime=args.cert_lifetime,
        trust_domain=args.trust_domain,
        rotation_grace=args.ca_rotation_grace,
        xds_tls_cert=args.xds_tls_cert,
        xds_tls_key=args.xds_tls_key,
        xds_client_ca=args.xds_client_ca,
        xds_token_file=args.xds_token_file,
        admin_uris=tuple(args.admin_uri),
        cloudmap=args.cloudmap,
        cloudmap_endpoint_url=args.cloudmap_endpoint_url,
        cloudmap_interval=args.cloudmap_interval,
    )


def run(args: argparse.Namespace) -> int:
    from xds_server.serve import serve  # grpc and the server load only when serving

    asyncio.run(serve(config(args)))
    return 0
