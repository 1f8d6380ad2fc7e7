"""The control plane's state: the last good model and a snapshot per connected node placement.

Compilation happens here and only here; ADS streams just compare what a node acknowledged
with its snapshot (DESIGN.md). An invalid model never replaces the served one: the errors
are logged and shown in /status, and every node keeps its last good config.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Sequence

import grpc
from google.protobuf import json_format

from mesh_model import ModelError, load_paths
from mesh_model.compiler import CompileCache, CompileError, Placement, compile_node
from mesh_model.compiler.dependencies import changed_keys, node_dependencies
from mesh_model.node_id import NodeRef, parse_node_id
from mesh_model.resources import MeshModel

from . import metrics
from .ads import NodeRejected
from .cache import SnapshotCache
from .snapshot import Snapshot

log = logging.getLogger("meshplane.control")


@dataclass(frozen=True)
class NodeKey:
    node: NodeRef
    placement: Placement

    @property
    def key(self) -> str:
        return f"{self.node.node_id}|{self.placement.key}"


def compile_snapshot(model: MeshModel, node: NodeRef, placement: Placement, cache: CompileCache | None = None) -> Snapshot:
    return Snapshot.from_resources(compile_node(model, node, placement, cache))


class ControlPlane:
    """Owns the model; answers "which snapshot does this Envoy get" for the ADS servicer."""

    def __init__(self, paths: Sequence[str], cache: SnapshotCache):
        self.paths = list(paths)
        self.cache = cache
        self.model = load_paths(self.paths)  # an invalid model at start-up is fatal (ModelError)
        self.compile_cache = CompileCache(self.model)
        self.keys: dict[str, NodeKey] = {}
        self.dependencies: dict[str, frozenset] = {}  # snapshot key -> model resources it was built from
        self.reloads = 0
        self.last_reload_at = time.time()
        self.last_error: list[str] = []

    # -- node -> snapshot key (called by the ADS servicer on a stream's first request)
    def resolve(self, node) -> str:
        try:
            ref = parse_node_id(node.id)
        except ValueError as exc:
            raise NodeRejected(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        try:
            metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
            placement = Placement.from_metadata(metadata)
        except (ValueError, TypeError) as exc:
            raise NodeRejected(grpc.StatusCode.INVALID_ARGUMENT, f"node {node.id}: {exc}") from None
        node_key = NodeKey(ref, placement)
        if node_key.key not in self.keys or self.cache.get(node_key.key) is None:
            started = time.perf_counter()
            try:
                snapshot = compile_snapshot(self.model, ref, placement, self.compile_cache)
                metrics.observe_compile(time.perf_counter() - started, 1)
            except CompileError as exc:
                raise NodeRejected(grpc.StatusCode.NOT_FOUND, str(exc)) from None
            self.keys[node_key.key] = node_key
            self.dependencies[node_key.key] = node_dependencies(self.model, ref.mesh, ref.name)
            self.cache.set(node_key.key, snapshot)
        return node_key.key

    # -- reloads
    def rebuild(self, model: MeshModel, keys: dict[str, NodeKey] | None = None) -> tuple[dict[str, Snapshot], dict[str, frozenset], list[str]]:
        """Snapshots of the nodes a new model affects (pure: no state is changed here).

        Only nodes whose dependency set meets a changed resource are recompiled; the others
        keep their snapshot object as it is. Pieces shared between nodes are built once
        (``CompileCache``). Returns new snapshots, their new dependency sets and warnings.
        """
        changed = changed_keys(self.model, model)
        cache = CompileCache(model)
        snapshots, dependencies, warnings = {}, {}, []
        for key, node_key in (self.keys if keys is None else keys).items():
            if not (self.dependencies.get(key, frozenset()) & changed):
                continue
            node = node_key.node
            try:
                snapshots[key] = compile_snapshot(model, node, node_key.placement, cache)
                dependencies[key] = node_dependencies(model, node.mesh, node.name)
            except CompileError as exc:
                warnings.append(f"{node.node_id}: {exc}; keeping its last config")
        return snapshots, dependencies, warnings

    def _build(self, keys: dict[str, NodeKey]) -> tuple[MeshModel, dict[str, Snapshot], dict[str, frozenset], list[str]]:
        """Load and compile off the event loop (``keys``: the node placements known when it started)."""
        model = load_paths(self.paths)
        started = time.perf_counter()
        snapshots, dependencies, warnings = self.rebuild(model, keys)
        metrics.observe_compile(time.perf_counter() - started, len(snapshots))
        return model, snapshots, dependencies, warnings

    async def reload(self) -> bool:
        """Re-read the model files; push changed snapshots. Returns False (and serves the old model) on errors."""
        started = time.perf_counter()
        keys = dict(self.keys)
        try:
            model, snapshots, dependencies, warnings = await asyncio.to_thread(self._build, keys)
        except ModelError as exc:
            metrics.observe_reload(False)
            self.last_error = [str(issue) for issue in exc.issues]
            log.error("model change rejected, still serving the last good model (%d errors):\n%s", len(exc.issues), exc)
            return False
        self.model = model
        self.compile_cache = CompileCache(model)
        self.dependencies.update(dependencies)
        for key in self.keys.keys() - keys.keys():  # connected while we compiled, from the old model
            node_key = self.keys[key]
            try:
                snapshots[key] = compile_snapshot(model, node_key.node, node_key.placement, self.compile_cache)
                self.dependencies[key] = node_dependencies(model, node_key.node.mesh, node_key.node.name)
            except CompileError as exc:
                warnings.append(f"{node_key.node.node_id}: {exc}; keeping its last config")
        for key, snapshot in snapshots.items():
            self.cache.set(key, snapshot)
        for warning in warnings:
            log.warning("%s", warning)
        metrics.observe_reload(True)
        self.last_error = []
        self.reloads += 1
        self.last_reload_at = time.time()
        log.info(
            "model reloaded: %d of %d node placements recompiled in %.0f ms",
            len(snapshots), len(self.keys), (time.perf_counter() - started) * 1000,
        )
        return True

    def status(self) -> dict:
        return {
            "paths": self.paths,
            "meshes": sorted(self.model.meshes),
            "reloads": self.reloads,
            "lastReload": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_reload_at)),
            "lastError": self.last_error,
        }
