"""The `meshplane` command line: validate, render, bootstrap, serve, ca."""
from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from mesh_model import ModelError, load_paths
from mesh_model.render import XdsTls, dump_yaml, dynamic_bootstrap, resources_document, static_bootstrap
from mesh_model.compiler import CompileError, Placement, compile_node, model_warnings
from mesh_model.node_id import parse_node_id


def _placement_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("instance placement (explicit data path when any address is given)")
    group.add_argument("--ingress-address", help="IP Envoy's ingress listeners bind (default 0.0.0.0, port 15000 transparent)")
    group.add_argument("--app-address", help="IP the local app listens on (default 127.0.0.1)")
    group.add_argument("--egress-address", help="IP Envoy's egress listeners bind (default 0.0.0.0, port 15001)")


def _placement(args) -> Placement:
    explicit = bool(args.ingress_address or args.egress_address)
    defaults = Placement()
    return Placement(
        explicit=explicit,
        ingress_address=args.ingress_address or defaults.ingress_address,
        app_address=args.app_address or defaults.app_address,
        egress_address=args.egress_address or defaults.egress_address,
    )


def _write(text: str, output: str | None) -> None:
    if output and output != "-":
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def cmd_validate(args) -> int:
    model = load_paths(args.paths)
    for warning in model_warnings(model):
        print(f"warning: {warning}", file=sys.stderr)
    counts = {name: len(m.virtual_nodes) for name, m in model.meshes.items()}
    print("valid: " + ", ".join(f"mesh {name} ({n} virtual nodes)" for name, n in counts.items()), file=sys.stderr)
    return 0


def cmd_render(args) -> int:
    model = load_paths(args.paths)
    node = parse_node_id(args.node)
    resources = compile_node(model, node, _placement(args))
    document = resources_document(resources) if args.resources else static_bootstrap(node, resources, admin=args.admin_address)
    _write(dump_yaml(document), args.output)
    return 0


def cmd_bootstrap(args) -> int:
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
        node, args.xds, placement=_placement(args), admin=args.admin_address, delta=args.delta, xds_tls=xds_tls, xds_token=token,
        node_cluster=args.node_cluster, admin_access_log=args.admin_access_log,
        initial_fetch_timeout=f"{args.initial_fetch_timeout:g}s",
    )
    _write(text, args.output)
    if token and args.output and args.output != "-":
        os.chmod(args.output, 0o600)  # the bootstrap now holds a credential
    return 0


def cmd_serve(args) -> int:
    from xds_server.serve import serve  # grpc server start-up only when serving

    asyncio.run(serve(
        args.paths, args.xds, args.http,
        max_proxies_per_node=args.max_proxies_per_node, max_streams=args.max_streams,
        max_new_streams_per_second=args.max_new_streams_per_second,
        ca_dir=args.ca_dir, cert_lifetime=args.cert_lifetime, trust_domain=args.trust_domain,
        rotation_grace=args.ca_rotation_grace,
        xds_tls_cert=args.xds_tls_cert, xds_tls_key=args.xds_tls_key, xds_client_ca=args.xds_client_ca,
        xds_token_file=args.xds_token_file, admin_uris=args.admin_uri,
    ))
    return 0


def _duration(text: str) -> float:
    from xds_server.ca.authority import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_ca_show(args) -> int:
    import json

    from xds_server.ca.authority import MeshCA

    ca = MeshCA.load(args.ca_dir)
    roots = ca.describe()
    if args.json:
        print(json.dumps({"dir": str(ca.dir), "roots": roots}, indent=2))
        return 0
    print(f"mesh CA {ca.dir}: trust bundle {', '.join(ca.bundle_ids())}; signing with {ca.active.id}")
    for root in roots:
        print(f"  {root['id']}  {root['state']:<8}  {'in bundle' if root['inBundle'] else 'not trusted'}")
        print(f"      subject {root['subject']}, serial {root['serial']}, valid until {root['notAfter']}")
        print(f"      sha256 {root['sha256']}")
        facts = [f"created {root['created']}"]
        if root["activated"]:
            facts.append(f"activated {root['activated']}")
        if root["signedUntil"]:
            facts.append(f"leaves valid until at most {root['signedUntil']}")
        if root["retireAfter"] and root["state"] == "retiring":
            facts.append(f"leaves the bundle after {root['retireAfter']}")
        if root["retired"]:
            facts.append(f"retired {root['retired']}")
        print("      " + ", ".join(facts))
    return 0


