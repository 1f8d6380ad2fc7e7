"""The ordered HTTP filter list (``mesh_model/compiler/http_filters``): Envoy Gateway's order,
the router last, and a new filter module landing where its rank says."""
from __future__ import annotations

import types

import pytest

from mesh_model.compiler import http_filters
from mesh_model.compiler.http_filters import EGRESS, INGRESS, ORDER, RANK, HcmContext, check_order, hcm_filters, router
from mesh_model.spec.model import Resource

CONTEXT = HcmContext(Resource(kind="VirtualNode", mesh="m", name="n", spec=None), EGRESS)


def fake_filter(name: str, *, needed=lambda context: True, per_route=None) -> types.ModuleType:
    """A filter module as a new one would be written: NAME, needed, hcm_entry (and per_route)."""
    module = types.ModuleType(f"fake_{name.rsplit('.', 1)[-1]}")
    module.NAME = name
    module.needed = needed
    module.hcm_entry = lambda context: {"name": name, "typedConfig": {"@type": f"type.googleapis.com/fake.{name}"}}
    if per_route is not None:
        module.per_route = per_route
    return module


def names(filters) -> list[str]:
    return [f["name"] for f in filters]


def test_rank_is_envoy_gateways_order_with_the_router_last():
    assert RANK == (
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.router",
    )
    assert ORDER[-1] is router
    check_order(ORDER)


def test_today_every_hcm_gets_the_router_alone_the_same_entry_as_before():
    for context in (CONTEXT, HcmContext(CONTEXT.node, INGRESS, listener=object())):
        assert hcm_filters(context) == [
            {"name": "envoy.filters.http.router",
             "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
        ]
    assert hcm_filters(CONTEXT)[0] is router.ENTRY  # built once, not per HCM
    assert http_filters.PER_ROUTE == ()  # no route builder adds typedPerFilterConfig today


def test_a_new_filter_lands_at_its_rank():
    cors = fake_filter("envoy.filters.http.cors")
    local = fake_filter("envoy.filters.http.local_ratelimit")
    fault = fake_filter("envoy.filters.http.fault")
    order = (fault, cors, local) + ORDER
    check_order(order)
    assert names(hcm_filters(CONTEXT, order)) == [
        "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.local_ratelimit", "envoy.filters.http.router",
    ]


@pytest.mark.parametrize("order, message", [
    (lambda cors, authz: ORDER + (cors,), "router must be the last"),
    (lambda cors, authz: (authz, cors) + ORDER, "out of RANK's order"),
    (lambda cors, authz: (cors, cors) + ORDER, "out of RANK's order"),
    (lambda cors, authz: (fake_filter("envoy.filters.http.lua"),) + ORDER, "without a place in RANK"),
    (lambda cors, authz: (cors,), "router must be the last"),
])
def test_an_order_breaking_the_rank_is_refused(order, message):
    cors, authz = fake_filter("envoy.filters.http.cors"), fake_filter("envoy.filters.http.ext_authz")
    with pytest.raises(ValueError, match=message):
        check_order(order(cors, authz))


def test_a_filter_the_context_does_not_need_is_left_out():
    jwt = fake_filter("envoy.filters.http.jwt_authn", needed=lambda context: context.direction == INGRESS)
    order = (jwt,) + ORDER
    assert names(hcm_filters(CONTEXT, order)) == ["envoy.filters.http.router"]
    ingress = HcmContext(CONTEXT.node, INGRESS, listener=object())
    assert names(hcm_filters(ingress, order)) == ["envoy.filters.http.jwt_authn", "envoy.filters.http.router"]


def test_per_route_settings_by_filter_name():
    limit = {"@type": "type.googleapis.com/fake.LocalRateLimit", "statPrefix": "r"}
    local = fake_filter("envoy.filters.http.local_ratelimit", per_route=lambda route: limit if route == "limited" else None)
    assert http_filters.typed_per_filter_config("limited", (local,)) == {"envoy.filters.http.local_ratelimit": limit}
    assert http_filters.typed_per_filter_config("other", (local,)) == {}
