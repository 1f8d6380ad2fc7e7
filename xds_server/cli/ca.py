"""`meshplane ca show|rotate|issue`: inspect or rotate the mesh CA of `serve --ca-dir`, issue xDS credentials.

The CA (and cryptography) loads only when a subcommand runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

from mesh_model.node_id import parse_node_id

from xds_server.cli.options import duration


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("ca", help="inspect or rotate the mesh CA of `serve --ca-dir`")
    ca_sub = p.add_subparsers(dest="ca_command", required=True)
    q = ca_sub.add_parser("show", help="print the roots and their states (never key material)")
    q.add_argument("--ca-dir", required=True, metavar="DIR")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=show)
    q = ca_sub.add_parser("rotate", help="start a root rotation: add a new root to the trust bundle (it signs later)")
    q.add_argument("--ca-dir", required=True, metavar="DIR")
    q.set_defaults(func=rotate)
    q = ca_sub.add_parser("issue", help="issue xDS connection credentials: a node's client certificate or meshplane's server certificate")
    q.add_argument("--ca-dir", required=True, metavar="DIR")
    q.add_argument("--node", metavar="NODE_ID", help="a client certificate naming this node (for bootstrap --xds-cert)")
    q.add_argument("--server", action="store_true", help="meshplane's own server certificate (for serve --xds-tls-cert)")
    q.add_argument("--dns", action="append", default=[], metavar="NAME", help="a DNS name to include (repeatable)")
    q.add_argument("--ip", action="append", default=[], metavar="IP", help="an IP address to include (repeatable)")
    q.add_argument("--trust-domain", metavar="NAME", help="as serve --trust-domain")
    q.add_argument("--lifetime", type=duration, default=30 * 86400.0, metavar="DURATION", help="default 30d")
    q.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.pem, PREFIX.key (0600) and PREFIX-ca.pem")
    q.set_defaults(func=issue)


def show(args: argparse.Namespace) -> int:
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


def rotate(args: argparse.Namespace) -> int:
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


def issue(args: argparse.Namespace) -> int:
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
