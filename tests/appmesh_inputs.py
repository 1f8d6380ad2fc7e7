"""The project's own App Mesh inputs (``tests/inputs/appmesh``), made loadable.

They are written the way App Mesh users write theirs: Kubernetes manifests
(appmesh.k8s.aws/v1beta2 custom resources among Namespace/Service/Deployment objects) with
``${VAR}`` placeholders that a deploy script fills in with envsubst, and a CloudFormation
template whose ``AppName`` parameter has no Default. Case 05 is two files: the canary router
applied on top of the mesh and nodes of ``05-reviews-mesh.yaml``.

``prepared_inputs(folder)`` writes ready-to-load copies and returns them by case number;
``input_paths(prepared, number)`` lists the files that load one case.
(The public App Mesh examples are a separate check: ``examples_check/``, ``make test-examples``.)
"""
from __future__ import annotations

import re
from pathlib import Path

from tests.paths import TESTS

INPUTS = TESTS / "inputs" / "appmesh"

# case number -> its files, the first one being the case's own
CASES = {
    "01": ["01-bookstore-catalog-http2.yaml"],
    "02": ["02-payments-mtls-files.yaml"],
    "03": ["03-storefront-ingress-gateway.yaml"],
    "04": ["04-inventory-outlier-detection.yaml"],
    "05": ["05-reviews-canary-retry.yaml", "05-reviews-mesh.yaml"],
    "06": ["06-portal-gateway-route-matches.yaml"],
    "07": ["07-ledger-grpc-gateway-cfn.yaml"],
    "08": ["08-quotes-timeouts.yaml"],
}
CFN = "07-ledger-grpc-gateway-cfn.yaml"
REVIEWS_MESH = "05-reviews-mesh.yaml"

# what the deploy script would export before envsubst
VARIABLES = {
    "APP_NAMESPACE": "bookstore",
    "MESH_NAME": "bookstore",
    "CLOUDMAP_NAMESPACE": "bookstore.pvt.local",
    "CERT_DIR": "/etc/mesh/certs",
    "IMAGE_REGISTRY": "registry.example.com/bookstore",
    "IMAGE_TAG": "1.4.2",
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-central-1",
}
NS = VARIABLES["APP_NAMESPACE"]
MESH = VARIABLES["MESH_NAME"]
APP_NAME = "ledger"  # the CloudFormation stack's AppName when a test gives it


def text(name: str) -> str:
    """One input file as written (placeholders and all)."""
    return (INPUTS / name).read_text()


def substituted(name: str, **variables: str) -> str:
    """One input file ready to load: ``${VAR}``s filled in from ``VARIABLES`` and
    ``variables`` (an unknown one is an error), and the CloudFormation template's ``AppName``
    given a Default."""
    raw = text(name)
    if name == CFN:
        marker = "  AppName:\n    Type: String\n"
        assert marker in raw, f"{name}: the AppName parameter moved"
        return raw.replace(marker, marker + f"    Default: {APP_NAME}\n", 1)
    values = {**VARIABLES, **variables}
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], raw)


# the certificates case 02 mounts from files: (folder under CERT_DIR, DNS SAN)
TLS_FILES = {"checkout": f"checkout.{NS}.svc.cluster.local", "payments-card": f"payments-card.{NS}.svc.cluster.local",
             "payments-wallet": f"payments-wallet.{NS}.svc.cluster.local"}


def write_certificates(cert_dir: Path) -> Path:
    """What case 02's secrets would mount: ``ca-bundle.pem`` and ``<name>/tls.crt``,
    ``<name>/tls.key`` per workload (fresh test-only keys), so Envoy finds the files."""
    from tests.certs import CertificateAuthority

    ca = CertificateAuthority("bookstore test CA")
    ca.write(cert_dir / "ca-bundle.pem")
    for name, dns in TLS_FILES.items():
        leaf = ca.issue(cert_dir / name / "tls", dns=[dns])
        leaf.cert.rename(cert_dir / name / "tls.crt")
        leaf.key.rename(cert_dir / name / "tls.key")
    return cert_dir


def prepared_inputs(folder: Path) -> dict[str, Path]:
    """Write every input, substituted, into ``folder`` (with ``CERT_DIR`` = ``folder/certs``,
    certificates written there); the first file of each case by number."""
    cert_dir = write_certificates(folder / "certs")
    for files in CASES.values():
        for name in files:
            (folder / name).write_text(substituted(name, CERT_DIR=str(cert_dir)))
    return {number: folder / files[0] for number, files in CASES.items()}


def input_paths(prepared: dict[str, Path], number: str) -> list[Path]:
    """The files that load case ``number`` (05 needs the reviews mesh file too)."""
    return [prepared[number].parent / name for name in CASES[number]]


CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def names_of(model, mesh: str) -> dict[str, list[str]]:
    """Every resource name of ``mesh`` by kind, in load order (what an input's names check reads)."""
    m = model.meshes[mesh]
    return {"nodes": list(m.virtual_nodes), "services": list(m.virtual_services), "routers": list(m.virtual_routers),
            "routes": {r: list(v) for r, v in m.routes.items() if v}, "gateways": list(m.virtual_gateways),
            "gateway_routes": {g: list(v) for g, v in m.gateway_routes.items() if v}}


def compiled_names(model, node: str, type_url: str = CLUSTER) -> list[str]:
    """The names of ``node``'s compiled resources of one type, sorted."""
    from mesh_model.compiler import compile_node
    from mesh_model.node_id import parse_node_id

    return sorted(compile_node(model, parse_node_id(node))[type_url])


def node_ids(model) -> list[str]:
    """Every virtual node and virtual gateway of a loaded model, as node ids."""
    return [f"mesh/{mesh.name}/{kind}/{name}" for mesh in model.meshes.values()
            for kind, members in (("virtualNode", mesh.virtual_nodes), ("virtualGateway", mesh.virtual_gateways))
            for name in members]


def envoy_rejections(model, workdir: Path) -> list[str]:
    """Compile every node and gateway of ``model``, run each config through
    ``envoy --mode validate`` as a static bootstrap and return what Envoy rejected (empty: all
    accepted). SDS secrets are left out, as in the golden tests: certificate files named by a
    model need not exist where the test runs."""
    from mesh_model.compiler import Placement, compile_node, type_urls
    from mesh_model.node_id import parse_node_id
    from mesh_model.render import dump_yaml, static_bootstrap
    from harness.envoy import validate_config

    problems = []
    for number, node_id in enumerate(node_ids(model)):
        node = parse_node_id(node_id)
        resources = compile_node(model, node, Placement())
        resources[type_urls.SECRET] = {}
        config = workdir / f"bootstrap-{number}.yaml"
        config.write_text(dump_yaml(static_bootstrap(node, resources)))
        ok, output = validate_config(config)
        if not ok:
            problems.append(f"{node_id}: {output[-2000:]}")
    return problems
