"""envoy-data-plane (betterproto2) vs xds-protos (upb): serializing the same resource.

The resource is a real meshplane output: the egress RouteConfiguration of a generated node
with ``vhosts`` backends (one virtual host per backend service, each with one weighted route),
compiled by ``compile_node``. xds-protos serializes it here; envoy-data-plane parses the very
same bytes into its dataclasses and serializes them back, in a separate interpreter.

``envoy-data-plane`` is not a project dependency. It is used if importable; otherwise a
throwaway venv (``$MESHPLANE_BENCH_EDP_VENV``, default ``~/.cache/meshplane-bench/edp-venv``)
is created with ``pip install envoy-data-plane``; ``MESHPLANE_BENCH_NO_INSTALL=1`` forbids
that. When it cannot be had, xds-protos is reported alone, marked so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import Result

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

# Runs under the interpreter that has envoy_data_plane. argv: bytes file, iterations.
_EDP_SCRIPT = textwrap.dedent("""\
    import json, sys, time
    from importlib.metadata import version
    from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
    data = open(sys.argv[1], "rb").read()
    n = int(sys.argv[2])
    t = time.perf_counter(); msg = RouteConfiguration.parse(data); parse_s = time.perf_counter() - t
    out = bytes(msg)
    times = []
    for _ in range(n):
        t = time.perf_counter(); bytes(msg); times.append(time.perf_counter() - t)
    print(json.dumps({"serialize_s": sorted(times)[len(times) // 2], "parse_s": parse_s,
                      "vhosts": len(msg.virtual_hosts), "out": out.hex(),
                      "versions": {p: version(p) for p in ("envoy-data-plane", "betterproto2")}}))
    """)


def _venv_dir() -> Path:
    return Path(os.environ.get("MESHPLANE_BENCH_EDP_VENV", Path.home() / ".cache" / "meshplane-bench" / "edp-venv"))


def _edp_python(log=print) -> tuple[str | None, str]:
    """An interpreter that can import envoy_data_plane, and how it was found (or why not)."""
    try:
        import envoy_data_plane  # noqa: F401
        return sys.executable, "importable in this interpreter"
    except ImportError:
        pass
    venv = _venv_dir()
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import envoy_data_plane"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python), f"throwaway venv {venv}"
    if os.environ.get("MESHPLANE_BENCH_NO_INSTALL"):
        return None, "not importable and MESHPLANE_BENCH_NO_INSTALL is set"
    log(f"serialization: installing envoy-data-plane into a throwaway venv {venv} (not a project dependency)")
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "envoy-data-plane"],
                             capture_output=True, text=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create the venv: {exc}"
    if pip.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        return None, f"pip install envoy-data-plane failed: {(pip.stderr or pip.stdout).strip().splitlines()[-1:]}"
    return str(python), f"throwaway venv {venv} (installed now)"


def route_configuration(vhosts: int):
    """A real compiled egress RouteConfiguration with ``vhosts`` backend services."""
    from mesh_model.compiler import Placement, compile_node
    from mesh_model.load import load_texts

    from bench.meshgen import MeshSpec, generate_texts

    spec = MeshSpec(nodes=vhosts + 1, backends=vhosts)
    model = load_texts(generate_texts(spec))
    routes = compile_node(model, spec.node_ref(0), Placement())[ROUTE_TYPE]
    return max(routes.values(), key=lambda r: len(r.virtual_hosts))


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def run(vhosts: int = 200, iterations: int = 200, edp_iterations: int = 10, log=print) -> list[Result]:
    from envoy.config.route.v3 import route_pb2

    msg = route_configuration(vhosts)
    data = msg.SerializeToString(deterministic=True)
    xds_s = _median_time(lambda: msg.SerializeToString(deterministic=True), iterations)
    xds_parse_s = _median_time(lambda: route_pb2.RouteConfiguration.FromString(data), iterations)
    label = f"RouteConfiguration, {len(msg.virtual_hosts)} virtual hosts ({len(data) / 1024:.0f} KiB)"
    log(f"serialization: xds-protos {xds_s * 1000:.3f} ms per serialization of a {label}")
    xds_row = Result(
        benchmark=f"serialization: xds-protos (upb), {label}",
        measured=xds_s * 1000, unit="ms", verdict="INFO",
        notes=f"median of {iterations} SerializeToString(deterministic=True); parsing the same bytes: {xds_parse_s * 1000:.3f} ms.",
        details={"serialize_s": xds_s, "parse_s": xds_parse_s, "bytes": len(data)},
    )
    python, how = _edp_python(log)
    if python is None:
        xds_row.benchmark += " (alone: envoy-data-plane unavailable)"
        xds_row.notes += f" envoy-data-plane UNAVAILABLE ({how}): no comparison this run."
        return [xds_row, Result(benchmark=f"serialization: envoy-data-plane (betterproto2), {label}", measured=None,
                                unit="ms", verdict="SKIP", notes=f"envoy-data-plane unavailable: {how}.")]
    with tempfile.NamedTemporaryFile(prefix="meshplane-bench-rc-", suffix=".bin", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        proc = subprocess.run([python, "-c", _EDP_SCRIPT, path, str(edp_iterations)],
                              capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        return [xds_row, Result(benchmark=f"serialization: envoy-data-plane (betterproto2), {label}", measured=None,
                                unit="ms", verdict="ERROR", notes=f"the envoy-data-plane run failed: {proc.stderr.strip()[-300:]}")]
    edp = json.loads(proc.stdout)
    same = route_pb2.RouteConfiguration.FromString(bytes.fromhex(edp["out"])) == msg
    log(f"serialization: envoy-data-plane {edp['serialize_s'] * 1000:.1f} ms ({edp['serialize_s'] / xds_s:.0f}x xds-protos)")
    versions = ", ".join(f"{k} {v}" for k, v in edp["versions"].items())
    return [xds_row, Result(
        benchmark=f"serialization: envoy-data-plane (betterproto2), {label}",
        measured=edp["serialize_s"] * 1000, unit="ms", floor=xds_s * 1000,
        floor_desc="xds-protos serializing the same message in this run.", verdict="INFO",
        notes=(f"{versions}, {how}; median of {edp_iterations} bytes(msg); parsing the same bytes took "
               f"{edp['parse_s'] * 1000:.1f} ms (xds-protos {xds_parse_s * 1000:.3f} ms); its output "
               f"{'parses back to the identical message' if same else 'DIFFERS from the original message'}."),
        details={"serialize_s": edp["serialize_s"], "parse_s": edp["parse_s"], "same_message": same, "how": how},
    )]
