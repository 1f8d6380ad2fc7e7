"""The benchmarks at toy size, so their code cannot rot (numbers only, not targets).

The real runs are `make bench` / `python -m bench`; see bench/README.md.
"""
from __future__ import annotations

import math

from bench import compile_bench, fanout_bench
from bench.common import table
from bench.meshgen import MeshSpec, load_model


def _numbers(results):
    assert results
    for r in results:
        assert r.verdict in ("PASS", "MISS", "INFO"), (r.benchmark, r.verdict, r.notes)
        assert r.measured is not None and math.isfinite(r.measured), r  # RSS deltas may be < 0 at toy size
    assert "| benchmark |" in table(results)


def test_meshgen_is_deterministic_and_valid():
    spec = MeshSpec(nodes=12, backends=3, shared_backend=True)
    model = load_model(spec)
    mesh = model.meshes["bench"]
    assert len(mesh.virtual_nodes) == 12 and len(mesh.virtual_services) == 12
    assert spec.backend_indices(5) == MeshSpec(nodes=12, backends=3, shared_backend=True).backend_indices(5)
    assert all(0 in spec.backend_indices(i) for i in range(1, 12))
    assert 5 not in spec.backend_indices(5)


def test_compile_bench_toy():
    results = compile_bench.run(nodes=20, backends=3, files=4, log=lambda *_: None)
    _numbers(results)
    names = " ".join(r.benchmark for r in results)
    assert "cold" in names and "ControlPlane.reload" in names
    for r in results:
        assert "WARNING" not in r.notes, r.notes  # the edit changed exactly the nodes that call the route's service


def test_fanout_bench_toy():
    results = fanout_bench.run(streams=20, channels=2, backends=3, timeout=30, rounds=1, log=lambda *_: None)
    _numbers(results)
    assert any(r.benchmark.startswith("memory:") for r in results)
    assert all(r.floor is not None for r in results if r.benchmark.startswith("fan-out"))


def test_api_bench_toy(envoy_binary, postgres):
    """Both latency set-ups (SQLite; two replicas on PostgreSQL) and every throughput run."""
    from bench import api_bench

    results = api_bench.run(edits=2, nodes=5, writes=3, log=lambda *_: None)
    _numbers(results)
    names = " ".join(r.benchmark for r in results)
    assert "one replica (SQLite)" in names and "across replicas" in names
    assert sum("update_route" in r.benchmark for r in results) == 8  # {SQLite, PostgreSQL} x {serve, alone} x cache off/on
    assert all(r.floor for r in results)


def test_shared_service_bench_toy():
    """meshplane serve and the bare-grpcio floor, the edit, and the reconnect storm, at toy size."""
    from bench import shared_service_bench

    results = shared_service_bench.run(sizes=(20,), rounds=1, storm_size=20, timeout=60, log=lambda *_: None)
    _numbers(results)
    assert any(r.benchmark.startswith("shared service: VirtualNode edit") and r.floor for r in results)
    assert any(r.benchmark.startswith("reconnect storm: failed streams") for r in results)


def test_tenants_bench_toy():
    from bench import tenants_bench

    results = tenants_bench.run(nodes=5, writes=5, log=lambda *_: None)
    assert [r.verdict for r in results][0] == "INFO" and results[1].verdict in ("PASS", "MISS")
    assert all(r.measured is not None and r.floor for r in results)
    assert results[0].details["big_writes"] > 0  # the other mesh really was being written meanwhile
