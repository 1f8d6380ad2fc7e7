"""The HTTP filters of an HTTP connection manager: which ones it gets, and in which order.

Every HCM the compiler writes (a sidecar's ingress and egress listeners, the transparent
egress listener's HTTP passthrough chain, a gateway's listeners) takes its ``httpFilters``
from ``hcm_filters`` here; nothing else writes that list.

The order (``RANK``) is Envoy Gateway's::

    fault, cors, jwt_authn, ext_authz, local_ratelimit, ratelimit (global), router

Why this order: Envoy runs HTTP filters in list order on the request, so each filter sees
only what the ones before it let through. Fault injection comes first so an injected delay or
abort behaves like the upstream failing, before any other filter spends work on the request;
CORS next, so a browser's preflight ``OPTIONS`` (which carries no credentials) is answered
before authentication could reject it; authentication (JWT) before external authorization,
which decides on the identity the JWT established; rate limits after both, so requests that
are refused anyway do not use up anyone's quota, the local (per-Envoy, no network call) limit
before the global one (a call to the rate-limit service); and the router last, because Envoy
requires the router to be the terminal filter. Following Envoy Gateway's order also means a
configuration written against Envoy Gateway behaves the same here.

A filter is one module of this package exposing:

* ``NAME``: its Envoy filter name (one of ``RANK``: its place in the order);
* ``needed(context) -> bool``: whether the HCM described by ``context`` (``HcmContext``) gets it;
* ``hcm_entry(context) -> dict``: its ``httpFilters`` entry, in Envoy's JSON field names
  (build it once at import when it does not depend on the context: this is the hot path);
* optionally ``per_route(route) -> dict | None``: its ``typedPerFilterConfig`` value (a typed
  Any) for one Envoy route built from ``route`` (a ``RoutePlan`` on a sidecar's egress, a
  ``GatewayRoutePlan`` on a gateway), ``None`` for nothing. It may depend on the route only:
  virtual hosts are shared between the nodes calling the same service.

Adding a filter: write its module, and put it in ``ORDER`` at its place (``check_order``
rejects, at import, an ``ORDER`` that breaks ``RANK`` or does not end with the router).
"""
from __future__ import annotations

from typing import Any, Sequence

from mesh_model.compiler.http_filters import router
from mesh_model.spec.model import Resource

# Envoy Gateway's order (see above): every filter's rank, including those not written yet.
RANK: tuple[str, ...] = (
    "envoy.filters.http.fault",
    "envoy.filters.http.cors",
    "envoy.filters.http.jwt_authn",
    "envoy.filters.http.ext_authz",
    "envoy.filters.http.local_ratelimit",
    "envoy.filters.http.ratelimit",
    router.NAME,
)

INGRESS, EGRESS = "ingress", "egress"


class HcmContext:
    """What a filter may look at to decide whether (and how) an HCM gets it; read-only.

    One is built for every HCM: a class with slots builds in half the time of a NamedTuple
    and a fifth of a frozen dataclass."""

    __slots__ = ("node", "direction", "listener")

    def __init__(self, node: Resource, direction: str, listener: Any = None) -> None:
        self.node = node  # the VirtualNode or VirtualGateway the listener belongs to
        self.direction = direction  # INGRESS (a node's or a gateway's listener) or EGRESS (a sidecar's egress)
        self.listener = listener  # the App Mesh listener (ingress only)


def check_order(order: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless ``order`` follows ``RANK`` and ends with the router."""
    names = [f.NAME for f in order]
    unknown = [n for n in names if n not in RANK]
    if unknown:
        raise ValueError(f"HTTP filters without a place in RANK: {', '.join(unknown)}")
    if not names or names[-1] != router.NAME:
        raise ValueError("the router must be the last HTTP filter")
    ranks = [RANK.index(n) for n in names]
    if ranks != sorted(set(ranks)):
        raise ValueError(f"HTTP filters out of RANK's order (or listed twice): {', '.join(names)}")


# The filters that exist, in their order.
ORDER: tuple[Any, ...] = (router,)
check_order(ORDER)

# The filters with per-route settings (none today: route builders skip the call while empty).
PER_ROUTE: tuple[Any, ...] = tuple(f for f in ORDER if hasattr(f, "per_route"))


def hcm_filters(context: HcmContext, order: Sequence[Any] = ORDER) -> list[dict[str, Any]]:
    """The ``httpFilters`` of the HCM described by ``context``, in order."""
    return [f.hcm_entry(context) for f in order if f.needed(context)]


def typed_per_filter_config(route: Any, order: Sequence[Any] = PER_ROUTE) -> dict[str, Any]:
    """An Envoy route's ``typedPerFilterConfig`` (filter name -> typed Any); empty for none."""
    configs = {}
    for f in order:
        config = f.per_route(route)
        if config is not None:
            configs[f.NAME] = config
    return configs
