"""The router (``envoy.filters.http.router``): forwards the request along the matched route.

Every HCM has it, last (Envoy requires the router to be the terminal HTTP filter). It has no
per-route settings (the route's own action is its configuration), so no ``per_route`` here.
"""
from __future__ import annotations

from typing import Any

from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401  (registers the typed Any)

from mesh_model.compiler.common import typed

NAME = "envoy.filters.http.router"

# Built once: the entry is the same for every HCM (and never mutated by its users).
ENTRY: dict[str, Any] = {"name": NAME, "typedConfig": typed("envoy.extensions.filters.http.router.v3.Router")}


def needed(context) -> bool:
    """Every HTTP connection manager routes."""
    return True


def hcm_entry(context) -> dict[str, Any]:
    return ENTRY
