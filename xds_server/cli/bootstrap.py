"""`meshplane bootstrap --node NODE_ID --xds HOST:PORT [--xds HOST:PORT...]`: the bootstrap of a sidecar fed
by meshplane (by any of several replicas: the xDS cluster lists every one)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from mesh_model.node_id import parse_node_id
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
    text = dynamic_bootstrap(
        node, args.xds, placement=placement(args), admin=args.admin_address, delta=args.delta, xds_tls=xds_tls, xds_token=token,
        node_cluster=args.node_cluster, admin_access_log=args.admin_access_log,
        initial_fetch_timeout=f"{args.initial_fetch_timeout:g}s",
    )
    write_output(text, args.output)
    if token and args.output and args.output != "-":
        os.chmod(args.output, 0o600)  # the bootstrap now holds a credential
    return 0
