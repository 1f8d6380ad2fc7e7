"""`meshplane explain PATH... --node NODE_ID REQUEST`: where does this request go, and why?

REQUEST is ``[METHOD] URL [-H 'name: value']...``, ``--grpc SERVICE/METHOD HOST:PORT [-H ...]``
(metadata as headers) or ``--tcp HOST:PORT``; it may also come before ``--node``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mesh_model import load_paths
from mesh_model.compiler import compile_node
from mesh_model.explain import explain, parse_words
from mesh_model.load.formats import instance_template
from mesh_model.node_id import parse_node_id

from xds_server.cli.options import (add_import_arguments, add_placement_arguments, load_options, placement,
                                    print_warnings)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "explain", help="show where a request goes from a node (route, targets, retries, timeouts, TLS) and why",
        description="Walk a node's compiled Envoy config as Envoy would and explain one request, offline.",
        epilog="example: meshplane explain mesh/ --node mesh/shop/virtualNode/front GET http://catalog.shop.local:8080/beta?x=1 -H 'x-beta: yes'",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="model folders or files")
    p.add_argument("--node", required=True, nargs="+", metavar=("NODE_ID", "REQUEST"),
                   help="the node sending the request (a virtual node, or a virtual gateway receiving it), then the request")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'", help="a request header or gRPC metadata (repeatable)")
    p.add_argument("-X", "--method", metavar="METHOD", help="HTTP method (default GET)")
    p.add_argument("--grpc", nargs="+", metavar=("SERVICE/METHOD", "HOST:PORT"), help="a gRPC call to HOST:PORT")
    p.add_argument("--tcp", metavar="HOST:PORT", help="a TCP connection to HOST:PORT")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_placement_arguments(p)
    add_import_arguments(p)
    p.set_defaults(func=run)


def split_words(words: list[str]) -> tuple[list[str], list[str]]:
    """Leading words that are existing files or folders are model paths; the rest is the request."""
    paths: list[str] = []
    for i, word in enumerate(words):
        if "://" not in word and (Path(word).exists() or instance_template(word) is not None):
            paths.append(word)
        else:
            return paths, words[i:]
    return paths, []


def run(args: argparse.Namespace) -> int:
    node_id, extra = args.node[0], args.node[1:]
    paths, request_words = split_words(list(args.paths) + list(extra))
    if not paths:
        raise ValueError("explain: give at least one model PATH")
    words = list(request_words)
    if args.method:
        words = ["-X", args.method] + words
    for header in args.header:
        words += ["-H", header]
    if args.grpc:
        words = ["--grpc", args.grpc[0]] + args.grpc[1:] + words
        request_words = request_words + args.grpc[1:]
    if args.tcp:
        words = ["--tcp", args.tcp]
    if not request_words and not args.tcp:
        raise ValueError("explain: give a request, e.g. GET http://catalog.shop.local:8080/ (or --grpc SERVICE/METHOD HOST:PORT, --tcp HOST:PORT)")
    request = parse_words(words)
    warnings: list[str] = []
    model = load_paths(paths, warnings=warnings, **load_options(args))
    print_warnings(warnings)
    node = parse_node_id(node_id)
    resources = compile_node(model, node, placement(args))
    result = explain(resources, request, node=node, model=model)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.text())
    return 0
