"""Listeners: where Envoy accepts the app's inbound (ingress) and outbound (egress) traffic.

The shape depends on the data path of the instance (``Placement``): one original-destination
listener per direction (App Mesh's iptables layout, 15000/15001) or, on the explicit path, a
listener per virtual-node listener port and per backend port on the instance's own addresses.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from envoy.config.listener.v3 import listener_pb2

from mesh_model.spec.envoy_rules import servable_log_format
from mesh_model.spec.model import Mesh, Resource
from mesh_model.compiler import names, passthrough
from mesh_model.compiler.http_filters import EGRESS, INGRESS, HcmContext, hcm_filters
from mesh_model.compiler.common import DEFAULT_IDLE_MS, ads_config_source, duration, socket_address, to_proto, typed
from mesh_model.compiler.placement import Placement
from mesh_model.compiler import tracing
from mesh_model.compiler.tcp import TcpBackend, tcp_proxy
from mesh_model.compiler.tls import TLS_INSPECTOR, listener_filter_chains, needs_tls_inspector, tls_inspector_for_ports

HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def access_logs(node: Resource) -> list[dict[str, Any]]:
    """App Mesh ``logging.accessLog.file``: Envoy's file logger with the text or JSON format given."""
    logging = node.spec.logging
    if logging is None or logging.accessLog is None or logging.accessLog.file is None:
        return []
    file = logging.accessLog.file
    config: dict[str, Any] = {"path": file.path}
    if file.format is not None and file.format.text is not None:
        config["logFormat"] = {"textFormatSource": {"inlineString": servable_log_format(file.format.text)}}
    elif file.format is not None and file.format.json is not None:
        config["logFormat"] = {"jsonFormat": {item.key: servable_log_format(item.value) for item in file.format.json}}
    return [{"name": "envoy.access_loggers.file", "typedConfig": typed("envoy.extensions.access_loggers.file.v3.FileAccessLog", config)}]


def http_connection_manager(stat_prefix: str, route_config: str, logs: list, context: HcmContext, *, websocket: bool,
                            tracer: str = "") -> dict[str, Any]:
    """App Mesh's HCM: path normalisation on, websocket upgrades on plain-http listeners;
    its HTTP filters from ``http_filters`` for ``context``; ``tracer``: the instance's tracer
    (``Placement.tracing``), "" for none."""
    body: dict[str, Any] = {
        "statPrefix": stat_prefix,
        "codecType": "AUTO",
        "rds": {"configSource": ads_config_source(), "routeConfigName": route_config},
        "httpFilters": hcm_filters(context),
        "normalizePath": True,
        "mergeSlashes": True,
        "pathWithEscapedSlashesAction": "KEEP_UNCHANGED",
    }
    if websocket:
        body["upgradeConfigs"] = [{"upgradeType": "websocket"}]
    if logs:
        body["accessLog"] = logs
    body.update(tracing.hcm_tracing(tracer))
    return {"name": "envoy.filters.network.http_connection_manager", "typedConfig": typed(HCM, body)}


def _tcp_proxy(stat_prefix: str, cluster: str, idle) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typedConfig": typed(
            "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            {"statPrefix": stat_prefix, "cluster": cluster, "idleTimeout": duration(idle, DEFAULT_IDLE_MS)},
        ),
    }


def _ingress_filters(mesh: Mesh, node: Resource, listener, tracer: str) -> list[dict[str, Any]]:
    port, protocol = listener.portMapping.port, listener.portMapping.protocol
    if protocol == "tcp":
        idle = listener.timeout.tcp.idle if listener.timeout is not None and listener.timeout.tcp is not None else None
        return [_tcp_proxy(names.INGRESS_STAT_PREFIX, names.local_app_cluster(mesh.name, node.name, protocol, port), idle)]
    return [
        http_connection_manager(
            names.INGRESS_STAT_PREFIX,
            names.ingress_route_config(protocol, port),
            access_logs(node),
            HcmContext(node, INGRESS, listener),
            websocket=protocol == "http",
            tracer=tracer,
        )
    ]


def listener_families(mesh: Mesh, node: Resource) -> tuple[str, ...]:
    """Which IP families a wildcard (transparent) listener binds, from ``ipPreference``.

    App Mesh's listeners bind IPv4 only unless the node (or, failing that, the mesh) asks for
    IPv6: ``IPv6_PREFERRED``/``IPv4_PREFERRED`` bind both families, ``IPv6_ONLY`` IPv6 only,
    ``IPv4_ONLY`` and unset IPv4 only (so a host without IPv6 never fails to bind).
    """
    preference = None
    sd = getattr(node.spec, "serviceDiscovery", None)  # a gateway has none: the mesh decides
    if sd is not None:
        preference = (sd.dns or sd.awsCloudMap).ipPreference
    if preference is None and mesh.spec is not None and mesh.spec.serviceDiscovery is not None:
        preference = mesh.spec.serviceDiscovery.ipPreference
    families = {"IPv6_PREFERRED": ("v4", "v6"), "IPv4_PREFERRED": ("v4", "v6"), "IPv6_ONLY": ("v6",)}
    return families.get(preference, ("v4",)) if preference is not None else ("v4",)


def bind(address: str, port: int, families: tuple[str, ...]) -> dict[str, Any]:
    """``address`` (plus ``additionalAddresses``) of a listener: a wildcard IPv4 address widens
    to the families asked for; a specific address is bound as given."""
    if address != "0.0.0.0" or families == ("v4",):
        return {"address": socket_address(address, port)}
    if families == ("v6",):
        return {"address": socket_address("::", port)}
    return {"address": socket_address("0.0.0.0", port), "additionalAddresses": [{"address": socket_address("::", port)}]}


