"""The `meshplane` command line: one module per command, each registering its own arguments.

``validate``, ``render`` and ``bootstrap`` need only ``mesh_model``; ``serve`` loads the
server and ``ca`` the mesh CA only when they run.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from mesh_model import ModelError
from mesh_model.compiler import CompileError

from xds_server.cli import apply, bootstrap, ca, diff, explain, export, render, route_test, serve, validate

COMMANDS = (validate, render, bootstrap, serve, ca, explain, route_test, diff, export, apply)  # in the order of `meshplane --help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshplane", description="App Mesh definitions -> Envoy, over xDS.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
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
