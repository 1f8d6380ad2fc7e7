"""Edit the model of a running ``meshplane serve`` and wait until it has taken the edit."""
from __future__ import annotations

from pathlib import Path

from harness.mesh import MeshRunner
from harness.processes import wait_until
from harness.model_builders import write_model


def reload_model(runner: MeshRunner, path: Path, *documents, timeout: float = 20) -> str:
    """Replace the model file ``path`` with ``documents`` (atomically, see ``write_model``) and
    wait until meshplane has reloaded it without errors; returns the text written.

    Only the control plane is waited for: follow with ``runner.wait_converged(...)`` to wait
    for Envoy too.
    """
    reloads = runner.status()["model"]["reloads"]
    text = write_model(path, *documents)

    def reloaded() -> bool:
        model = runner.status()["model"]
        return model["reloads"] > reloads and not model["lastError"]

    wait_until(reloaded, timeout, message=f"meshplane did not reload {path.name} without errors")
    return text
