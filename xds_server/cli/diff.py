"""`meshplane diff OLD NEW [--node NODE_ID]`: what a model change does to each node's Envoy config.

``meshplane diff --api URL NEW...`` compares the model a meshplane server holds (its API, as
``meshplane export`` reads it) with the local files NEW: what ``meshplane apply NEW... --api URL
--prune`` would do to each node (resources only the server holds read as removed).
``--api-side new`` turns it round: the local files are OLD, the server's model NEW.

Exit code (like ``terraform plan -detailed-exitcode``): 0 no changes, 2 changes, 1 errors.
"""
from __future__ import annotations

import argparse
import json
import sys

from mesh_model import load_paths
from mesh_model.diff import diff_models, render_text

from xds_server.cli.options import add_placement_arguments, placement

NO_CHANGES, CHANGES, ERROR = 0, 2, 1


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "diff", help="show what a model change does to each node's Envoy config (exit 0 none, 2 changes, 1 errors)",
        description="Compile every node of both models and show, per affected node, a one-line summary and the "
                    "resources added, removed and changed, field by field. OLD and NEW are folders or files; with "
                    "--api URL one side is the model a meshplane server holds (`meshplane diff --api URL NEW...`: "
                    "what `meshplane apply NEW... --api URL --prune` would do to each node).",
        usage="meshplane diff OLD NEW [options]\n       meshplane diff --api URL PATH... [--api-side old|new] [options]",
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="OLD NEW (a folder or a file each); with --api, the local side's files or folders")
    p.add_argument("--api", metavar="URL", help="one side is the model of this meshplane server, e.g. http://127.0.0.1:9901")
    p.add_argument("--api-side", choices=("old", "new"), default="old",
                   help="with --api: which side the server's model is (default old: server -> local files)")
    p.add_argument("--region", default="us-west-2", help="with --api: region for request signing (default us-west-2)")
    p.add_argument("--node", action="append", metavar="NODE_ID", help="only this node (repeatable)")
    p.add_argument("--summary", action="store_true", help="print only the one-line summary per node")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_placement_arguments(p)
    p.set_defaults(func=run)


def served_model(url: str, region: str = "us-west-2"):
    """The model a meshplane server holds, through its API (the documents ``meshplane export`` prints)."""
    from mesh_model.load import load_documents
    from xds_server.api.client import call  # the API package loads only when --api is given

    result = call(url, "GET", "/meshplane/v1/model", region=region)
    label = f"{url.rstrip('/')}/meshplane/v1/model"
    return load_documents([(label, doc) for doc in result.get("documents", [])])


def run(args: argparse.Namespace) -> int:
    if args.api:
        from xds_server.api.client import ApiCallError

        local = load_paths(args.paths)
        try:
            served = served_model(args.api, args.region)
        except ApiCallError as err:
            print(f"error: {err}", file=sys.stderr)
            return ERROR
        old, new = (served, local) if args.api_side == "old" else (local, served)
    else:
        if len(args.paths) != 2:
            print("meshplane diff: give OLD and NEW (or --api URL and the local PATH...)", file=sys.stderr)
            return ERROR
        old, new = load_paths([args.paths[0]]), load_paths([args.paths[1]])
    diffs = diff_models(old, new, args.node, placement(args))
    if args.json:
        json.dump({"changed": bool(diffs), "nodes": [d.to_dict() for d in diffs]}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif args.summary:
        sys.stdout.write("".join(d.summary_line() + "\n" for d in diffs) or "no changes\n")
    else:
        sys.stdout.write(render_text(diffs))
    return CHANGES if diffs else NO_CHANGES
