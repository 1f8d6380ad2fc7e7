"""Where test inputs live: the repository, the golden cases, the public App Mesh examples."""
from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GOLDEN = TESTS / "golden"


def golden_model(case: str) -> Path:
    """The model folder of one golden case (``tests/golden/<case>/model``)."""
    return GOLDEN / case / "model"


def shared_examples_dir() -> Path:
    """The App Mesh example configurations in ``../shared/examples/appmesh`` (beside the
    checkout, as CI lays it out). Missing examples fail the test that needs them: never a skip."""
    for candidate in (REPO.parent / "shared" / "examples" / "appmesh", Path("/work/shared/examples/appmesh")):
        if candidate.is_dir():
            return candidate
    pytest.fail(f"App Mesh examples not found in {REPO.parent / 'shared' / 'examples' / 'appmesh'}")
