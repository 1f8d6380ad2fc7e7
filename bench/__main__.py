"""Run the benchmarks and print one results table (markdown).

    python -m bench                      # everything (make bench)
    python -m bench compile              # one benchmark (or several: compile fanout)
    python -m bench compile --profile    # + cProfile of the compiler's top costs
    python -m bench --quick              # toy sizes: checks the benchmark code runs, not the targets

Benchmarks: compile, fanout (also gives memory), memory (= fanout), shared (N nodes calling one
service against `meshplane serve`: one VirtualNode edit -> every stream ACKed, per-stream memory,
and the 10,000-stream reconnect storm), convergence, serialization, api (App Mesh API: write ->
Envoy latency, update_route throughput). Results also go to bench/results/latest.md and latest.json (git-ignored).
Exit status: 0 when every benchmark ran (MISS is a result, not a failure), 1 on an ERROR.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback

from bench.common import Result, notes_section, table, write_results

ORDER = ("compile", "fanout", "shared", "convergence", "serialization", "api", "tenants")
ALIASES = {"memory": "fanout"}


def _run_one(name: str, args) -> list[Result]:
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr, table on stdout
    if name == "compile":
        from bench import compile_bench
        return compile_bench.run(nodes=args.nodes, backends=args.backends, profile=args.profile, log=log)
    if name == "fanout":
        from bench import fanout_bench
        return fanout_bench.run(streams=args.streams, channels=args.channels, backends=args.backends,
                                rounds=args.rounds, log=log)
    if name == "shared":
        from bench import shared_service_bench
        sizes = [int(x) for x in args.shared_sizes.split(",") if x.strip()]
        return shared_service_bench.run(sizes, rounds=args.shared_rounds, backends=args.shared_backends,
                                        backoff_max=args.shared_backoff_max, log=log)
    if name == "convergence":
        from bench import convergence_bench
        return convergence_bench.run(edits=args.edits, log=log)
    if name == "serialization":
        from bench import serialization_bench
        return serialization_bench.run(vhosts=args.vhosts, log=log)
    if name == "api":
        from bench import api_bench
        return api_bench.run(edits=args.edits, nodes=args.api_nodes, writes=args.api_writes, log=log)
    if name == "tenants":
        from bench import tenants_bench
        return tenants_bench.run(nodes=args.tenant_nodes, writes=args.tenant_writes, log=log)
    raise ValueError(name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="benchmark",
                        help=f"any of {', '.join(ORDER + tuple(ALIASES))} (default: all)")
    parser.add_argument("--nodes", type=int, default=2000, help="compile: virtual nodes (default 2000)")
    parser.add_argument("--backends", type=int, default=10, help="backends per node (default 10)")
    parser.add_argument("--streams", type=int, default=1000, help="fanout: ADS streams (default 1000)")
    parser.add_argument("--channels", type=int, default=None, help="fanout: gRPC channels (default streams/50, at most 20)")
    parser.add_argument("--rounds", type=int, default=3, help="fanout: rounds of ADS + floor, medians reported (default 3)")
    parser.add_argument("--shared-sizes", default="1000,10000",
                        help="shared: numbers of streams (virtual nodes calling one service), comma-separated; the "
                             "reconnect storm runs at the largest (default 1000,10000)")
    parser.add_argument("--shared-rounds", type=int, default=None,
                        help="shared: rounds of ADS + floor per size, medians reported (default 3 up to 2,000 streams, else 1)")
    parser.add_argument("--shared-backends", type=int, default=0,
                        help="shared: backends per node besides the shared service (default 0: it is their only one)")
    parser.add_argument("--shared-backoff-max", type=float, default=5.0,
                        help="shared: the simulated Envoys' reconnect backoff cap in the storm, seconds (default 5; "
                             "Envoy's built-in default is 30)")
    parser.add_argument("--edits", type=int, default=20, help="convergence: file edits (default 20)")
    parser.add_argument("--api-nodes", type=int, default=500,
                        help="api: meshgen nodes in the store (4 resources each: 500 -> 2,001 resources)")
    parser.add_argument("--api-writes", type=int, default=25, help="api: update_route calls per throughput run (default 25)")
    parser.add_argument("--tenant-nodes", type=int, default=2500,
                        help="tenants: meshgen nodes of the big mesh (4 resources each: 2,500 -> ~10,000 resources)")
    parser.add_argument("--tenant-writes", type=int, default=200, help="tenants: writes to the one-node mesh (default 200)")
    parser.add_argument("--vhosts", type=int, default=200, help="serialization: virtual hosts (default 200)")
    parser.add_argument("--profile", action="store_true", help="compile: also print a cProfile of the compiler")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes (20 nodes/streams, 3 edits, 20 vhosts, api: 10 nodes, 5 writes, tenants: 10 nodes, 10 writes, shared: 20 and 60 streams, 1 round)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/latest.*")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.streams, args.edits, args.vhosts, args.rounds = 20, 20, 3, 20, 1
        args.api_nodes, args.api_writes = 10, 5
        args.tenant_nodes, args.tenant_writes = 10, 10
        args.shared_sizes, args.shared_rounds = "20,60", 1
    names = []
    for name in args.names or ORDER:
        name = ALIASES.get(name, name)
        if name not in ORDER:
            parser.error(f"unknown benchmark {name!r}; known: {', '.join(ORDER + tuple(ALIASES))}")
        if name not in names:
            names.append(name)

    results: list[Result] = []
    started = time.monotonic()
    for name in names:
        t = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            results.extend(_run_one(name, args))
        except Exception as exc:  # keep going: one broken benchmark must not hide the others
            traceback.print_exc()
            results.append(Result(benchmark=name, measured=None, unit="", verdict="ERROR",
                                  notes=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
        print(f"== {name} done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)

    header = f"`python -m bench {' '.join(sys.argv[1:] if argv is None else argv)}`".replace("  ", " ") + \
             f", {time.monotonic() - started:.0f} s in all."
    print()
    print(table(results))
    print()
    print(notes_section(results))
    if not args.no_write:
        md, js = write_results(results, header=header)
        print(f"\nwritten: {md} and {js}", file=sys.stderr)
    return 1 if any(r.verdict == "ERROR" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
