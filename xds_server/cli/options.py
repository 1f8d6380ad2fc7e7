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


DEFAULT_REGION = "us-west-2"  # AWS::Region without --region: serve's and apply's default region too


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Values the original formats take from outside their files (CloudFormation, Terraform).

    A model PATH may also be ``TEMPLATE@Key=Value,...``: one more deployment of a
    CloudFormation template with its own parameters (``AWS::StackName=NAME``... for its pseudo
    parameters, ``LogicalId.Attr=VALUE`` for its attributes)."""
    group = parser.add_argument_group("imported formats")
    group.add_argument("--parameter-overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="CloudFormation stack parameters, as `aws cloudformation deploy` takes them (names no "
                            "loaded template declares are ignored, with a warning)")
    group.add_argument("--stack-name", metavar="NAME", help="AWS::StackName of the CloudFormation templates")
    if "--region" not in parser._option_string_actions:  # serve and apply have their own --region: the same region
        group.add_argument("--region", default=DEFAULT_REGION,
                           help=f"AWS::Region of the CloudFormation templates (default {DEFAULT_REGION})")
    group.add_argument("--account-id", metavar="ID", help="AWS::AccountId of the CloudFormation templates")
    group.add_argument("--resource-attribute", nargs="+", action="extend", default=[], metavar="LOGICAL_ID.ATTR=VALUE",
                       help="a Fn::GetAtt value known only after deploy, e.g. LoadBalancer.DNSName=lb.example.com")
    group.add_argument("--namespace", metavar="NAMESPACE",
                       help="namespace of Kubernetes objects without metadata.namespace (default: default, as kubectl)")
    group.add_argument("-var", "--var", dest="tf_vars", action="append", default=[], metavar="NAME=VALUE",
                       help="a Terraform variable (repeatable)")
    group.add_argument("-var-file", "--var-file", dest="tf_var_files", action="append", default=[], metavar="FILE",
                       help="a Terraform .tfvars file (repeatable; -var values win)")


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: expected KEY=VALUE, got '{item}'")
        out[key] = value
    return out


def load_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``load_paths`` from the import arguments: ``parameters``,
    ``variables``, ``stack_name``, ``region``, ``account_id``, ``attributes``, ``namespace``
    (``ModelError`` for an unreadable .tfvars file, naming it)."""
    from mesh_model.errors import Issue, ModelError

    variables: dict = {}
    for file in getattr(args, "tf_var_files", []):
        from mesh_model.adapters.terraform import var_file_values

        try:
            variables.update(var_file_values(Path(file).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as err:
            raise ModelError([Issue(file, "", "", f"cannot read: {getattr(err, 'strerror', None) or err}")]) from None
        except ValueError as err:
            raise ModelError([Issue(file, "", "", str(err))]) from None
    variables.update(_pairs(getattr(args, "tf_vars", []), "-var"))
    attributes = _pairs(getattr(args, "resource_attribute", []), "--resource-attribute")
    for key in attributes:
        if "." not in key.strip("."):
            raise ValueError(f"--resource-attribute: expected LOGICAL_ID.ATTR=VALUE, got '{key}=...'")
    return {"parameters": _pairs(getattr(args, "parameter_overrides", []), "--parameter-overrides"),
            "variables": variables, "stack_name": getattr(args, "stack_name", None) or None,
            "region": getattr(args, "region", None) or DEFAULT_REGION,
            "account_id": getattr(args, "account_id", None) or None, "attributes": attributes,
            "namespace": getattr(args, "namespace", None) or "default"}


def print_warnings(warnings: list[str]) -> None:
    """What a load found valid but ignored, as ``validate`` prints the model's warnings."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
