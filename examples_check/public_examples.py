"""The eight public App Mesh examples, found and made loadable.

They are copies of files from github.com/aws/aws-app-mesh-examples (MIT-0) that the repository
does not hold: ``$MESHPLANE_APPMESH_EXAMPLES``, else ``../shared/examples/appmesh`` beside the
clone (as CI lays it out). ``examples_dir()`` finds them or raises ``ExamplesMissing`` saying
where to put them (the conftest turns that into a failed run, never a skip).

They are templates: Kubernetes ones hold ``${VAR}`` placeholders their walkthroughs'
``deploy.sh`` fills in, the CloudFormation one a stack parameter without a default, and
example 05 needs the mesh and nodes of its walkthrough's other templates (abridged here).
``prepared_examples(folder)`` writes ready-to-load copies and returns them by number.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_VAR = "MESHPLANE_APPMESH_EXAMPLES"
BESIDE = REPO.parent / "shared" / "examples" / "appmesh"
FILES = (
    "01-howto-k8s-http2.yaml",
    "02-howto-k8s-mtls-file-based.yaml",
    "03-howto-k8s-ingress-gateway.yaml",
    "04-howto-k8s-outlier-detection.yaml",
    "05-eks-getting-started-router-v1-v2-retry.yaml",
    "06-howto-k8s-http-ingress-v2-gatewayroutes.yaml",
    "07-howto-grpc-ingress-gateway-cfn.yaml",
    "08-howto-k8s-timeout-policy.yaml",
)
CFN = FILES[6]


class ExamplesMissing(Exception):
    pass


def examples_dir() -> Path:
    """The folder holding the eight example files, or ``ExamplesMissing`` saying where to put them."""
    override = os.environ.get(ENV_VAR)
    folder = Path(override).expanduser() if override else BESIDE
    where = f"${ENV_VAR}={override}" if override else f"{BESIDE} (beside the clone; or set ${ENV_VAR})"
    how = ("`make test-examples` checks meshplane against the public App Mesh examples, which this repository does "
           "not hold. Put the eight files (copies of github.com/aws/aws-app-mesh-examples, MIT-0; names: "
           + ", ".join(FILES) + ") in ../shared/examples/appmesh beside the clone, or point "
           f"{ENV_VAR} at the folder holding them.")
    if not folder.is_dir():
        raise ExamplesMissing(f"App Mesh examples not found: no folder {where}.\n{how}")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise ExamplesMissing(f"App Mesh examples incomplete in {folder}: missing {', '.join(missing)}.\n{how}")
    return folder


# what the walkthroughs' deploy.sh would export before envsubst
VARIABLES = {
    "APP_NAMESPACE": "howto-k8s-http2",
    "MESH_NAME": "howto-k8s-http2",
    "CLOUDMAP_NAMESPACE": "howto-k8s-http2.pvt.aws.local",
    "FRONT_APP_CA_CERT": "ca_1_cert.pem",
    "FRONT_APP_K8S_SECRET": "front-tls",
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_DEFAULT_REGION": "us-west-2",
    "APP": "colorapp",
}

# example 05 is one template of the eks-getting-started walkthrough; its mesh and nodes come
# from the walkthrough's other templates (abridged here)
YELB = """
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: yelb}
spec:
  namespaceSelector: {matchLabels: {mesh: yelb}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: yelb-appserver, namespace: yelb}
spec:
  awsName: yelb-appserver-virtual-node
  podSelector: {matchLabels: {app: yelb-appserver}}
  listeners: [{portMapping: {port: 4567, protocol: http}}]
  serviceDiscovery: {dns: {hostname: yelb-appserver.yelb.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: yelb-appserver-v2, namespace: yelb}
spec:
  podSelector: {matchLabels: {app: yelb-appserver-v2}}
  listeners: [{portMapping: {port: 4567, protocol: http}}]
  serviceDiscovery: {dns: {hostname: yelb-appserver-v2.yelb.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: yelb-appserver, namespace: yelb}
spec:
  awsName: yelb-appserver.yelb.svc.cluster.local
  provider: {virtualRouter: {virtualRouterRef: {name: yelb-appserver}}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: yelb-ui, namespace: yelb}
spec:
  listeners: [{portMapping: {port: 80, protocol: http}}]
  serviceDiscovery: {dns: {hostname: yelb-ui.yelb.svc.cluster.local}}
  backends: [{virtualService: {virtualServiceRef: {name: yelb-appserver}}}]
"""


def substituted(name: str) -> str:
    text = (examples_dir() / name).read_text()
    if name.startswith("07"):  # CloudFormation: the stack parameter gets a default instead
        return text.replace("    Description: Project name to link stacks\n",
                            "    Description: Project name to link stacks\n    Default: howto-grpc\n")
    return re.sub(r"\$\{(\w+)\}", lambda m: VARIABLES.get(m.group(1), f"test-{m.group(1).lower()}"), text)


def prepared_examples(folder: Path) -> dict[str, Path]:
    """Write every example, substituted, into ``folder`` (plus ``yelb-mesh.yaml`` for 05)."""
    out = {}
    for name in FILES:
        (folder / name).write_text(substituted(name))
        out[name[:2]] = folder / name
    (folder / "yelb-mesh.yaml").write_text(YELB)
    return out


def example_paths(prepared: dict[str, Path], number: str) -> list[Path]:
    """The files that load example ``number`` (05 needs its walkthrough's mesh file too)."""
    paths = [prepared[number]]
    return paths + [prepared[number].parent / "yelb-mesh.yaml"] if number == "05" else paths
