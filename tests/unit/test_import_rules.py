"""The import rules of the code base, checked on every `make test`.

One direction of imports keeps each package replaceable and readable on its own:

* ``mesh_model`` (the model and the pure compiler) never imports ``xds_server``; neither
  imports test, demo or benchmark code (``tests``, ``harness``, ``demo``, ``bench`` are not
  installed).
* The compiler is pure: no file, clock, network or process access, and it does not reach
  back into loading, rendering or the adapters.
* No import cycles between modules: a module never imports (directly or through others)
  a module that imports it back. Function-local imports count too (they are how cycles
  hide); imports under ``if TYPE_CHECKING:`` do not (they never run).
* Layers inside ``xds_server``: the protocol core (``server``, ``cache``) knows nothing of
  the control plane, the API, the store, observability or the CLI, not even for type hints;
  nothing below the CLI imports it. The API knows nothing of the control plane or the xDS
  server (``serve_wiring`` joins them).
* ``meshplane validate`` and ``render`` do not load the gRPC server (checked by running them).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.paths import GOLDEN, REPO

PACKAGES = ("mesh_model", "xds_server")

# (importer prefix, forbidden import prefixes, why)
FORBIDDEN: list[tuple[str, tuple[str, ...], str]] = [
    ("mesh_model", ("xds_server", "tests", "harness", "bench", "demo"), "the model does not know the server or test code"),
    ("xds_server", ("tests", "harness", "bench", "demo"), "test, demo and benchmark code is not installed"),
    ("mesh_model.compiler", ("mesh_model.load", "mesh_model.render", "mesh_model.adapters",
                             "os", "io", "pathlib", "socket", "subprocess", "shutil", "tempfile",
                             "time", "datetime", "random", "threading", "asyncio", "logging"),
     "the compiler is pure: model in, Envoy resources out"),
    ("xds_server.cache", ("xds_server.server", "xds_server.controlplane", "xds_server.api", "xds_server.store",
                          "xds_server.cli", "xds_server.serve", "xds_server.serve_wiring", "xds_server.observability",
                          "xds_server.http", "xds_server.admission"),
     "snapshots and their cache are the bottom layer"),
    ("xds_server.server", ("xds_server.controlplane", "xds_server.api", "xds_server.store", "xds_server.cli",
                           "xds_server.serve", "xds_server.serve_wiring", "xds_server.observability",
                           "xds_server.http", "xds_server.admission"),
     "the xDS protocol reports through callbacks and knows no control plane"),
    ("xds_server.api", ("xds_server.controlplane", "xds_server.serve", "xds_server.serve_wiring", "xds_server.server",
                        "xds_server.http"),
     "the API serves a store; `serve_wiring` gives it the control plane's model"),
    ("xds_server.store", ("xds_server.api", "xds_server.controlplane", "xds_server.server", "xds_server.serve",
                          "xds_server.serve_wiring", "xds_server.http", "xds_server.cli"),
     "a store keeps resources; the API and the control plane use it, not the reverse"),
]
ALLOWED_LAYER_EXCEPTIONS: set[tuple[str, str]] = set()
CLI_ONLY = "xds_server.cli"


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) of every import that can run, resolved to the most specific
    known module (``from pkg import mod`` is an import of ``pkg.mod``)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    mods = _modules()
    known = set(mods)
    return mods, {m: _imports(m, p, known) for m, p in mods.items()}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_forbidden_imports():
    mods, graph = _graph()
    problems = []
    for module, imports in graph.items():
        for imported, line in imports:
            for importer, forbidden, why in FORBIDDEN:
                if _under(module, importer) and any(_under(imported, f) for f in forbidden):
                    problems.append(f"{mods[module].relative_to(REPO)}:{line}: {module} imports {imported} ({why})")
            if _under(imported, CLI_ONLY) and not _under(module, CLI_ONLY):
                problems.append(f"{mods[module].relative_to(REPO)}:{line}: {module} imports the CLI ({imported})")
    assert not problems, "\n".join(problems)


PROTOCOL_CORE = ("xds_server.server", "xds_server.cache")


def test_protocol_core_does_not_name_the_layers_above_even_for_type_hints():
    """The protocol core's forbidden imports, under ``if TYPE_CHECKING:`` too: what it reads
    from the layers above (CSDS reads the streams' status) it declares itself."""
    mods = _modules()
    problems = []
    for module, path in mods.items():
        if not any(_under(module, core) for core in PROTOCOL_CORE):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                for importer, forbidden, why in FORBIDDEN:
                    if _under(module, importer) and any(_under(name, f) for f in forbidden):
                        problems.append(f"{path.relative_to(REPO)}:{node.lineno}: {module} names {name} ({why})")
    assert not problems, "\n".join(problems)


def _cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    edges = {m: sorted({i for i, _ in imports if i in graph and i != m}) for m, imports in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            child = next(it, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles():
    _, graph = _graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_planted_cycle():
    """The check above can fail: a two-module and a three-module cycle are found, a chain is not."""
    graph = {"a": [("b", 1)], "b": [("a", 1)], "c": [("d", 1)], "d": [("e", 1)], "e": [("c", 1)],
             "x": [("y", 1)], "y": []}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_validate_and_render_do_not_load_the_server(tmp_path):
    """Running `validate` and `render` in a fresh interpreter never imports grpc or the ADS server."""
    model = str(GOLDEN / "retail" / "model")
    script = (
        "import sys\n"
        "from xds_server.cli import main\n"
        f"assert main(['validate', {model!r}]) == 0\n"
        f"assert main(['render', {model!r}, '--node', 'mesh/retail/virtualNode/front', '-o', {str(tmp_path / 'out.yaml')!r}]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m == 'grpc' or m.startswith(('grpc.', 'xds_server.server', "
        "'xds_server.controlplane', 'xds_server.serve', 'xds_server.http', 'xds_server.api', 'xds_server.store')))\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
