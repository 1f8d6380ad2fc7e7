"""Compile benchmark: cold compile of a generated mesh, then one route's weight change.

What is timed (model already loaded and validated, as the server holds it; Python's cycle
collector as ``meshplane serve`` runs it, ``serve_heap``):

* **cold**: for every virtual node, ``compile_node_built`` + ``Snapshot.from_built`` (the
  issue's "snapshots ready": packed, serialized, content-hashed).
* **one route change**, through the public ``ControlPlane`` behaviour: every node is
  registered with ``ControlPlane.resolve`` (what a connecting Envoy triggers), then one
  route's weights are edited in its file and the control plane rebuilds. If the
  ControlPlane has ``rebuild(model)`` it is given the new (already loaded) model and the
  load is reported on its own; otherwise ``reload()`` re-reads the files, so its time
  includes parsing and validating the whole model. The clock stops when every affected
  node's snapshot generation has moved in the cache. The number of snapshots that changed
  is checked against the nodes that really call the edited route's service.
* **one route change, affected nodes only**: recompiling just those nodes with the current
  compiler - what an incremental rebuild costs at best with today's compiler.

Floor: the same output produced without any compile logic: for every resource of every
snapshot, re-create the proto from its bytes (C, upb), serialize it deterministically and
hash it. That is the part of "snapshot ready" that no compiler can avoid (the bytes must be
made and hashed); ratio = how much the compiler's Python logic adds on top.
"""
from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import hashlib
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

from google.protobuf import symbol_database

from mesh_model.compiler import Placement
from mesh_model.load import load_texts
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.cache.snapshot import Snapshot
from xds_server.controlplane.heap import HeapPolicy

from bench.common import Result, Stopwatch, verdict
from bench.meshgen import MeshSpec, generate_texts

COLD_TARGET_S = 1.0  # issue 9: on the machine where the code before it took 2.3 s
CHANGE_TARGET_MS = 50.0


def _message_class(type_url: str):
    return symbol_database.Default().GetSymbol(type_url.split("/", 1)[1])


def compiler_for(model):
    """``node_ref -> Snapshot`` the way the server compiles: resources built once per model and
    serialized once (``compile_node_built`` + ``Snapshot.from_built`` with one ``CompileCache``)."""
    from mesh_model.compiler import CompileCache, compile_node_built

    cache = CompileCache(model)
    return lambda ref, placement=Placement(): Snapshot.from_built(compile_node_built(model, ref, placement, cache).resources), True


def compile_all(model, spec: MeshSpec, placement: Placement = Placement(), heap: HeapPolicy | None = None) -> dict[str, Snapshot]:
    """Every node's snapshot; ``heap``: told of each compile, as ``ControlPlane.resolve`` does."""
    build, _ = compiler_for(model)
    snapshots = {}
    for i in range(spec.nodes):
        snapshots[spec.node_id(i)] = build(spec.node_ref(i), placement)
        if heap is not None:
            heap.compiled()
    return snapshots


@contextlib.contextmanager
def serve_heap():
    """Python's cycle collector as ``meshplane serve`` runs it (``controlplane.heap``: a model
    is loaded with the collector paused and then frozen; every 1,000 compiles what is new is
    collected and frozen), put back afterwards (nothing frozen, the collector on), so the
    benchmarks after this one in the same process run with Python's defaults."""
    try:
        yield HeapPolicy(True)
    finally:
        gc.unfreeze()
        gc.enable()


def output_floor(snapshots) -> float:
    """Seconds to materialize, serialize and hash every resource of ``snapshots`` (no logic)."""
    classes: dict[str, type] = {}
    work = []
    for snap in snapshots:
        for type_url, ts in snap.types.items():
            for any_msg in ts.resources.values():
                cls = classes.get(type_url) or classes.setdefault(type_url, _message_class(type_url))
                work.append((cls, any_msg.value))
    sha = hashlib.sha256
    started = time.perf_counter()
    for cls, data in work:
        msg = cls.FromString(data)
        sha(msg.SerializeToString(deterministic=True)).digest()
    return time.perf_counter() - started


