"""The map stays true: every repository path the README and the docs name exists.

A path is a backquoted word that looks like a file or folder of this repository: it has a
``/`` or ends in a source suffix, and starts with one of the repository's top-level entries.
``path:line``, ``path:Name`` and ``path::name`` references are checked for their path part;
paths git ignores (what a build or a benchmark run writes) need not exist."""
from __future__ import annotations

import re
import subprocess

from tests.paths import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md",
             REPO / "compose" / "README.md"]
TOP_LEVEL = {p.name for p in REPO.iterdir() if not p.name.startswith(".")}
SUFFIXES = (".py", ".md", ".yaml", ".yml", ".json", ".j2", ".sh", ".toml", ".tf", ".txt")
_BACKQUOTED = re.compile(r"`([^`\s]+)`")


def named_paths(text: str) -> set[str]:
    found = set()
    for word in _BACKQUOTED.findall(text):
        path = word.split(":", 1)[0].rstrip("/.,")
        if not ("/" in path or path.endswith(SUFFIXES)) or any(c in path for c in "*<>{}$?"):
            continue
        if path.split("/", 1)[0] in TOP_LEVEL:
            found.add(path)
    return found


def _ignored(path: str) -> bool:
    return any(subprocess.run(["git", "check-ignore", "-q", "--no-index", candidate], cwd=REPO).returncode == 0
               for candidate in (path, path + "/"))


def test_every_repository_path_in_the_docs_exists():
    missing = []
    for doc in DOCUMENTS:
        if not doc.exists():
            continue
        for path in sorted(named_paths(doc.read_text())):
            if not (REPO / path).exists() and not _ignored(path):
                missing.append(f"{doc.relative_to(REPO)}: `{path}`")
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_the_check_sees_paths():
    """The pattern finds the kinds of references the docs use (a check that finds nothing passes)."""
    assert named_paths("see `xds_server/api/rights.py:12`, `tests/unit/x.py::test_a` and `Makefile`") == \
        {"xds_server/api/rights.py", "tests/unit/x.py"}
    assert len(named_paths((REPO / "docs" / "architecture.md").read_text())) > 10


def test_every_golden_case_is_in_the_feature_table():
    """docs/architecture.md maps each compiler feature to its golden case: every case is named there."""
    from tests.paths import GOLDEN

    text = (REPO / "docs" / "architecture.md").read_text()
    table = text.split("## Compiler features and their golden cases", 1)[1].split("\n## ", 1)[0]
    missing = [p.name for p in sorted(GOLDEN.iterdir()) if (p / "case.yaml").exists() and f"`tests/golden/{p.name}`" not in table]
    assert not missing, f"golden cases without a row in docs/architecture.md's feature table: {missing}"
