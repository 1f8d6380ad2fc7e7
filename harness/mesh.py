"""A whole mesh on one machine: `meshplane serve`, Envoy sidecars and apps on loopback.

Uses the explicit data path (node metadata gives each Envoy its listener and app addresses):
every sidecar gets its own 127.x addresses for ingress, app and egress, so any number of
sidecars share one host without iptables. Used by
the real-Envoy end-to-end tests and by ``make demo``; every process goes through one
``ProcessGroup`` and is killed by pid when it closes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mesh_model.render import XdsTls, dynamic_bootstrap
from mesh_model.compiler import Placement
from mesh_model.node_id import parse_node_id

from harness.envoy import EnvoyProcess
from harness.processes import ProcessGroup, free_port, wait_until
from harness.traffic import http_get

XDS_TYPES = ("cds", "eds", "lds", "rds")


@dataclass
class Sidecar:
    node_id: str
    placement: Placement
    envoy: EnvoyProcess

    def egress_url(self, port: int, path: str = "/") -> str:
        return f"http://{self.placement.egress_address}:{port}{path}"

    def ingress_url(self, port: int, path: str = "/") -> str:
        return f"http://{self.placement.ingress_address}:{port}{path}"


class MeshRunner:
    """Start the control plane and sidecars; read meshplane's /status; wait for ACKs."""

    def __init__(self, group: ProcessGroup, model_path: Path, workdir: Path, *, python: str | None = None):
        self.group = group
        self.model_path = Path(model_path)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.python = python or sys.executable
        self.xds: tuple[str, int] | None = None
        self.http: tuple[str, int] | None = None
        self.serve_proc = None

    # -- control plane
    def start_control_plane(self, *extra_args: str, timeout: float = 20, xds_port: int | None = None, http_port: int | None = None):
        """Start `meshplane serve`; fixed ports let a test restart it where Envoy expects it."""
        self.xds = ("127.0.0.1", xds_port or free_port())
        self.http = ("127.0.0.1", http_port or free_port())
        argv = [
            self.python, "-m", "xds_server.cli", "serve", str(self.model_path),
            "--xds", "%s:%d" % self.xds, "--http", "%s:%d" % self.http, *extra_args,
        ]
        self.serve_proc = self.group.start("meshplane-serve", argv, log_dir=self.workdir)

        def healthy() -> bool:
            if not self.serve_proc.alive():
                raise RuntimeError(f"meshplane serve exited:\n{self.serve_proc.tail(40)}")
            try:
                return http_get(self.http_url("/healthz"), timeout=1).status == 200
            except OSError:
                return False

        wait_until(healthy, timeout, message="meshplane serve did not become healthy", fatal=(RuntimeError,))
        return self.serve_proc

    def http_url(self, path: str) -> str:
        assert self.http is not None, "control plane not started"
        return "http://%s:%d%s" % (*self.http, path)

    def status(self) -> dict:
        return json.loads(http_get(self.http_url("/status"), timeout=5).body)

    def node_types(self, node_id: str) -> dict:
        return self.status().get("nodes", {}).get(node_id, {}).get("types", {})

    def versions(self, node_id: str) -> dict[str, str | None]:
        """The acknowledged version per xDS type of a node."""
        types = self.node_types(node_id)
        return {t: (types.get(t) or {}).get("acked") for t in XDS_TYPES}

    def wait_converged(self, node_id: str, *, changed_from: dict | None = None, types: Iterable[str] = ("rds",), timeout: float = 15) -> dict:
        """Wait until every stream of the node has ACKed what it was sent for ``types``.

        With ``changed_from`` (an earlier ``versions()``), also wait until at least one of
        ``types`` has a new acknowledged version: the edit has reached Envoy and Envoy took it.
        """
        types = tuple(types)

        def converged():
            node = self.status().get("nodes", {}).get(node_id)
            if not node:
                return None
            state = node["types"]
            for t in types:
                entry = state.get(t) or {}
                if entry.get("sent") is None or entry.get("acked") != entry.get("sent") or entry.get("acked_streams") != node["streams"]:
                    return None
            if changed_from is not None and all(state[t]["acked"] == changed_from.get(t) for t in types):
                return None
            return {t: state[t]["acked"] for t in XDS_TYPES if state.get(t)}

        return wait_until(converged, timeout, interval=0.05, message=f"{node_id} did not converge ({types})")

    # -- sidecars
    def start_sidecar(
        self, node_id: str, *, ingress: str, app: str, egress: str, wait_ready: bool = True,
        delta: bool = False, xds_tls: XdsTls | None = None, xds_token: str | None = None,
        envoy_args: tuple[str, ...] = (),
    ) -> Sidecar:
        placement = Placement(explicit=True, ingress_address=ingress, app_address=app, egress_address=egress)
        node = parse_node_id(node_id)
        admin = ("127.0.0.1", free_port())
        name = f"envoy-{node.name}-{ingress}"
        config = self.workdir / f"{name}.yaml"
        config.write_text(dynamic_bootstrap(
            node, "%s:%d" % self.xds, placement=placement, admin="%s:%d" % admin,
            delta=delta, xds_tls=xds_tls, xds_token=xds_token,
        ))
        envoy = EnvoyProcess.start(self.group, config, name=name, admin=admin, extra_args=envoy_args)
        if wait_ready:
            envoy.wait_ready(timeout=30)
        return Sidecar(node_id, placement, envoy)
