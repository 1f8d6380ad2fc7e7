"""Where test inputs live: the repository, the golden cases, the project's App Mesh inputs.

Every input of ``make test`` is in the repository. (The public App Mesh examples are a
separate check that finds them itself: ``examples_check/``, ``make test-examples``.)"""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
GOLDEN = TESTS / "golden"


def golden_model(case: str) -> Path:
    """The model folder of one golden case (``tests/golden/<case>/model``)."""
    return GOLDEN / case / "model"
