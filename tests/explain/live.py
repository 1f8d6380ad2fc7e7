"""Helpers for the explain-vs-real-Envoy test: a model whose virtual nodes live on loopback
addresses, one static Envoy (``meshplane render``'s bootstrap) per mesh, apps that answer with
their own name, and an access log that tells which route Envoy matched for each request."""
from __future__ import annotations

import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh_model import load_texts
from mesh_model.compiler import Placement, compile_node
from mesh_model.node_id import parse_node_id
from mesh_model.render import dump_yaml, static_bootstrap
from harness.apps import AppServer
from harness.envoy import EnvoyProcess
from harness.processes import free_port

ID_HEADER = "x-explain-id"
LOG_FORMAT = "%REQ(X-EXPLAIN-ID)% %ROUTE_NAME% %UPSTREAM_CLUSTER% %RESPONSE_CODE%\n"


def relocate(docs: list[dict], addresses, log_path: Path, logged: str) -> tuple[list[dict], dict[str, str]]:
    """Every virtual node discovered by DNS at a fresh loopback address; ``logged`` (a node or
    gateway name) writes the access log the test reads."""
    where: dict[str, str] = {}
    out = []
    for doc in docs:
        doc = dict(doc)
        if doc.get("kind") == "CloudMapService":
            continue
        spec = dict(doc.get("spec") or {})
        if doc.get("kind") == "VirtualNode":
            where[doc["name"]] = addresses()
            spec["serviceDiscovery"] = {"dns": {"hostname": where[doc["name"]]}}
        if doc.get("kind") in ("VirtualNode", "VirtualGateway") and doc["name"] == logged:
            spec["logging"] = {"accessLog": {"file": {"path": str(log_path), "format": {"text": LOG_FORMAT}}}}
        if doc.get("kind") == "Mesh":
            spec.pop("serviceDiscovery", None)  # IPv4 loopback only
        doc["spec"] = spec
        out.append(doc)
    return out, where


class AnyGrpcServer:
    """A gRPC server answering every method with its own name."""

    def __init__(self, name: str, host: str, port: int):
        import grpc

        self.name = name
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        outer = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                return grpc.unary_unary_rpc_method_handler(lambda request, context: outer.name.encode())

        self.server.add_generic_rpc_handlers([Handler()])
        self.server.add_insecure_port(f"{host}:{port}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


@dataclass
class LiveMesh:
    model: Any
    node: Any
    placement: Placement
    resources: Any
    envoy: EnvoyProcess
    log_path: Path
    apps: list = field(default_factory=list)

    def stop(self) -> None:
        for app in self.apps:
            app.stop()

    def routes_by_id(self, expected: int, timeout: float = 10.0) -> dict[str, list[tuple[str, str, str]]]:
        """request id -> [(route name, upstream cluster, status)] from the access log."""
        deadline = time.monotonic() + timeout
        while True:
            seen: dict[str, list[tuple[str, str, str]]] = {}
            text = self.log_path.read_text() if self.log_path.exists() else ""
            for line in text.splitlines():
                parts = line.split(" ")
                if len(parts) == 4 and parts[0] != "-":
                    seen.setdefault(parts[0], []).append((parts[1], parts[2], parts[3]))
            if len(seen) >= expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.2)


def start_live_mesh(docs: list[dict], node_id: str, group, addresses, workdir: Path) -> LiveMesh:
    """Load ``docs`` relocated to loopback, start apps for every listener of every virtual node,
    and one Envoy with the node's static config (explicit data path)."""
    node = parse_node_id(node_id)
    log_path = workdir / f"{node.name}-access.log"
    relocated, where = relocate(docs, addresses, log_path, node.name)
    text = yaml.safe_dump_all(relocated, sort_keys=False)
    model = load_texts([("live.yaml", text)])
    apps: list = []
    mesh = model.meshes[node.mesh]
    for name, vn in mesh.virtual_nodes.items():
        for listener in vn.spec.listeners or ():
            pm = listener.portMapping
            if pm.protocol == "grpc":
                apps.append(AnyGrpcServer(name, where[name], pm.port))
            elif pm.protocol in ("http", "http2"):
                apps.append(AppServer(name, where[name], pm.port).start())
    placement = Placement(explicit=True, ingress_address=addresses(), app_address=addresses(), egress_address=addresses())
    resources = compile_node(model, node, placement)
    admin = ("127.0.0.1", free_port())
    config = workdir / f"{node.name}-envoy.yaml"
    config.write_text(dump_yaml(static_bootstrap(node, resources, admin="%s:%d" % admin)))
    envoy = EnvoyProcess.start(group, config, name=f"envoy-{node.name}", admin=admin, extra_args=["--file-flush-interval-msec", "100"])
    live = LiveMesh(model, node, placement, resources, envoy, log_path, apps)
    try:
        envoy.wait_ready(timeout=30)
    except Exception:
        live.stop()
        raise
    return live


def model_documents(model) -> list[dict]:
    """Native documents of a loaded model (e.g. one adapted from Kubernetes or CloudFormation)."""
    docs = []
    for mesh in model.meshes.values():
        resources = ([mesh.resource] + list(mesh.virtual_services.values()) + list(mesh.virtual_routers.values())
                     + [r for rs in mesh.routes.values() for r in rs.values()] + list(mesh.virtual_nodes.values())
                     + list(mesh.virtual_gateways.values()) + [r for rs in mesh.gateway_routes.values() for r in rs.values()])
        for r in resources:
            doc: dict[str, Any] = {"kind": r.kind, "name": r.name}
            if r.kind != "Mesh":
                doc["mesh"] = r.mesh
            if r.virtualRouter:
                doc["virtualRouter"] = r.virtualRouter
            if r.virtualGateway:
                doc["virtualGateway"] = r.virtualGateway
            doc["spec"] = r.spec.model_dump(mode="json", exclude_none=True, by_alias=True) if r.spec is not None else {}
            docs.append(doc)
    return docs