def _node_proto(node_id: str):
    from envoy.config.core.v3 import base_pb2

    return base_pb2.Node(id=node_id, cluster="bench")


def _snapshots_of(result) -> dict:
    """``rebuild``'s answer: a ``{key: Snapshot}`` dict, alone or first in a tuple."""
    if isinstance(result, dict):
        return result
    if isinstance(result, tuple) and result and isinstance(result[0], dict):
        return result[0]
    raise TypeError(f"unexpected rebuild() result {type(result).__name__}")


async def _control_plane_change(spec: MeshSpec, new_spec: MeshSpec, route: int, files: int, workdir: Path) -> dict:
    """Register every node with a real ControlPlane, then apply one route edit.

    Two readings of the same edit: ``rebuild(model)`` (pure, given the already loaded new
    model; the clock stops when it returns the affected snapshots), when the ControlPlane
    has it; and ``reload()`` (re-reads the files, then sets the cache; the clock stops when
    every affected key's generation has moved).
    """
    from xds_server.controlplane.control_plane import ControlPlane

    texts = generate_texts(spec, files=files)
    for label, text in texts:
        (workdir / label).write_text(text)
    cache = SnapshotCache()
    with Stopwatch() as load_sw:
        control = ControlPlane([str(workdir)], cache, freeze_heap=True)  # as serve runs it
    keys = {}
    with Stopwatch() as resolve_sw:
        for i in range(spec.nodes):
            key = control.resolve(_node_proto(spec.node_id(i)))
            if asyncio.iscoroutine(key):
                key = await key
            keys[i] = key
    out = {"initial_load_s": load_sw.elapsed, "resolve_all_s": resolve_sw.elapsed,
           "affected": sorted(spec.nodes_calling(route))}
    affected = set(out["affected"])
    new_texts = dict(generate_texts(new_spec, files=files))

    rebuild = getattr(control, "rebuild", None)
    if rebuild is not None:
        try:
            with Stopwatch() as sw:
                new_model = load_texts(list(new_texts.items()))
            out["rebuild_load_s"] = sw.elapsed
            started = time.perf_counter()
            result = rebuild(new_model)
            if asyncio.iscoroutine(result):
                result = await result
            out["rebuild_s"] = time.perf_counter() - started
            rebuilt = _snapshots_of(result)
            by_key = {k: i for i, k in keys.items()}
            out["rebuilt"] = sorted(by_key[k] for k in rebuilt if k in by_key)
            out["rebuilt_changed"] = sorted(by_key[k] for k, snap in rebuilt.items()
                                            if k in by_key and snap.versions() != cache.get(k).versions())
        except Exception as exc:  # an API in flux must not hide the reload() reading
            out["rebuild_error"] = f"{type(exc).__name__}: {exc}"

    before = {i: cache.generation(k) for i, k in keys.items()}
    out["changed_files"] = changed_files = [label for label, text in texts if new_texts[label] != text]
    for label in changed_files:
        tmp = workdir / (label + ".tmp")
        tmp.write_text(new_texts[label])
        os.replace(tmp, workdir / label)
    started = time.perf_counter()
    reload = asyncio.ensure_future(control.reload())
    deadline = time.monotonic() + 30
    while any(cache.generation(keys[i]) == before[i] for i in affected):
        if reload.done() and reload.result() is False:
            raise RuntimeError(f"the control plane rejected the edited model: {getattr(control, 'last_error', '?')}")
        if time.monotonic() > deadline:
            raise TimeoutError("affected snapshots never changed in the cache after ControlPlane.reload()")
        await asyncio.sleep(0.001)
    out["reload_s"] = time.perf_counter() - started  # the new snapshots are served from here on
    await reload  # then reload() logs what changed (the diff summary), off the critical path
    out["reload_call_s"] = time.perf_counter() - started
    out["reload_changed"] = sorted(i for i in keys if cache.generation(keys[i]) != before[i])
    return out


