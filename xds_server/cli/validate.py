"""`meshplane validate PATH...`: check model files; exit 1 with every error on stderr."""
from __future__ import annotations

import argparse
import sys

from mesh_model import load_paths
from mesh_model.compiler import model_warnings

from xds_server.cli.options import add_import_arguments, load_options, print_warnings


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("validate", help="check model files; exit 1 with every error on stderr")
    p.add_argument("paths", nargs="+", metavar="PATH")
    add_import_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    model = load_paths(args.paths, warnings=warnings, **load_options(args))
    print_warnings(warnings)
    for warning in model_warnings(model):
        print(f"warning: {warning}", file=sys.stderr)
    counts = {name: len(m.virtual_nodes) for name, m in model.meshes.items()}
    print("valid: " + ", ".join(f"mesh {name} ({n} virtual nodes)" for name, n in counts.items()), file=sys.stderr)
    return 0
