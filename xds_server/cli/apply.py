"""`meshplane apply PATH... --api URL [--prune] [--dry-run]`: make a meshplane server hold the
model in these files (native, Kubernetes or CloudFormation; checked locally first, exactly as
``validate``), as ONE all-or-nothing change through the server's ``/meshplane/v1/apply``.
``--prune`` also deletes what the files no longer hold; ``--dry-run`` prints what would change."""
from __future__ import annotations

import argparse
import sys

from mesh_model import load_paths

from xds_server.cli.options import add_import_arguments, load_options, print_warnings


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("apply", help="write model files to a meshplane server through its API, all or nothing")
    p.add_argument("paths", nargs="+", help="model files or folders")
    p.add_argument("--api", required=True, metavar="URL", help="the server's HTTP address, e.g. http://127.0.0.1:9901")
    p.add_argument("--prune", action="store_true", help="also delete resources the files do not hold")
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument("--region", default="us-west-2", help="region for request signing (default us-west-2)")
    add_import_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from xds_server.api.client import ApiCallError, call  # the API package loads only when the command runs
    from xds_server.store.file_model import resources_of
    from xds_server.api.resources import native

    warnings: list[str] = []
    model = load_paths(args.paths, warnings=warnings, **load_options(args))  # ModelError: every problem, as validate prints them
    print_warnings(warnings)
    documents = [native(r) for r in resources_of(model)]
    try:
        result = call(args.api, "POST", "/meshplane/v1/apply",
                      {"documents": documents, "prune": args.prune, "dryRun": args.dry_run}, region=args.region)
    except ApiCallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    changes = result.get("changes", [])
    verb = "would" if result.get("dryRun") else "did"
    for change in changes:
        print(f"{change['action']} {change['resource']}")
    summary = ", ".join(f"{sum(1 for c in changes if c['action'] == a)} {a}" for a in ("create", "update", "delete"))
    print(f"{'dry run: ' if result.get('dryRun') else ''}{verb} {summary}" + (
        "" if result.get("dryRun") else f" (store revision {result.get('revision')})") if changes else "no changes",
        file=sys.stderr)
    return 0