def run(nodes: int = 2000, backends: int = 10, route: int = 7, files: int = 50, profile: bool = False,
        log=print) -> list[Result]:
    with serve_heap() as heap:  # what is timed runs as in `meshplane serve`
        return _run(nodes, backends, route, files, profile, heap, log)


def _run(nodes: int, backends: int, route: int, files: int, profile: bool, heap: HeapPolicy, log) -> list[Result]:
    spec = MeshSpec(nodes=nodes, backends=backends)
    route = route % nodes
    new_weights = (50, 50)
    new_spec = spec.with_weights(route, new_weights)
    label = f"{nodes} nodes x {backends} backends"

    with Stopwatch() as load_sw, heap.building():
        model = load_texts(generate_texts(spec))
    log(f"compile: model of {label} generated + loaded in {load_sw.elapsed:.2f} s")

    # -- cold: every node compiled as it connects (ControlPlane.resolve), the model frozen
    with Stopwatch() as cold_sw:
        snapshots = compile_all(model, spec, heap=heap)
    floor_cold = output_floor(snapshots.values())
    n_resources = sum(len(ts.resources) for s in snapshots.values() for ts in s.types.values())
    n_bytes = sum(len(a.value) for s in snapshots.values() for ts in s.types.values() for a in ts.resources.values())
    log(f"compile: cold {cold_sw.elapsed:.2f} s ({n_resources} resources, {n_bytes / 1e6:.1f} MB), floor {floor_cold:.3f} s")
    results = [Result(
        benchmark=f"compile: cold, {label}",
        measured=cold_sw.elapsed, unit="s", floor=floor_cold,
        floor_desc="re-create every output proto from its bytes, serialize deterministically, sha256 (no compile logic).",
        target=f"<= {COLD_TARGET_S:g} s", verdict=verdict(cold_sw.elapsed <= COLD_TARGET_S),
        notes=(f"compile_node_built + Snapshot.from_built for every node, one CompileCache for the model and serve's heap policy "
               f"(the loaded model frozen, a collection of what is new every 1,000 compiles: controlplane/heap.py), as the server does: {cold_sw.elapsed / nodes * 1000:.2f} ms per node, "
               f"{n_resources} resources, {n_bytes / 1e6:.1f} MB serialized; loading+validating the model took "
               f"{load_sw.elapsed:.2f} s (not included)."),
        details={"per_node_ms": cold_sw.elapsed / nodes * 1000, "resources": n_resources, "bytes": n_bytes,
                 "model_load_s": load_sw.elapsed},
    )]

    # -- one route change, affected nodes only (direct, today's compiler)
    affected = spec.nodes_calling(route)
    with Stopwatch() as sw, heap.building():
        new_model = load_texts(generate_texts(new_spec))
    new_load_s = sw.elapsed
    with Stopwatch() as aff_sw, heap.building():  # a reload compiles with the collector paused
        build, _ = compiler_for(new_model)
        new_snaps = {i: build(spec.node_ref(i)) for i in affected}
    really_changed = [i for i in affected if new_snaps[i].versions() != snapshots[spec.node_id(i)].versions()]
    floor_aff = output_floor(new_snaps.values())
    results.append(Result(
        benchmark=f"compile: one route change, {len(affected)} affected nodes recompiled",
        measured=aff_sw.elapsed * 1000, unit="ms", floor=floor_aff * 1000,
        floor_desc="materialize+serialize+hash the affected nodes' output.",
        target=f"<= {CHANGE_TARGET_MS:g} ms", verdict=verdict(aff_sw.elapsed * 1000 <= CHANGE_TARGET_MS),
        notes=(f"route-{route} weights 90/10 -> {new_weights[0]}/{new_weights[1]}; only the nodes calling its service "
               f"({len(affected)}; {len(really_changed)} got a new snapshot version), with the model already loaded: the best "
               f"case for an incremental rebuild with today's compiler. Loading the edited model took {new_load_s:.2f} s (not included)."),
        details={"affected": len(affected), "changed": len(really_changed), "model_load_s": new_load_s},
    ))
    del new_snaps

    # -- one route change through ControlPlane (public behaviour)
    with tempfile.TemporaryDirectory(prefix="meshplane-bench-compile-") as tmp:
        out = asyncio.run(_control_plane_change(spec, new_spec, route, files, Path(tmp)))
    expected = out["affected"]
    common = (f"route-{route} weights 90/10 -> {new_weights[0]}/{new_weights[1]}, {len(expected)} nodes call its service. "
              f"Registering all {nodes} nodes through ControlPlane.resolve took {out['resolve_all_s']:.2f} s "
              f"(the initial model load {out['initial_load_s']:.2f} s).")

    def check(changed: list[int], what: str) -> str:
        if set(changed) == set(expected):
            return f" {len(changed)} of {nodes} snapshots {what} (as expected)."
        return (f" WARNING: {len(changed)} snapshots {what}, {len(expected)} expected "
                f"(unexpected: {sorted(set(changed) - set(expected))[:5]}, missing: {sorted(set(expected) - set(changed))[:5]}).")

    if "rebuild_error" in out:
        results.append(Result(benchmark=f"compile: one route change, ControlPlane.rebuild(model), {nodes} nodes",
                              measured=None, unit="ms", verdict="ERROR", notes=out["rebuild_error"]))
    if "rebuild_s" in out:
        ms = out["rebuild_s"] * 1000
        log(f"compile: ControlPlane.rebuild {ms:.1f} ms, {len(out['rebuilt'])} snapshots rebuilt")
        results.append(Result(
            benchmark=f"compile: one route change, ControlPlane.rebuild(model), {nodes} nodes",
            measured=ms, unit="ms", floor=floor_aff * 1000,
            floor_desc="materialize+serialize+hash the affected nodes' output (what must change).",
            target=f"<= {CHANGE_TARGET_MS:g} ms", verdict=verdict(ms <= CHANGE_TARGET_MS),
            notes=(f"rebuild(new model) until it returns the affected snapshots; loading the edited model beforehand took "
                   f"{out['rebuild_load_s']:.2f} s (not included)." + check(out["rebuilt"], "rebuilt")
                   + (f" {len(out['rebuilt_changed'])} of them have new versions." if out["rebuilt_changed"] != out["rebuilt"] else "")
                   + " " + common),
            details={k: v for k, v in out.items() if k not in ("reload_changed", "rebuilt_changed")},
        ))
    ms = out["reload_s"] * 1000
    log(f"compile: ControlPlane.reload {ms:.0f} ms; {len(out['reload_changed'])} snapshots changed")
    results.append(Result(
        benchmark=f"compile: one route change, ControlPlane.reload() incl. model load, {nodes} nodes",
        measured=ms, unit="ms", floor=floor_aff * 1000,
        floor_desc="materialize+serialize+hash the affected nodes' output (what must change).",
        target=f"<= {CHANGE_TARGET_MS:g} ms", verdict=verdict(ms <= CHANGE_TARGET_MS),
        notes=(f"reload() after rewriting the one model file (of {files}) that holds the route, until every affected snapshot "
               f"is in the cache: includes re-reading and validating the model (incrementally: the changed file, and "
               f"the references into and out of what changed), which is what a file edit costs after the watcher sees it. "
               f"The whole reload() call, including the change summary it logs after publishing, took "
               f"{out['reload_call_s'] * 1000:.0f} ms." + check(out["reload_changed"], "changed in the cache") + " " + common),
        details={"reload_s": out["reload_s"], "changed": len(out["reload_changed"]), "files": files,
                 "changed_files": out["changed_files"]},
    ))

    if profile:
        log(profile_compile(model, spec, nodes))  # all nodes: shared-piece caching only shows at full size
    return results


def profile_compile(model, spec: MeshSpec, count: int, top: int = 30) -> str:
    """cProfile of compile_node_built + Snapshot.from_built for ``count`` nodes: top costs."""
    prof = cProfile.Profile()
    prof.enable()
    build, _ = compiler_for(model)
    for i in range(count):
        build(spec.node_ref(i))
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    out.write(f"== cProfile: {count} nodes, sorted by own time ==\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write("== sorted by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()
