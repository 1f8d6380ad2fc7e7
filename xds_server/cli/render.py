"""`meshplane render PATH... --node NODE_ID`: a node's Envoy config as a static bootstrap, or by type."""
from __future__ import annotations

import argparse

from mesh_model import load_paths
from mesh_model.compiler import compile_node
from mesh_model.node_id import parse_node_id
from mesh_model.render import dump_yaml, resources_document, static_bootstrap

from xds_server.cli.options import (add_import_arguments, add_placement_arguments, load_options, placement,
                                    print_warnings, write_output)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("render", help="print a node's Envoy config: a static bootstrap, or --resources by type")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--node", required=True, metavar="NODE_ID", help="mesh/<mesh>/virtualNode/<name> (or its ARN)")
    p.add_argument("--resources", action="store_true", help="print the xDS resources by type instead of a bootstrap")
    p.add_argument("--admin-address", default="127.0.0.1:9901", metavar="HOST:PORT")
    p.add_argument("-o", "--output", metavar="FILE")
    add_placement_arguments(p)
    add_import_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    warnings: list[str] = []
    model = load_paths(args.paths, warnings=warnings, **load_options(args))
    print_warnings(warnings)
    node = parse_node_id(args.node)
    resources = compile_node(model, node, placement(args))
    document = resources_document(resources) if args.resources else static_bootstrap(node, resources, admin=args.admin_address)
    write_output(dump_yaml(document), args.output)
    return 0
