"""meshplane process harness: runs real Envoy, tiny upstream apps and traffic.

Shared by the tests (``tests/``), the demo (``demo/``) and the benchmarks (``bench/``); like
them it runs from the checkout and is not installed (the wheel holds only ``mesh_model`` and
``xds_server``).

Exports are resolved lazily so that ``python -m harness.apps``
does not import ``apps`` twice (avoids runpy's RuntimeWarning).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    # processes
    "free_port": "processes",
    "wait_until": "processes",
    "ProcessGroup": "processes",
    "Proc": "processes",
    "pgid_members": "processes",
    "install_sigterm_handler": "processes",
    # envoy
    "envoy_binary": "envoy",
    "validate_config": "envoy",
    "EnvoyProcess": "envoy",
    "EnvoyNotFoundError": "envoy",
    "EnvoyExitedError": "envoy",
    # apps
    "AppServer": "apps",
    "start_app": "apps",
    "AppProcess": "apps",
    "start_app_process": "apps",
    # traffic
    "Response": "traffic",
    "Headers": "traffic",
    "http_get": "traffic",
    "http_request": "traffic",
    "count_split": "traffic",
    "binomial_tolerance": "traffic",
    "split_violations": "traffic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from harness.apps import AppProcess, AppServer, start_app, start_app_process
    from harness.envoy import EnvoyExitedError, EnvoyNotFoundError, EnvoyProcess, envoy_binary, validate_config
    from harness.processes import ProcessGroup, Proc, free_port, install_sigterm_handler, pgid_members, wait_until
    from harness.traffic import (Headers, Response, binomial_tolerance, count_split, http_get, http_request,
                          split_violations)