def cmd_ca_rotate(args) -> int:
    from xds_server.ca.authority import MeshCA

    ca = MeshCA.load(args.ca_dir)
    root = ca.begin_rotation()
    print(f"new root {root.id} added to the trust bundle (pending: it signs nothing yet).", file=sys.stderr)
    print(
        "a running `meshplane serve --ca-dir` pushes the bundle to every node, switches signing to the new root once "
        "every connected node has ACKed it (or after --ca-rotation-grace), re-issues every certificate, and drops "
        f"root {ca.active.id} once the last certificate it signed has expired. Follow it with `meshplane ca show`.",
        file=sys.stderr,
    )
    print(root.id)
    return 0


def cmd_ca_issue(args) -> int:
    """Credentials for the xDS connection itself, signed by the mesh CA.

    A sidecar's mesh identity arrives over xDS, so the certificate that authenticates the
    xDS stream must exist before it: issue it here (for a node: URI SAN naming the node; for
    meshplane's own server: ``--server`` with its DNS names / IPs) and hand it to
    ``bootstrap --xds-cert`` / ``serve --xds-tls-cert``. Re-issue after a root rotation.
    """
    from xds_server.ca.authority import Identity, MeshCA
    from xds_server.ca.mesh_secrets import spiffe_id

    if bool(args.node) == bool(args.server):
        raise ValueError("give exactly one of --node NODE_ID or --server")
    ca = MeshCA.load(args.ca_dir)
    uri = spiffe_id(parse_node_id(args.node), args.trust_domain) if args.node else "spiffe://meshplane/controlPlane"
    leaf = ca.issue(Identity(uri, tuple(args.dns), tuple(args.ip)), args.lifetime)
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cert, key, bundle = (prefix.with_name(prefix.name + suffix) for suffix in (".pem", ".key", "-ca.pem"))
    cert.write_bytes(leaf.cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(leaf.key_pem)
    bundle.write_bytes(ca.bundle_pem())
    until = datetime.datetime.fromtimestamp(leaf.not_after, datetime.timezone.utc)
    print(f"{uri}: {cert} (key {key}, 0600), trust bundle {bundle}; valid until {until:%Y-%m-%d %H:%M} UTC", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshplane", description="App Mesh definitions -> Envoy, over xDS.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check model files; exit 1 with every error on stderr")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="print a node's Envoy config: a static bootstrap, or --resources by type")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--node", required=True, metavar="NODE_ID", help="mesh/<mesh>/virtualNode/<name> (or its ARN)")
    p.add_argument("--resources", action="store_true", help="print the xDS resources by type instead of a bootstrap")
    p.add_argument("--admin-address", default="127.0.0.1:9901", metavar="HOST:PORT")
    p.add_argument("-o", "--output", metavar="FILE")
    _placement_args(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("bootstrap", help="print the bootstrap of an Envoy sidecar that gets its config from meshplane")
    p.add_argument("--node", required=True, metavar="NODE_ID")
    p.add_argument("--xds", required=True, metavar="HOST:PORT", help="where `meshplane serve` listens")
    p.add_argument("--admin-address", default="0.0.0.0:9901", metavar="HOST:PORT")
    p.add_argument("--delta", action="store_true", help="use incremental (delta) xDS")
    p.add_argument("--node-cluster", metavar="NAME", help="node.cluster, the name in Envoy's metrics and traces (App Mesh: APPMESH_RESOURCE_CLUSTER; default: the node id)")
    p.add_argument("--admin-access-log", default="/dev/null", metavar="FILE", help="Envoy admin access log (App Mesh: ENVOY_ADMIN_ACCESS_LOG_FILE)")
    p.add_argument("--initial-fetch-timeout", type=float, default=0.0, metavar="SECONDS",
                   help="how long Envoy waits for its first clusters/listeners before starting without them (0 = forever, App Mesh's default)")
    p.add_argument("-o", "--output", metavar="FILE")
    _placement_args(p)
    group = p.add_argument_group("credentials for meshplane's xDS port (see serve --xds-tls-* / --xds-token-file)")
    group.add_argument("--xds-ca", metavar="FILE", help="talk TLS to meshplane, trusting this CA (PEM)")
    group.add_argument("--xds-cert", metavar="FILE", help="client certificate (mTLS); its URI SAN names this node")
    group.add_argument("--xds-key", metavar="FILE", help="private key of --xds-cert")
    group.add_argument("--xds-server-name", metavar="NAME", help="name meshplane's certificate carries (default: the --xds host)")
    group.add_argument("--xds-token-file", metavar="FILE", help="a file holding this node's bearer token (written into the bootstrap; the output file is made 0600)")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("serve", help="run the ADS server and watch the model files")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--xds", default="0.0.0.0:18000", metavar="HOST:PORT", help="gRPC ADS address (default 0.0.0.0:18000)")
    p.add_argument("--http", default="127.0.0.1:18001", metavar="HOST:PORT",
                   help="HTTP address of /healthz, /status, /metrics, /config_dump (default 127.0.0.1:18001)")
    p.add_argument("--max-proxies-per-node", type=int, default=500, metavar="N",
                   help="connected Envoys allowed per node id; more are refused with RESOURCE_EXHAUSTED "
                        "(default 500; App Mesh allowed 50; 0 = unlimited)")
    p.add_argument("--max-new-streams-per-second", type=float, default=0, metavar="RATE",
                   help="refuse new ADS streams above this rate with RESOURCE_EXHAUSTED (Envoy retries with backoff); "
                        "smooths reconnect storms (default 0 = unlimited)")
    p.add_argument("--max-streams", type=int, default=10_000, metavar="N",
                   help="ADS streams allowed in total (default 10000; 0 = unlimited)")
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
    group.add_argument("--cert-lifetime", type=_duration, default=24 * 3600.0, metavar="DURATION",
                       help="lifetime of node certificates, renewed at 2/3 of it (default 24h; e.g. 30s, 10m, 24h)")
    group.add_argument("--trust-domain", metavar="NAME",
                       help="SPIFFE ids spiffe://NAME/mesh/<mesh>/virtualNode/<name> "
                            "(default: spiffe://<mesh>/virtualNode/<name>)")
    group.add_argument("--ca-rotation-grace", type=_duration, default=60.0, metavar="DURATION",
                       help="longest wait for every connected node to ACK a new root before it signs (default 60s)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ca", help="inspect or rotate the mesh CA of `serve --ca-dir`")
    ca_sub = p.add_subparsers(dest="ca_command", required=True)
    q = ca_sub.add_parser("show", help="print the roots and their states (never key material)")
    q.add_argument("--ca-dir", required=True, metavar="DIR")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_ca_show)
    q = ca_sub.add_parser("rotate", help="start a root rotation: add a new root to the trust bundle (it signs later)")
    q.add_argument("--ca-dir", required=True, metavar="DIR")
    q.set_defaults(func=cmd_ca_rotate)
    q = ca_sub.add_parser("issue", help="issue xDS connection credentials: a node's client certificate or meshplane's server certificate")
    q.add_argument("--ca-dir", required=True, metavar="DIR")
    q.add_argument("--node", metavar="NODE_ID", help="a client certificate naming this node (for bootstrap --xds-cert)")
    q.add_argument("--server", action="store_true", help="meshplane's own server certificate (for serve --xds-tls-cert)")
    q.add_argument("--dns", action="append", default=[], metavar="NAME", help="a DNS name to include (repeatable)")
    q.add_argument("--ip", action="append", default=[], metavar="IP", help="an IP address to include (repeatable)")
    q.add_argument("--trust-domain", metavar="NAME", help="as serve --trust-domain")
    q.add_argument("--lifetime", type=_duration, default=30 * 86400.0, metavar="DURATION", help="default 30d")
    q.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.pem, PREFIX.key (0600) and PREFIX-ca.pem")
    q.set_defaults(func=cmd_ca_issue)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        print(f"meshplane: {len(exc.issues)} error(s); nothing was changed", file=sys.stderr)
        return 1
    except (CompileError, ValueError, OSError) as exc:
        print(f"meshplane: {exc}", file=sys.stderr)
        return 1
