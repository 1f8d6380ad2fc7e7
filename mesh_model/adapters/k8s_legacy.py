"""``appmesh.k8s.aws/v1beta1`` custom resources (the legacy App Mesh controller, before v1.0)
-> native documents, as that controller turned them into App Mesh API calls
(aws-app-mesh-controller-for-k8s, ``pkg/apis/appmesh/v1beta1`` and ``pkg/controller``):

* ``Mesh``: the App Mesh mesh ``metadata.name``; ``spec.egressFilter``
  (``spec.serviceDiscoveryType`` is dropped).
* ``VirtualNode``: the App Mesh name ``<name>-<namespace>`` (a name with dots: the dots made
  dashes, no namespace), mesh ``spec.meshName``; ``listeners`` (health checks get the
  controller's defaults: the listener's port and protocol, thresholds 10/2, interval 30 s,
  timeout 5 s), ``serviceDiscovery.dns.hostName`` -> ``dns.hostname``,
  ``serviceDiscovery.cloudMap`` -> ``awsCloudMap`` (with the attributes the controller added:
  ``appmesh.k8s.aws/mesh`` and ``appmesh.k8s.aws/virtualNode``), ``backends[].virtualService``
  (``virtualServiceName`` as written), ``backendDefaults``, ``logging``.
* ``VirtualService``: the App Mesh name ``metadata.name``, provided by the virtual router
  ``spec.virtualRouter.name`` (default: the service's name), named like a node; its
  ``listeners``; ``spec.routes[]`` become its Routes (named like nodes): ``http``,
  ``http2``, ``grpc``, ``tcp`` (-> ``httpRoute``...), ``priority``, weighted targets
  ``virtualNodeName`` (named like nodes), retry policies' ``perRetryTimeoutMillis``.

A router without ``listeners`` gets, as the controller gave it, the first listener of the
first route's first target VirtualNode (a v1beta1 one among the loaded files). Anything else
is refused with a message naming the field.
"""
from __future__ import annotations

from typing import Any

from mesh_model.adapters import Converted, Origin, Result

VERSION = "appmesh.k8s.aws/v1beta1"
_HEALTH_DEFAULTS = {"healthyThreshold": 10, "intervalMillis": 30000, "timeoutMillis": 5000, "unhealthyThreshold": 2}
_NODE_FIELDS = ("meshName", "listeners", "serviceDiscovery", "backends", "backendDefaults", "logging")
_SERVICE_FIELDS = ("meshName", "virtualRouter", "routes")
_ROUTE_TYPES = {"http": "httpRoute", "http2": "http2Route", "grpc": "grpcRoute", "tcp": "tcpRoute"}


def first_port_mapping(spec: dict) -> tuple:
    """``(port, protocol)`` of a v1beta1 VirtualNode's first listener, or ``()``."""
    listeners = spec.get("listeners")
    first = listeners[0] if isinstance(listeners, list) and listeners else None
    mapping = first.get("portMapping") if isinstance(first, dict) else None
    if not isinstance(mapping, dict):
        return ()
    port, protocol = mapping.get("port"), mapping.get("protocol")
    return (port, protocol) if isinstance(port, int) and isinstance(protocol, str) else ()


def app_mesh_name(kind: str, name: str, namespace: str) -> str:
    """The App Mesh name the legacy controller gave an object (``namespacedResourceName``)."""
    if kind in ("Mesh", "VirtualService"):
        return name
    return name.replace(".", "-") if "." in name else f"{name}-{namespace}"


