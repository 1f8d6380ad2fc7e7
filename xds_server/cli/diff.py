"""`meshplane diff OLD NEW [--node NODE_ID]`: what a model change does to each node's Envoy config.

Exit code (like ``terraform plan -detailed-exitcode``): 0 no changes, 2 changes, 1 errors.
"""
from __future__ import annotations

import argparse
import json
import sys

from mesh_model import load_paths
from mesh_model.diff import diff_models, render_text

from xds_server.cli.options import add_placement_arguments, placement

NO_CHANGES, CHANGES = 0, 2


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "diff", help="show what a model change does to each node's Envoy config (exit 0 none, 2 changes, 1 errors)",
        description="Compile every node of both models and show, per affected node, a one-line summary and the "
                    "resources added, removed and changed, field by field.",
    )
    p.add_argument("old", metavar="OLD", help="the current model: a folder or a file")
    p.add_argument("new", metavar="NEW", help="the changed model: a folder or a file")
    p.add_argument("--node", action="append", metavar="NODE_ID", help="only this node (repeatable)")
    p.add_argument("--summary", action="store_true", help="print only the one-line summary per node")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_placement_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    old, new = load_paths([args.old]), load_paths([args.new])
    diffs = diff_models(old, new, args.node, placement(args))
    if args.json:
        json.dump({"changed": bool(diffs), "nodes": [d.to_dict() for d in diffs]}, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif args.summary:
        sys.stdout.write("".join(d.summary_line() + "\n" for d in diffs) or "no changes\n")
    else:
        sys.stdout.write(render_text(diffs))
    return CHANGES if diffs else NO_CHANGES
