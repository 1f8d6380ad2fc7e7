"""`meshplane test CASES.yaml [PATH...]`: route test cases, offline; exit 1 when any fails.

The case file format is described in ``mesh_model.testing.cases``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh_model.testing.cases import junit_xml, run_case_file, summary


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "test", help="run route test cases (request -> expected target, weights, status, retries, timeout, rewrites) offline",
        description="Check where requests go, without Envoy: each case names a request, a node and what must happen.",
    )
    p.add_argument("cases", metavar="CASES.yaml", help="the case file")
    p.add_argument("paths", nargs="*", metavar="PATH", help="model folders or files (default: the case file's model:)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report (for CI)")
    p.add_argument("-q", "--quiet", action="store_true", help="print failing cases and the summary only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    results = run_case_file(args.cases, args.paths)
    for result in results:
        if not result.passed or not args.quiet:
            print(result.report())
    if args.junit:
        Path(args.junit).write_text(junit_xml(results, suite=f"meshplane test {Path(args.cases).name}"))
    failed = [r for r in results if not r.passed]
    print(f"{args.cases}: {summary(results)}", file=sys.stderr)
    return 1 if failed else 0