class _Refused(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def convert(data: dict, context: Any, result: Result, source: str) -> Result:
    """One v1beta1 object (its metadata checked by the caller) -> native documents in ``result``
    (``source``: how errors name the object, ``k8s.source_label``)."""
    kind = data.get("kind")
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = metadata.get("name")
    namespace = metadata.get("namespace") or context.namespace
    spec = data.get("spec") if data.get("spec") is not None else {}
    if not isinstance(name, str) or not name:
        result.problem(source, "metadata.name", "required: a non-empty string")
        return result
    if not isinstance(spec, dict):
        result.problem(source, "spec", "expected a mapping")
        return result
    try:
        if kind == "Mesh":
            _only(spec, ("egressFilter", "serviceDiscoveryType"), "spec")
            native = {"egressFilter": spec["egressFilter"]} if "egressFilter" in spec else {}
            result.documents.append(Converted({"kind": "Mesh", "name": name, "spec": native},
                                              Origin(source, {"name": "metadata.name", "spec": "spec"})))
            return result
        if kind not in ("VirtualNode", "VirtualService"):
            raise _Refused("kind", f"{VERSION} has no {kind} (the legacy controller knew Mesh, VirtualNode, "
                                   "VirtualService); write it as appmesh.k8s.aws/v1beta2")
        mesh = spec.get("meshName")
        if not isinstance(mesh, str) or not mesh:
            raise _Refused("spec.meshName", "required: the name of the mesh")
        envelope = {"name": "metadata.name", "mesh": "spec.meshName", "spec": "spec"}
        if kind == "VirtualNode":
            _only(spec, _NODE_FIELDS, "spec")
            native, paths = _node(spec, mesh, app_mesh_name(kind, name, namespace))
            result.documents.append(Converted({"kind": kind, "mesh": mesh, "name": app_mesh_name(kind, name, namespace),
                                               "spec": native}, Origin(source, {**envelope, **paths})))
            return result
        _only(spec, _SERVICE_FIELDS, "spec")
        _service(spec, name, namespace, mesh, source, envelope, result, context)
    except _Refused as err:
        result.problem(source, err.path, err.message)
    return result


def _only(spec: dict, known: tuple[str, ...], path: str) -> None:
    for key in spec:
        if key not in known:
            raise _Refused(f"{path}.{key}", f"not a field meshplane reads in {VERSION} (known: {', '.join(known)}); "
                                            "write the object as appmesh.k8s.aws/v1beta2 to use it")


def _node(spec: dict, mesh: str, app_name: str) -> tuple[dict, dict[str, str]]:
    native: dict[str, Any] = {}
    paths: dict[str, str] = {}
    listeners = spec.get("listeners")
    if listeners is not None:
        if not isinstance(listeners, list):
            raise _Refused("spec.listeners", "expected a list")
        native["listeners"] = []
        for listener in listeners:
            listener = dict(listener) if isinstance(listener, dict) else listener
            check = listener.get("healthCheck") if isinstance(listener, dict) else None
            port = listener.get("portMapping") if isinstance(listener, dict) else None
            if isinstance(check, dict) and isinstance(port, dict):
                check = {**_HEALTH_DEFAULTS, "port": port.get("port"), "protocol": port.get("protocol"), **check}
                listener["healthCheck"] = check
            native["listeners"].append(listener)
    discovery = spec.get("serviceDiscovery")
    if discovery is not None:
        if not isinstance(discovery, dict) or len(discovery) != 1 or not set(discovery) <= {"dns", "cloudMap"}:
            raise _Refused("spec.serviceDiscovery", "expected one of dns: {hostName}, cloudMap: {serviceName, namespaceName}")
        if "dns" in discovery:
            dns = discovery["dns"]
            if not isinstance(dns, dict) or set(dns) != {"hostName"}:
                raise _Refused("spec.serviceDiscovery.dns", "expected {hostName: ...}")
            native["serviceDiscovery"] = {"dns": {"hostname": dns["hostName"]}}
            paths["spec.serviceDiscovery.dns.hostname"] = "spec.serviceDiscovery.dns.hostName"
        else:
            cloud = discovery["cloudMap"]
            if not isinstance(cloud, dict) or not set(cloud) <= {"serviceName", "namespaceName", "attributes"}:
                raise _Refused("spec.serviceDiscovery.cloudMap", "expected {serviceName, namespaceName, attributes?}")
            attributes = cloud.get("attributes") or {}
            if not isinstance(attributes, dict):
                raise _Refused("spec.serviceDiscovery.cloudMap.attributes", "expected a mapping of key: value")
            # the controller registered its pods with these and asked Cloud Map for them
            attributes = {**attributes, "appmesh.k8s.aws/mesh": mesh, "appmesh.k8s.aws/virtualNode": app_name}
            native["serviceDiscovery"] = {"awsCloudMap": {
                "serviceName": cloud.get("serviceName"), "namespaceName": cloud.get("namespaceName"),
                "attributes": [{"key": k, "value": v} for k, v in sorted(attributes.items())]}}
            paths["spec.serviceDiscovery.awsCloudMap"] = "spec.serviceDiscovery.cloudMap"
    for key in ("backends", "backendDefaults", "logging"):
        if key in spec:
            native[key] = spec[key]  # the API's shapes (virtualService.virtualServiceName, clientPolicy, accessLog)
    return native, paths


def _guessed_listener(routes: list, namespace: str, context: Any) -> tuple | None:
    route = routes[0] if routes and isinstance(routes[0], dict) else {}
    for key in ("http", "tcp", "http2", "grpc"):  # the controller's order
        body = route.get(key)
        if isinstance(body, dict):
            action = body.get("action")
            targets = action.get("weightedTargets") if isinstance(action, dict) else None
            target = targets[0] if isinstance(targets, list) and targets else None
            name = target.get("virtualNodeName") if isinstance(target, dict) else None
            node = context.objects.get(("VirtualNode", namespace, name)) if isinstance(name, str) else None
            return node.port_mapping or None if node is not None else None
    return None


def _service(spec: dict, name: str, namespace: str, mesh: str, source: str, envelope: dict, result: Result,
             context: Any) -> None:
    router = spec.get("virtualRouter")
    if router is not None and not isinstance(router, dict):
        raise _Refused("spec.virtualRouter", "expected {name?, listeners}")
    router = router or {}
    _only(router, ("name", "listeners"), "spec.virtualRouter")
    router_name = app_mesh_name("VirtualRouter", (router.get("name") or "").strip() or name, namespace)
    routes = spec.get("routes") or []
    if not isinstance(routes, list):
        raise _Refused("spec.routes", "expected a list")
    converted_routes = [_route(route, i, namespace) for i, route in enumerate(routes)]
    listeners, listeners_path = router.get("listeners"), "spec.virtualRouter.listeners"
    if not listeners:  # as the controller did: the first listener of the first route's first target
        guessed = _guessed_listener(routes, namespace, context)
        if guessed is None:
            raise _Refused(listeners_path, "required: the legacy controller took the router's listener from the first "
                                           "route's first target VirtualNode, and none is loaded with a listener; write it, "
                                           "e.g. listeners: [{portMapping: {port: 8080, protocol: http}}]")
        listeners, listeners_path = [{"portMapping": {"port": guessed[0], "protocol": guessed[1]}}], "spec.routes[0]"
    result.documents.append(Converted(
        {"kind": "VirtualService", "mesh": mesh, "name": name,
         "spec": {"provider": {"virtualRouter": {"virtualRouterName": router_name}}}},
        Origin(source, {**envelope, "spec.provider.virtualRouter": "spec.virtualRouter"})))
    result.documents.append(Converted(
        {"kind": "VirtualRouter", "mesh": mesh, "name": router_name, "spec": {"listeners": listeners}},
        Origin(source, {**envelope, "name": "spec.virtualRouter.name" if router.get("name") else "metadata.name",
                        "spec": "spec.virtualRouter", "spec.listeners": listeners_path})))
    for i, (route_name, route, paths) in enumerate(converted_routes):
        result.documents.append(Converted(
            {"kind": "Route", "mesh": mesh, "virtualRouter": router_name, "name": route_name, "spec": route},
            Origin(source, {**envelope, "name": f"spec.routes[{i}].name", "virtualRouter": "metadata.name",
                            "spec": f"spec.routes[{i}]", **paths})))


def _route(route: Any, index: int, namespace: str) -> tuple[str, dict, dict[str, str]]:
    where = f"spec.routes[{index}]"
    if not isinstance(route, dict):
        raise _Refused(where, "expected a mapping with name and one of http, http2, grpc, tcp")
    _only(route, ("name", "priority", *_ROUTE_TYPES), where)
    name = route.get("name")
    if not isinstance(name, str) or not name:
        raise _Refused(f"{where}.name", "required: a non-empty string")
    types = [key for key in _ROUTE_TYPES if key in route]
    if len(types) != 1:
        raise _Refused(where, "expected exactly one of http, http2, grpc, tcp")
    legacy_type, api_type = types[0], _ROUTE_TYPES[types[0]]
    body = route[legacy_type]
    if not isinstance(body, dict):
        raise _Refused(f"{where}.{legacy_type}", "expected a mapping")
    body = dict(body)
    action = body.get("action")
    targets = action.get("weightedTargets") if isinstance(action, dict) else None
    if not isinstance(targets, list):
        raise _Refused(f"{where}.{legacy_type}.action.weightedTargets", "required: a list of {virtualNodeName, weight}")
    paths = {f"spec.{api_type}": f"{where}.{legacy_type}"}
    native_targets = []
    for j, target in enumerate(targets):
        if not isinstance(target, dict) or not isinstance(target.get("virtualNodeName"), str):
            raise _Refused(f"{where}.{legacy_type}.action.weightedTargets[{j}]", "expected {virtualNodeName, weight}")
        native_targets.append({"virtualNode": app_mesh_name("VirtualNode", target["virtualNodeName"], namespace),
                               "weight": target.get("weight")})
        paths[f"spec.{api_type}.action.weightedTargets[{j}].virtualNode"] = \
            f"{where}.{legacy_type}.action.weightedTargets[{j}].virtualNodeName"
    body["action"] = {**action, "weightedTargets": native_targets}
    retry = body.get("retryPolicy")
    if isinstance(retry, dict) and "perRetryTimeoutMillis" in retry:
        retry = dict(retry)
        retry["perRetryTimeout"] = {"unit": "ms", "value": retry.pop("perRetryTimeoutMillis")}
        body["retryPolicy"] = retry
        paths[f"spec.{api_type}.retryPolicy.perRetryTimeout"] = f"{where}.{legacy_type}.retryPolicy.perRetryTimeoutMillis"
    native: dict[str, Any] = {api_type: body}
    if "priority" in route:
        native["priority"] = route["priority"]
    return app_mesh_name("Route", name, namespace), native, paths
