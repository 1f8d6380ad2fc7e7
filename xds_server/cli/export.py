"""`meshplane export --api URL`: print the model a meshplane server holds as native YAML
(one document per resource, ``---`` separated) that ``validate`` and ``serve PATH`` accept."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="print the model of a meshplane server (its App Mesh API) as native YAML")
    p.add_argument("--api", required=True, metavar="URL", help="the server's HTTP address, e.g. http://127.0.0.1:9901")
    p.add_argument("--region", default="us-west-2", help="region for request signing (default us-west-2)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=run)
    return p


def to_yaml(documents: list[dict]) -> str:
    return "".join("---\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120) for doc in documents)


def run(args) -> int:
    from xds_server.api.client import ApiCallError, call  # the API package loads only when the command runs

    try:
        result = call(args.api, "GET", "/meshplane/v1/model", region=args.region)
    except ApiCallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    text = f"# exported from {args.api} at store revision {result.get('revision')}\n" + to_yaml(result.get("documents", []))
    if args.output and args.output != "-":
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