ORIGINAL_DST = {"name": "envoy.filters.listener.original_dst", "typedConfig": typed("envoy.extensions.filters.listener.original_dst.v3.OriginalDst")}


def listener_proto(body: Mapping[str, Any]) -> listener_pb2.Listener:
    return to_proto(body, listener_pb2.Listener)


def ingress_listeners(mesh: Mesh, node: Resource, placement: Placement, build: Callable[[dict], Any] = listener_proto) -> list:
    """The inbound listener(s); listener TLS (STRICT / PERMISSIVE / DISABLED) shapes the filter chains (``tls.py``).
    ``build`` turns each listener's JSON form into what the caller wants (by default the proto;
    the compiler shares one built listener between the nodes whose listeners are identical)."""
    node_listeners = node.spec.listeners or ()
    if not node_listeners:
        return []
    if placement.explicit:
        result = []
        for listener in node_listeners:
            port = listener.portMapping.port
            body: dict[str, Any] = {
                "name": names.ingress_listener(placement.ingress_address, port),
                "address": socket_address(placement.ingress_address, port),
                "trafficDirection": "INBOUND",
                "filterChains": listener_filter_chains(listener, _ingress_filters(mesh, node, listener, placement.tracing)),
            }
            if needs_tls_inspector([listener]):
                body["listenerFilters"] = [TLS_INSPECTOR]
            result.append(body)
    else:
        # One listener for every port: each port's chains (TLS variants included) match on the
        # original destination port.
        chains = [
            chain
            for listener in sorted(node_listeners, key=lambda l: l.portMapping.port)
            for chain in listener_filter_chains(listener, _ingress_filters(mesh, node, listener, placement.tracing), {"destinationPort": listener.portMapping.port})
        ]
        listener_filters = [ORIGINAL_DST] + ([tls_inspector_for_ports(node_listeners)] if needs_tls_inspector(node_listeners) else [])
        result = [
            {
                "name": names.ingress_listener(placement.ingress_address, placement.ingress_port),
                **bind(placement.ingress_address, placement.ingress_port, listener_families(mesh, node)),
                "trafficDirection": "INBOUND",
                "listenerFilters": listener_filters,
                "filterChains": chains,
            }
        ]
    return [build(body) for body in result]


def egress_listeners(
    node: Resource,
    placement: Placement,
    http_ports: list[int],
    tcp: Mapping[int, TcpBackend] | None = None,
    *,
    transparent: bool | None = None,
    families: tuple[str, ...] = ("v4",),
    mesh: str | None = None,
    egress_filter: str = passthrough.DROP_ALL,
    build: Callable[[dict], Any] = listener_proto,
) -> list:
    """The catch-all egress listener (15001), plus one per backend port on the explicit path.

    TCP backends (``tcp``: port -> backend) get a tcp_proxy: on the transparent path as a
    filter chain of the 15001 listener matching the original destination port (ahead of every
    other chain); on the explicit path as a listener of their own on that port.

    On the transparent path (with ``mesh`` given) the listener also inspects TLS (and, under
    ``ALLOW_ALL``, HTTP) and adds App Mesh's passthrough chains after the port chains: AWS
    endpoints by SNI under any egress filter, everything else under ``ALLOW_ALL`` only; the
    HTTP chain takes plaintext (``passthrough.py`` describes App Mesh's listener and the order).
    ``build`` as for ``ingress_listeners``.
    """
    tcp = tcp or {}
    transparent = not placement.explicit if transparent is None else transparent
    logs = access_logs(node)
    egress = HcmContext(node, EGRESS)
    main: dict[str, Any] = {
        "name": names.egress_listener(placement.egress_address, placement.egress_port),
        **bind(placement.egress_address, placement.egress_port, families if transparent else ("v4",)),
        "trafficDirection": "OUTBOUND",
        "filterChains": [{"filters": [http_connection_manager(names.EGRESS_STAT_PREFIX, names.egress_route_config(placement.egress_port), logs, egress, websocket=True, tracer=placement.tracing)]}],
    }
    if transparent:
        main["listenerFilters"] = [ORIGINAL_DST]
        port_chains = [{"filterChainMatch": {"destinationPort": port}, "filters": [tcp_proxy(tcp[port])]} for port in sorted(tcp)]
        if mesh is None:
            main["filterChains"] = port_chains + main["filterChains"]
        else:
            main["listenerFilters"] += passthrough.egress_inspectors(egress_filter, sorted(tcp))
            main["continueOnListenerFiltersTimeout"] = True  # a server-first protocol continues as plaintext
            http_filters = main["filterChains"][0]["filters"]
            main["filterChains"] = port_chains + passthrough.egress_chains(mesh, egress_filter, http_filters)
    result = [main]
    if not transparent:
        for port in sorted(set(tcp) - {placement.egress_port}):
            result.append(
                {
                    "name": names.egress_listener(placement.egress_address, port),
                    "address": socket_address(placement.egress_address, port),
                    "trafficDirection": "OUTBOUND",
                    "filterChains": [{"filters": [tcp_proxy(tcp[port])]}],
                }
            )
        for port in sorted(set(http_ports) - {placement.egress_port}):
            result.append(
                {
                    "name": names.egress_listener(placement.egress_address, port),
                    "address": socket_address(placement.egress_address, port),
                    "trafficDirection": "OUTBOUND",
                    "filterChains": [{"filters": [http_connection_manager(names.EGRESS_STAT_PREFIX, names.egress_route_config(port), logs, egress, websocket=True, tracer=placement.tracing)]}],
                }
            )
    return [build(body) for body in result]
