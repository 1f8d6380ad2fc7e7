"""Arguments and helpers more than one command shares: instance placement, durations, output."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mesh_model.compiler import Placement


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("instance placement (explicit data path when any address is given)")
    group.add_argument("--ingress-address", help="IP Envoy's ingress listeners bind (default 0.0.0.0, port 15000 transparent)")
    group.add_argument("--app-address", help="IP the local app listens on (default 127.0.0.1)")
    group.add_argument("--egress-address", help="IP Envoy's egress listeners bind (default 0.0.0.0, port 15001)")


def placement(args: argparse.Namespace) -> Placement:
    explicit = bool(args.ingress_address or args.egress_address)
    defaults = Placement()
    return Placement(
        explicit=explicit,
        ingress_address=args.ingress_address or defaults.ingress_address,
        app_address=args.app_address or defaults.app_address,
        egress_address=args.egress_address or defaults.egress_address,
    )


def duration(text: str) -> float:
    """An argparse type: ``30s``, ``10m``, ``24h``, ``30d`` -> seconds."""
    from xds_server.ca.authority import parse_duration  # cryptography loads only when a duration is given

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def write_output(text: str, output: str | None) -> None:
    """Write to the ``-o`` file, or stdout when there is none (or it is ``-``)."""
    if output and output != "-":
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
