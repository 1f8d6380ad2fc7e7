"""``make test-examples``: meshplane against the eight public App Mesh examples.

The examples are not in the repository (``examples_check/public_examples.py`` says where they
are looked for). Without them the run FAILS at start-up, saying where to put them: a check
that silently skips would pass on every machine that lacks them.
"""
from __future__ import annotations

import pytest

from examples_check.public_examples import ExamplesMissing, examples_dir
# the fixtures of the suite these checks use (real processes, a real Envoy)
from tests.conftest import addresses, envoy_binary, procs  # noqa: F401


def pytest_configure(config):
    try:
        examples_dir()
    except ExamplesMissing as missing:
        raise pytest.UsageError(str(missing)) from None


@pytest.fixture(scope="session")
def examples(tmp_path_factory):
    """The eight examples substituted and ready to load, by number ("01" .. "08")."""
    from examples_check.public_examples import prepared_examples

    return prepared_examples(tmp_path_factory.mktemp("examples"))
