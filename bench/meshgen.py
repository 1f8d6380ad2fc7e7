"""Generate a synthetic App Mesh model for the benchmarks (native meshplane YAML).

Shape (all in one mesh, every name deterministic):

* ``nodes`` virtual nodes ``node-<i>``: one HTTP listener on ``port``, DNS service discovery
  (``node-<i>.<mesh>.local``), ``backends`` backend virtual services chosen pseudo-randomly
  (seeded, so every run compiles the same mesh), never the node's own service.
* ``nodes`` virtual services ``svc-<i>.<mesh>.local``, each provided by router ``router-<i>``
  (HTTP listener on ``port``) with one route ``route-<i>`` splitting traffic between
  ``node-<i>`` and ``node-<i+1>`` (weights ``weights(i)``, default 90/10).
* ``shared_backend=True`` adds ``svc-0`` to every node's backends, so one edit of
  ``route-0`` changes every node's egress route table (the fan-out benchmark's "one route
  change that affects all of them").
* ``outlier={i: n}`` gives node ``i``'s listener an ``outlierDetection`` with
  ``maxServerErrors: n`` (10 s interval, 30 s base ejection, 50 %). Every client of that
  node's service carries it on its cluster for node ``i``: with ``shared_backend=True``,
  ``outlier={0: 5}`` then editing it to 7 changes every node's CDS (the shared-service
  benchmark's "one edit of that service's VirtualNode"). ``backends=0`` with
  ``shared_backend=True``: ``svc-0`` is every node's only backend.

Everything goes through the real loader (:func:`mesh_model.load.load_texts`), so the
model is validated exactly as ``meshplane serve`` would validate the same files.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Mapping

from mesh_model.load import load_texts
from mesh_model.node_id import NodeRef
from mesh_model.spec.model import MeshModel

DEFAULT_WEIGHTS = (90, 10)


@dataclass(frozen=True)
class MeshSpec:
    nodes: int = 2000
    backends: int = 10
    mesh: str = "bench"
    port: int = 8080
    seed: int = 1
    shared_backend: bool = False
    # route index -> (weight to node-i, weight to node-i+1); others use DEFAULT_WEIGHTS
    weights: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    # node index -> maxServerErrors of its listener's outlierDetection; others have none
    outlier: Mapping[int, int] = field(default_factory=dict)

    def with_weights(self, route: int, weights: tuple[int, int]) -> "MeshSpec":
        merged = dict(self.weights)
        merged[route] = weights
        return replace(self, weights=merged)

    def with_outlier(self, node: int, max_server_errors: int) -> "MeshSpec":
        merged = dict(self.outlier)
        merged[node] = max_server_errors
        return replace(self, outlier=merged)

    def service(self, i: int) -> str:
        return f"svc-{i}.{self.mesh}.local"

    def node_ref(self, i: int) -> NodeRef:
        return NodeRef(mesh=self.mesh, kind="virtualNode", name=f"node-{i}")

    def node_id(self, i: int) -> str:
        return f"mesh/{self.mesh}/virtualNode/node-{i}"

    def backend_indices(self, i: int) -> list[int]:
        """The service indices node ``i`` calls (sorted, distinct, never its own)."""
        n = self.nodes
        rng = random.Random(self.seed * 1_000_003 + i)
        pool = [j for j in range(n) if j != i] if n <= 64 else None
        want = min(self.backends, n - 1)
        if pool is not None:
            chosen = set(rng.sample(pool, want))
        else:
            chosen = set()
            while len(chosen) < want:
                j = rng.randrange(n)
                if j != i:
                    chosen.add(j)
        if self.shared_backend and i != 0:
            chosen.add(0)
        return sorted(chosen)

    def nodes_calling(self, service_index: int) -> list[int]:
        """Indices of the nodes that have ``svc-<service_index>`` as a backend."""
        return [i for i in range(self.nodes) if service_index in self.backend_indices(i)]


def _node_doc(spec: MeshSpec, i: int) -> str:
    backends = ", ".join(f"{{virtualService: {{virtualServiceName: {spec.service(j)}}}}}" for j in spec.backend_indices(i))
    outlier = ""
    if i in spec.outlier:
        outlier = (f", outlierDetection: {{maxServerErrors: {spec.outlier[i]}, maxEjectionPercent: 50, "
                   f"interval: {{unit: s, value: 10}}, baseEjectionDuration: {{unit: s, value: 30}}}}")
    return (
        f"kind: VirtualNode\nmesh: {spec.mesh}\nname: node-{i}\nspec:\n"
        f"  listeners: [{{portMapping: {{port: {spec.port}, protocol: http}}{outlier}}}]\n"
        f"  serviceDiscovery: {{dns: {{hostname: node-{i}.{spec.mesh}.local}}}}\n"
        f"  backends: [{backends}]\n"
    )


def _service_docs(spec: MeshSpec, i: int) -> str:
    a, b = spec.weights.get(i, DEFAULT_WEIGHTS)
    other = (i + 1) % spec.nodes
    return (
        f"kind: VirtualService\nmesh: {spec.mesh}\nname: {spec.service(i)}\n"
        f"spec: {{provider: {{virtualRouter: {{virtualRouterName: router-{i}}}}}}}\n"
        f"---\n"
        f"kind: VirtualRouter\nmesh: {spec.mesh}\nname: router-{i}\n"
        f"spec: {{listeners: [{{portMapping: {{port: {spec.port}, protocol: http}}}}]}}\n"
        f"---\n"
        f"kind: Route\nmesh: {spec.mesh}\nvirtualRouter: router-{i}\nname: route-{i}\n"
        f"spec:\n"
        f"  httpRoute:\n"
        f"    match: {{prefix: /}}\n"
        f"    action: {{weightedTargets: [{{virtualNode: node-{i}, weight: {a}}}, {{virtualNode: node-{other}, weight: {b}}}]}}\n"
    )


def generate_texts(spec: MeshSpec, *, files: int = 1) -> list[tuple[str, str]]:
    """``(label, YAML text)`` pairs for :func:`load_texts` (or to write to files).

    ``files`` > 1 splits the resources over that many files (``mesh-<k>.yaml``), the mesh
    itself in the first; labels are file names.
    """
    if spec.nodes < 2:
        raise ValueError("need at least 2 nodes (each route splits between two)")
    files = max(1, min(files, spec.nodes))
    chunks: list[list[str]] = [[] for _ in range(files)]
    chunks[0].append(f"kind: Mesh\nname: {spec.mesh}\nspec: {{}}\n")
    for i in range(spec.nodes):
        chunks[i % files].append(_service_docs(spec, i))
        chunks[i % files].append(_node_doc(spec, i))
    return [(f"mesh-{k}.yaml", "---\n".join(docs)) for k, docs in enumerate(chunks)]


def load_model(spec: MeshSpec) -> MeshModel:
    return load_texts(generate_texts(spec))


def all_node_refs(spec: MeshSpec) -> list[NodeRef]:
    return [spec.node_ref(i) for i in range(spec.nodes)]


if __name__ == "__main__":  # python -m bench.meshgen [nodes] > mesh.yaml
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    sys.stdout.write(generate_texts(MeshSpec(nodes=n))[0][1])
