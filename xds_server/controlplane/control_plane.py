"""The control plane's state: the last good model and a snapshot per connected node placement.

Compilation happens here and only here, never on an ADS stream: streams just compare what a
node acknowledged with its snapshot, so a thousand connected Envoys cost no compile time.
An invalid model never replaces the served one: the errors are logged and shown in /status,
and every node keeps its last good config. A node placement whose config cannot be compiled
from a valid model (a compiler bug, a value validation should have refused) keeps its last
good snapshot and is reported (log, ``placementFailures`` in /status, the
``meshplane_placement_compile_failures`` metrics); every other placement and mesh still gets
the new model. It is compiled again at every reload until it compiles.

With the mesh CA (``secrets``: a ``SecretManager``), every snapshot also carries the node's
``meshplane:identity`` and ``meshplane:trust`` SDS secrets. The compiled snapshot of each key
is kept (``bases``), so a renewal or a root rotation only swaps the SDS type: nothing is
recompiled, and only SDS is pushed (streams compare per-resource versions).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import grpc
from google.protobuf import any_pb2, json_format

from mesh_model import ModelError, load_paths, pacing
from mesh_model.load import ParseCache
from mesh_model.compiler import CompileCache, CompileError, Placement, compile_node_built, mesh_warnings
from mesh_model.compiler import changed_keys
from mesh_model.diff import diff_packed, summary_names
from mesh_model.node_id import NodeRef, parse_node_id
from mesh_model.spec.model import MeshModel

from xds_server import fairness
from xds_server.observability import metrics
from xds_server.server.errors import StreamError
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.ca.mesh_secrets import RefreshResult, SecretManager, ca_warnings_of, mesh_ca_findings, node_identity
from xds_server.cache.snapshot import TYPE_SECRET, Snapshot, TypeSnapshot
from xds_server.controlplane.heap import HeapPolicy

log = logging.getLogger("meshplane.control")

# a reload logs what it did to at most this many nodes (``meshplane diff --summary`` lines)
RELOAD_SUMMARY_NODES = 20


@dataclass(frozen=True)
class NodeKey:
    node: NodeRef
    placement: Placement

    @property
    def key(self) -> str:
        return f"{self.node.node_id}|{self.placement.key}"


def compile_snapshot(model: MeshModel, node: NodeRef, placement: Placement, cache: CompileCache | None = None) -> Snapshot:
    return compile_snapshot_and_dependencies(model, node, placement, cache)[0]


def compile_snapshot_and_dependencies(model: MeshModel, node: NodeRef, placement: Placement,
                                      cache: CompileCache | None = None, previous: Snapshot | None = None) -> tuple[Snapshot, frozenset]:
    """A node placement's snapshot, assembled from the cache's shared serialized pieces, and
    the dependency keys its compilation read (what decides whether a change rebuilds it).
    Types whose resources are those of ``previous`` (the node's last snapshot) are kept."""
    compiled = compile_node_built(model, node, placement, cache)
    return Snapshot.from_built(compiled.resources, previous), compiled.dependencies


def with_secrets(base: Snapshot, secrets: Mapping[str, any_pb2.Any]) -> Snapshot:
    """``base`` with ``secrets`` (name -> packed Secret) added to its SDS type; only SDS changes."""
    if not secrets:
        return base
    merged = dict(base.get(TYPE_SECRET).resources)
    merged.update(secrets)  # the mesh CA's reserved names win over anything compiled
    types = dict(base.types)
    types[TYPE_SECRET] = TypeSnapshot.from_packed(merged)
    return Snapshot(types=MappingProxyType(types))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class ControlPlane:
    """Owns the model; answers "which snapshot does this Envoy get" for the ADS servicer."""

    def __init__(
        self,
        paths: Sequence[str],
        cache: SnapshotCache,
        *,
        secrets: SecretManager | None = None,
        keys_in_use: Callable[[], set[str]] | None = None,
        source=None,
        overlay: Callable[[MeshModel], MeshModel] | None = None,
        load_options: Mapping[str, Any] | None = None,
        freeze_heap: bool = False,
    ):
        self.paths = list(paths)
        self.load_options = dict(load_options or {})  # load_paths' parameters/variables (CloudFormation, Terraform)
        # what every loaded model passes through before it is compiled (``cloudmap.CloudMapPoller.overlay``:
        # live Cloud Map instances as CloudMapService resources)
        self.overlay = overlay
        self._reload_lock = asyncio.Lock()  # reloads (file watcher, store, Cloud Map) run one at a time
        # where the model comes from instead of files (``store_source.StoreSource``: ``load()``, ``status()``)
        self.source = source
        self.cache = cache
        self.secrets = secrets
        # which snapshot keys still have a stream (StatusRegistry.keys_in_use): the others are
        # forgotten at the next reload, so placements that come and go (tasks with new
        # addresses) neither grow memory nor get recompiled forever
        self.keys_in_use = keys_in_use
        self.bases: dict[str, Snapshot] = {}  # snapshot key -> compiled snapshot, without mesh-CA secrets
        self.parse_cache = ParseCache()  # a reload re-parses only the files that changed
        # ``serve`` sets freeze_heap: the cycle collector stays off the model (``heap.HeapPolicy``)
        self.heap = HeapPolicy(freeze_heap)
        # mesh name -> (the Mesh object, its mesh-CA findings, its model warnings): see ``_warnings``
        self._mesh_warnings: dict[str, tuple] = {}
        with self.heap.building():
            self.model = self._load()  # an invalid model at start-up is fatal (ModelError)
            self.compile_cache = CompileCache(self.model)
            self.warnings = self._warnings(self.model, self.compile_cache)  # of the served model: /status shows them
            self._log_warnings(self.warnings)
        self.keys: dict[str, NodeKey] = {}
        self.dependencies: dict[str, frozenset] = {}  # snapshot key -> model resources it was built from
        self.reloads = 0
        self.last_reload_at = time.time()
        self.last_error: list[str] = []
        # snapshot key -> {"node", "placement", "error", "since"}: placements that do not compile
        self.failures: dict[str, dict] = {}

    # -- node -> snapshot key (called by the ADS servicer on a stream's first request)
    def resolve(self, node) -> str:
        try:
            ref = parse_node_id(node.id)
        except ValueError as exc:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        try:
            metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
            placement = Placement.from_metadata(metadata)
        except (ValueError, TypeError) as exc:
            raise StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"node {node.id}: {exc}") from None
        node_key = NodeKey(ref, placement)
        if node_key.key not in self.keys or self.cache.get(node_key.key) is None:
            started = time.perf_counter()
            try:
                snapshot, dependencies = compile_snapshot_and_dependencies(self.model, ref, placement, self.compile_cache)
                metrics.observe_compile(time.perf_counter() - started, 1)
            except CompileError as exc:
                raise StreamError(grpc.StatusCode.NOT_FOUND, str(exc)) from None
            except Exception as exc:  # this node cannot be served; nothing else is affected
                self._record_failures({node_key.key: (node_key, _describe(exc))})
                raise StreamError(grpc.StatusCode.UNAVAILABLE,
                                  f"node {ref.node_id}: its config cannot be compiled: {_describe(exc)}") from None
            self._clear_failures([node_key.key])
            self.keys[node_key.key] = node_key
            self.dependencies[node_key.key] = dependencies
            self._publish(node_key.key, snapshot)
            self.heap.compiled()
        return node_key.key

    # -- snapshots with secrets
    def _publish(self, key: str, base: Snapshot) -> None:
        """Store a key's compiled snapshot; serve it with its mesh-CA secrets (if the CA is on)."""
        self.bases[key] = base
        if self.secrets is None:
            self.cache.set(key, base)
            return
        node = self.keys[key].node
        identity = node_identity(self.model, node, self.secrets.trust_domain)
        self.cache.set(key, with_secrets(base, self.secrets.resources(key, identity)))

    def _warnings(self, model: MeshModel, cache: CompileCache) -> list[str]:
        """What is valid but will not work as written (mesh-CA secrets without a CA, left-out
        TCP backends); ``cache`` (the model's) makes a reload look again only at what changed,
        and a mesh that is the very same object as at the last reload is not looked at at all."""
        cache.check(model)
        known = self._mesh_warnings
        found = {}
        for name, mesh in model.meshes.items():
            last = known.get(name)
            found[name] = last if last is not None and last[0] is mesh else (
                mesh, mesh_ca_findings(mesh, cache), mesh_warnings(mesh, cache))
        self._mesh_warnings = found  # one assignment: a function of each Mesh object, whichever reload wins
        return (ca_warnings_of([ca for _, ca, _ in found.values()], self.secrets is not None)
                + [warning for _, _, warnings in found.values() for warning in warnings])

    @staticmethod
    def _log_warnings(warnings: list[str]) -> None:
        for warning in warnings:
            log.warning("%s", warning)

    def refresh_secrets(self, acked: Callable[[], bool] = lambda: True, *, now: float | None = None) -> RefreshResult:
        """Renew due leaves, follow root rotations; republish (SDS only) the keys that changed."""
        if self.secrets is None:
            return RefreshResult()
        result = self.secrets.refresh(acked, now=now)
        keys = self.bases.keys() if result.bundle_changed else result.renewed & self.bases.keys()
        for key in sorted(keys):
            self._publish(key, self.bases[key])
        if result.renewed:
            log.info("mesh CA: renewed %d certificate(s)%s", len(result.renewed), "" if not result.bundle_changed else ", new trust bundle")
        elif result.bundle_changed:
            log.info("mesh CA: trust bundle is now %s; pushed to %d node placement(s)", ", ".join(self.secrets.bundle_ids), len(keys))
        return result

    async def run_secrets(self, acked: Callable[[], bool] = lambda: True, *, interval: float = 1.0) -> None:
        """Forever: ``refresh_secrets`` at every renewal due time, and every ``interval`` (rotations)."""
        if self.secrets is None:
            return
        while True:
            try:
                self.refresh_secrets(acked)
            except Exception:  # a broken CA directory must not kill the server: keep serving, retry
                log.exception("mesh CA refresh failed; retrying in %.0fs", interval)
            due = self.secrets.next_due()
            delay = interval if due is None else min(interval, max(0.05, due - self.secrets.clock()))
            await asyncio.sleep(delay)

    def preview(self, node_id: str) -> Snapshot | None:
        """What a node of the model would be sent with the default placement (None if unknown).
        Secrets are not issued for a preview."""
        try:
            return compile_snapshot(self.model, parse_node_id(node_id), Placement(), self.compile_cache)
        except (ValueError, CompileError):
            return None

    # -- reloads
    def rebuild(
        self, model: MeshModel, keys: dict[str, NodeKey] | None = None, failed: dict[str, str] | None = None
    ) -> tuple[dict[str, Snapshot], dict[str, frozenset], list[str], CompileCache]:
        """Snapshots of the nodes a new model affects (pure: no state is changed here).

        Only nodes whose dependency set meets a changed resource are reassembled; the others
        keep their snapshot object as it is. Every piece the change did not touch carries over
        from the last model (``CompileCache.successor``), and a changed piece shared by many
        nodes is built and serialized once, so reassembling a node is mostly cache look-ups.
        Returns new snapshots, their new dependency sets, warnings and the new model's cache.
        A placement whose compilation raises anything else is left out (it keeps its
        snapshot) and, when ``failed`` is given, put there (key -> error); a placement that
        failed before is compiled again whatever changed.
        """
        changed = changed_keys(self.model, model)
        cache = self.compile_cache.successor(model, changed)  # untouched shared pieces carry over
        snapshots, dependencies, warnings = {}, {}, []
        for key, node_key in pacing.paced((self.keys if keys is None else keys).items()):
            if key not in self.failures and self.dependencies.get(key, frozenset()).isdisjoint(changed):
                continue
            node = node_key.node
            try:
                snapshots[key], dependencies[key] = compile_snapshot_and_dependencies(
                    model, node, node_key.placement, cache, self.bases.get(key))
            except CompileError as exc:
                warnings.append(f"{node.node_id}: {exc}; keeping its last config")
            except Exception as exc:  # one placement's failure must not stop the others' updates
                if failed is not None:
                    failed[key] = _describe(exc)
        return snapshots, dependencies, warnings, cache

    def _build(self, keys: dict[str, NodeKey]):
        """Load and compile off the event loop (``keys``: the node placements known when it started)."""
        with self.heap.building(), fairness.long_work():
            model = self._load()
            started = time.perf_counter()
            failed: dict[str, str] = {}
            snapshots, dependencies, warnings, cache = self.rebuild(model, keys, failed)
            metrics.observe_compile(time.perf_counter() - started, len(snapshots))
            return model, snapshots, dependencies, warnings + self._warnings(model, cache), cache, failed

    def reload_summary(self, old_model: MeshModel, model: MeshModel, old_bases: Mapping[str, Snapshot],
                       snapshots: Mapping[str, Snapshot], keys: Mapping[str, NodeKey], limit: int | None = None) -> list[str]:
        """What replacing ``old_model`` (whose snapshots were ``old_bases``) with ``model`` did to
        each node, one log line per node (``changed <node>: <meshplane diff --summary line>``):
        only the recompiled snapshots are looked at, only their changed resources are unpacked,
        and at most ``limit`` nodes (``RELOAD_SUMMARY_NODES``) are described, then
        ``... and N more node(s) changed``. Pure: it runs after the new snapshots are served."""
        limit = RELOAD_SUMMARY_NODES if limit is None else limit
        try:
            changed: dict[str, list[str]] = {}  # node id -> keys (placements) whose snapshot changed
            for key in sorted(snapshots):
                old = old_bases.get(key)
                if key in keys and old is not None and old.versions() != snapshots[key].versions():
                    changed.setdefault(keys[key].node.node_id, []).append(key)
            lines = []
            names = summary_names(old_model, model) if changed else None  # once per reload, not per node
            for node_id in sorted(changed)[:limit]:
                key = changed[node_id][0]  # placements of one node differ in endpoints at most
                old, new = old_bases[key], snapshots[key]
                diff = diff_packed(
                    node_id, {t: ts.resources for t, ts in old.types.items()}, {t: ts.resources for t, ts in new.types.items()},
                    old_model=old_model, new_model=model, mesh=keys[key].node.mesh, names=names,
                )
                lines.append(f"changed {diff.summary_line()}")
            if len(changed) > limit:
                lines.append(f"... and {len(changed) - limit} more node(s) changed")
            return lines
        except Exception as exc:  # a summary is for people: it never fails a reload
            return [f"(no change summary: {type(exc).__name__}: {exc})"]

    def _load(self) -> MeshModel:
        if self.source is not None:
            model = self.source.load()
        else:
            model = load_paths(self.paths, parse_cache=self.parse_cache, **self.load_options)
        return model if self.overlay is None else self.overlay(model)

    def forget_unused(self) -> int:
        """Drop the snapshots no stream uses any more (a node that comes back is compiled again)."""
        if self.keys_in_use is None:
            return 0
        in_use = self.keys_in_use()
        unused = [key for key in self.keys if key not in in_use]
        failing = len(self.failures)
        for key in unused:
            del self.keys[key]
            self.dependencies.pop(key, None)
            self.bases.pop(key, None)
            self.failures.pop(key, None)
            if self.secrets is not None:
                self.secrets.forget(key)
            self.cache.delete(key)
        if len(self.failures) != failing:
            metrics.observe_placement_failures(len(self.failures), 0)
        if unused:  # and the compiled pieces only those placements used
            self.compile_cache.retain_placements({node_key.placement for node_key in self.keys.values()})
            log.info("forgot %d node placement(s) without a connected Envoy", len(unused))
        return len(unused)

    async def reload(self) -> bool:
        """Re-read the model files; push changed snapshots. Returns False (and serves the old model) on errors."""
        async with self._reload_lock:  # two at once could publish an older model last
            return await self._reload()

    async def _reload(self) -> bool:
        started = time.perf_counter()
        self.forget_unused()
        keys = dict(self.keys)
        try:
            model, snapshots, dependencies, warnings, cache, failed = await asyncio.to_thread(self._build, keys)
        except ModelError as exc:
            metrics.observe_reload(False)
            self.last_error = [str(issue) for issue in exc.issues]
            log.error("model change rejected, still serving the last good model (%d errors):\n%s", len(exc.issues), exc)
            return False
        except Exception as exc:  # a bug must not take the served config down with it
            metrics.observe_reload(False)
            self.last_error = [f"internal error while reloading: {type(exc).__name__}: {exc}"]
            log.exception("model reload failed; still serving the last good model")
            return False
        old_model, old_bases = self.model, {key: self.bases[key] for key in snapshots if key in self.bases}
        self.model = model
        self.compile_cache = cache
        self.dependencies.update(dependencies)
        for key in self.keys.keys() - keys.keys():  # connected while we compiled, from the old model
            node_key = self.keys[key]
            try:
                snapshots[key], self.dependencies[key] = compile_snapshot_and_dependencies(
                    model, node_key.node, node_key.placement, self.compile_cache)
            except CompileError as exc:
                warnings.append(f"{node_key.node.node_id}: {exc}; keeping its last config")
            except Exception as exc:
                failed[key] = _describe(exc)
        for key, snapshot in snapshots.items():
            self._publish(key, snapshot)
        # placements refused at resolve are tried again when their Envoy reconnects (if it does)
        self._clear_failures([key for key in snapshots] + [key for key in self.failures if key not in self.keys], quiet=True)
        self._record_failures({key: (self.keys[key], error) for key, error in failed.items() if key in self.keys})
        self._log_warnings(warnings)
        self.warnings = warnings
        self.heap.settle()
        metrics.observe_reload(True)
        self.last_error = []
        self.reloads += 1
        self.last_reload_at = time.time()
        log.info(
            "model reloaded: %d of %d node placements recompiled in %.0f ms",
            len(snapshots), len(self.keys), (time.perf_counter() - started) * 1000,
        )
        # what changed, for people: worked out once the new config is already on its way
        summary = await asyncio.to_thread(self.reload_summary, old_model, model, old_bases, snapshots, keys)
        for line in summary:
            log.info("%s", line)
        return True

    # -- placements that do not compile
    def _record_failures(self, failed: Mapping[str, tuple[NodeKey, str]]) -> None:
        """Log and keep each failing placement (``key -> (node key, error)``) for /status and metrics."""
        for key, (node_key, error) in sorted(failed.items()):
            previous = self.failures.get(key)
            self.failures[key] = {
                "node": node_key.node.node_id,
                "placement": node_key.placement.key,
                "error": error,
                "since": previous["since"] if previous is not None else _iso(time.time()),
            }
            log.error("node %s (placement %s): config cannot be compiled, it keeps its last good config: %s",
                      node_key.node.node_id, node_key.placement.key, error)
        metrics.observe_placement_failures(len(self.failures), len(failed))

    def _clear_failures(self, keys, quiet: bool = False) -> None:
        cleared = [key for key in keys if key in self.failures]
        for key in cleared:
            if key in self.keys or not quiet:
                log.info("node %s (placement %s): config compiles again", self.failures[key]["node"], self.failures[key]["placement"])
            del self.failures[key]
        if cleared:
            metrics.observe_placement_failures(len(self.failures), 0)

    def status(self) -> dict:
        status = {
            "paths": self.paths,
            "meshes": sorted(self.model.meshes),
            "reloads": self.reloads,
            "lastReload": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_reload_at)),
            "lastError": self.last_error,
            "warnings": self.warnings,
            # node placements whose config does not compile from this model (they keep their last good one)
            "placementFailures": [self.failures[key] for key in sorted(self.failures)],
        }
        if self.secrets is not None:
            status["meshCA"] = self.secrets.status()
        if self.source is not None:
            status.update(self.source.status())
        return status
