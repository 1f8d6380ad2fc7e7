"""Kubernetes App Mesh custom resources (``appmesh.k8s.aws/v1beta2``) -> native documents
(``appmesh.k8s.aws/v1beta1``, the legacy controller's: :mod:`.k8s_legacy`).

Follows the App Mesh controller (aws-app-mesh-controller-for-k8s):

* App Mesh names: ``spec.awsName`` if set, else ``<name>_<namespace>`` (VirtualNode,
  VirtualRouter, VirtualGateway, GatewayRoute), ``<name>.<namespace>`` (VirtualService),
  ``<name>`` (Mesh). Routes embedded in a VirtualRouter (``spec.routes[]``) become Route
  documents named by their ``name``.
* Refs (``virtualNodeRef``, ``virtualServiceRef``, ``virtualRouterRef``,
  ``virtualGatewayRef``: ``{name, namespace?}``, namespace defaulting to the referring
  object's) name a custom resource that must be among the loaded files; they become that
  object's App Mesh name. ``*ARN`` forms give the name in the ARN (same mesh only).
* The mesh of a namespaced object: ``spec.meshRef.name`` if set (the Mesh resource's
  ``awsName`` when that Mesh is loaded, else the name as written); otherwise the only Mesh
  loaded. (The controller matches namespaces to meshes with label selectors, which need a
  cluster; meshplane has only the files.)
* A GatewayRoute's gateway: ``spec.virtualGatewayRef`` if set; otherwise the only
  VirtualGateway of its mesh in its namespace, else the only one in its mesh. (The
  controller uses the gateways' ``gatewayRouteSelector``/``namespaceSelector``.)
* Fields App Mesh's API does not have are dropped: ``awsName``, ``meshRef``,
  ``podSelector``, ``namespaceSelector``, ``gatewayRouteSelector``, Mesh ``meshOwner``;
  Mesh ``meshServiceDiscovery`` is the API's ``serviceDiscovery``. ``backendGroups`` and
  the ``BackendGroup`` kind are reported as unsupported.
* The controller's Go-type spellings ``certificateARN`` and ``certificateAuthorityARNs`` are
  the API's ``certificateArn`` and ``certificateAuthorityArns`` (both are read).
* An object without ``metadata.namespace`` is in the namespace kubectl would apply it to:
  ``Context.namespace`` (``--namespace``, default ``default``).
* ``${VAR}`` left in an App Mesh object (an un-substituted template) is an error.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from mesh_model.spec import kinds
from mesh_model.adapters import Converted, Origin, Result, k8s_legacy as legacy, placeholder_message, placeholders
from mesh_model.spec.route_types import GATEWAY_ROUTE_TYPES, ROUTE_TYPES

# the controller's Go types spell some fields differently from the App Mesh API
SPELLINGS = {"certificateARN": "certificateArn", "certificateAuthorityARNs": "certificateAuthorityArns"}
KINDS = tuple(kind.name for kind in kinds.CRDS)  # the controller's custom resources
UNSUPPORTED = {"BackendGroup": "BackendGroup is not supported: list the virtual services in each VirtualNode's spec.backends"}
VERSION = "appmesh.k8s.aws/v1beta2"
_UNDERSCORE_NAME = ("VirtualNode", "VirtualRouter", "VirtualGateway", "GatewayRoute")
_ARN = re.compile(r"^arn:[^:]+:appmesh:[^:]*:[^:]*:mesh/([^/]+)/(virtualNode|virtualService|virtualRouter|virtualGateway)/([^/]+)$")
_ARN_SEGMENT = {name: kinds.BY_NAME[name].member for name in ("VirtualNode", "VirtualService", "VirtualRouter", "VirtualGateway")}
_DROPPED = {
    "Mesh": ("awsName", "namespaceSelector", "meshOwner"),
    "VirtualNode": ("awsName", "meshRef", "podSelector", "backendGroups"),
    "VirtualService": ("awsName", "meshRef"),
    "VirtualRouter": ("awsName", "meshRef", "routes"),
    "VirtualGateway": ("awsName", "meshRef", "podSelector", "namespaceSelector", "gatewayRouteSelector"),
    "GatewayRoute": ("awsName", "meshRef", "virtualGatewayRef"),
}


@dataclass(frozen=True, order=True)
class Fact:
    """The identity of one App Mesh custom resource: what other objects need to know of it."""

    kind: str
    namespace: str  # "" for Mesh (cluster-scoped)
    name: str
    aws_name: str  # "" when spec.awsName is not set
    mesh_ref: str  # "" when spec.meshRef.name is not set
    port_mapping: tuple = ()  # v1beta1 VirtualNode: (port, protocol) of its first listener (the legacy router guess)

    @property
    def app_mesh_name(self) -> str:
        if self.aws_name:
            return self.aws_name
        if self.kind == "VirtualService":
            return f"{self.name}.{self.namespace}"
        if self.kind in _UNDERSCORE_NAME:
            return f"{self.name}_{self.namespace}"
        return self.name


DEFAULT_NAMESPACE = "default"  # kubectl's, for an object without metadata.namespace (--namespace)


def fact(data: Any, namespace: str = DEFAULT_NAMESPACE) -> Fact | None:
    """The identity of an App Mesh custom resource (None for anything else or when unusable);
    ``namespace``: the one an object without ``metadata.namespace`` is applied to."""
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    api = data.get("apiVersion")
    metadata, spec = data.get("metadata"), data.get("spec")
    if not (isinstance(api, str) and api.startswith("appmesh.k8s.aws/") and isinstance(metadata, dict)):
        return None
    name, written = metadata.get("name"), metadata.get("namespace")
    if not isinstance(name, str):
        return None
    namespace = "" if data["kind"] == "Mesh" else written if isinstance(written, str) and written else namespace
    spec = spec if isinstance(spec, dict) else {}
    if api == legacy.VERSION:
        return Fact(data["kind"], namespace, name, legacy.app_mesh_name(data["kind"], name, namespace),
                    spec.get("meshName") if isinstance(spec.get("meshName"), str) else "",
                    legacy.first_port_mapping(spec) if data["kind"] == "VirtualNode" else ())
    aws_name, mesh_ref = spec.get("awsName"), spec.get("meshRef")
    mesh_ref = mesh_ref.get("name") if isinstance(mesh_ref, dict) else None
    return Fact(data["kind"], namespace, name,
                aws_name if isinstance(aws_name, str) else "", mesh_ref if isinstance(mesh_ref, str) else "")


class Context:
    """The identities of every App Mesh custom resource loaded (all files together), and
    the namespace of objects that do not say theirs."""

    def __init__(self, facts: list[Fact] | tuple[Fact, ...] = (), namespace: str = DEFAULT_NAMESPACE):
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.facts = tuple(sorted(set(facts)))
        self.objects = {(f.kind, f.namespace, f.name): f for f in self.facts}
        self.meshes = {f.name: f.app_mesh_name for f in self.facts if f.kind == "Mesh"}
        # a file's conversion depends on every identity here: part of its parse-cache key
        self.identity_digest = hashlib.sha256(repr((self.namespace, self.facts)).encode("utf-8", "surrogatepass")).hexdigest()
        self._gateways: dict[str | None, list[Fact]] = {}
        for f in self.facts:
            if f.kind == "VirtualGateway":
                self._gateways.setdefault(self.mesh_of(f.mesh_ref), []).append(f)

    def mesh_of(self, mesh_ref: str) -> str | None:
        """App Mesh mesh name for an object with this meshRef name ("" = none); None if unknown."""
        if mesh_ref:
            return self.meshes.get(mesh_ref, mesh_ref)
        if len(self.meshes) == 1:
            return next(iter(self.meshes.values()))
        return None

    def gateways(self, mesh: str) -> list[Fact]:
        return self._gateways.get(mesh, [])


def source_label(data: dict, namespace_default: str | None = None) -> str:
    """``k8s VirtualNode ns/name`` (as far as the document says; ``namespace``: that of an
    object without ``metadata.namespace``)."""
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    name = name if isinstance(name, str) else "?"
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "?"
    namespace = namespace or (namespace_default if kind in KINDS else None)
    if kind == "Mesh" or not isinstance(namespace, str):
        return f"k8s {kind} {name}"
    return f"k8s {kind} {namespace}/{name}"


def objects(data: Any) -> list[tuple[str, Any]]:
    """The Kubernetes objects of one document as ``(path prefix, object)``: the document
    itself, or the ``items`` of a ``kind: List`` (what ``kubectl get -o yaml`` prints)."""
    if (isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("apiVersion"), str)
            and isinstance(data.get("items"), list)):
        return [(f"items[{i}]", item) for i, item in enumerate(data["items"])]
    return [("", data)]


def convert(data: dict, context: Context, prefix: str = "") -> Result:
    """One App Mesh custom resource -> native documents (never raises on bad input).
    ``prefix``: where the object is in its document (``items[3]`` in a ``kind: List``)."""
    result = _Converter(data, context).run()
    if prefix:
        def moved(path: str) -> str:
            return f"{prefix}.{path}" if path else prefix
        result.problems = [(source, moved(path), message) for source, path, message in result.problems]
        result.documents = [Converted(d.data, Origin(d.origin.source, {k: moved(v) for k, v in d.origin.paths.items()}))
                            for d in result.documents]
    return result


class _Converter:
    def __init__(self, data: dict, context: Context):
        self.data, self.context = data, context
        self.source = source_label(data, context.namespace)
        self.result = Result()
        self.paths: dict[str, str] = {}  # native path -> original path, for the document being built

    def problem(self, path: str, message: str, fatal: bool = True) -> None:
        self.result.problem(self.source, path, message, fatal=fatal)

    def run(self) -> Result:
        data, kind = self.data, self.data.get("kind")
        if isinstance(kind, str) and kind in UNSUPPORTED:
            self.problem("kind", UNSUPPORTED[kind])
            return self.result
        if kind not in KINDS:
            shown = f"'{kind}'" if isinstance(kind, str) else "missing"
            self.problem("kind", f"App Mesh custom resource kind {shown} cannot be converted (known: {', '.join(KINDS)})")
            return self.result
        if data.get("apiVersion") != VERSION and data.get("apiVersion") != legacy.VERSION:
            self.problem("apiVersion", f"only {VERSION} (and the legacy controller's {legacy.VERSION}) is supported, "
                                       f"got '{data.get('apiVersion')}'")
            return self.result
        found = placeholders(data, "")
        for path, variable in found:
            self.problem(path, placeholder_message(variable))
        if found:
            return self.result
        if data.get("apiVersion") == legacy.VERSION:
            return legacy.convert(data, self.context, self.result, source_label(data, self.context.namespace))
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            self.problem("metadata", "required: a mapping with name (and namespace)")
            return self.result
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if not isinstance(name, str) or not name:
            self.problem("metadata.name", "required: a non-empty string")
        if kind != "Mesh" and namespace is not None and (not isinstance(namespace, str) or not namespace):
            self.problem("metadata.namespace", "expected a non-empty string (or leave it out: --namespace, default 'default')")
        if kind != "Mesh" and not namespace:
            namespace = self.context.namespace  # as kubectl applies it: the current namespace
        spec = data.get("spec", {})
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            self.problem("spec", "expected a mapping")
        if not self.result.complete:
            return self.result
        self.namespace = namespace if kind != "Mesh" else ""
        me = fact(data, self.context.namespace)
        assert me is not None
        aws_name = spec.get("awsName")
        if "awsName" in spec and not isinstance(aws_name, str):
            self.problem("spec.awsName", "expected a string")
            return self.result
        name_path = "spec.awsName" if aws_name else "metadata.name"
        spec = _copy({k: v for k, v in spec.items() if k not in _DROPPED[kind]})
        self.respell(spec, "spec")
        if kind == "Mesh":
            if "meshServiceDiscovery" in spec:
                spec["serviceDiscovery"] = spec.pop("meshServiceDiscovery")
                self.paths["spec.serviceDiscovery"] = "spec.meshServiceDiscovery"
            self.emit({"kind": "Mesh", "name": me.app_mesh_name, "spec": spec}, {"name": name_path})
            return self.result
        mesh = self.mesh(spec_raw := data.get("spec") or {})
        if mesh is None:
            return self.result
        self.mesh_name = mesh
        envelope = {"name": name_path}
        mesh_path = "spec.meshRef.name" if isinstance(spec_raw, dict) and "meshRef" in spec_raw else ""
        if mesh_path:
            envelope["mesh"] = mesh_path
        if kind == "VirtualNode":
            groups = spec_raw.get("backendGroups")
            if groups:
                self.problem("spec.backendGroups", UNSUPPORTED["BackendGroup"], fatal=False)
            for i, backend in _items(spec.get("backends")):
                service = backend.get("virtualService") if isinstance(backend, dict) else None
                if isinstance(service, dict):
                    self.ref(service, f"spec.backends[{i}].virtualService", "VirtualService", "virtualServiceName")
        elif kind == "VirtualService":
            provider = spec.get("provider")
            if isinstance(provider, dict):
                for member, target, field in (("virtualNode", "VirtualNode", "virtualNodeName"),
                                              ("virtualRouter", "VirtualRouter", "virtualRouterName")):
                    if isinstance(provider.get(member), dict):
                        self.ref(provider[member], f"spec.provider.{member}", target, field)
        elif kind == "VirtualRouter":
            self.routes(spec_raw, me.app_mesh_name, name_path, mesh, mesh_path)
        elif kind == "GatewayRoute":
            gateway = self.gateway(spec_raw)
            if gateway is None:
                return self.result
            if "virtualGatewayRef" in spec_raw:
                envelope["virtualGateway"] = "spec.virtualGatewayRef"
            for route_type in GATEWAY_ROUTE_TYPES:
                route = spec.get(route_type)
                action = route.get("action") if isinstance(route, dict) else None
                target = action.get("target") if isinstance(action, dict) else None
                service = target.get("virtualService") if isinstance(target, dict) else None
                if isinstance(service, dict):
                    self.ref(service, f"spec.{route_type}.action.target.virtualService", "VirtualService", "virtualServiceName")
            self.emit({"kind": kind, "mesh": mesh, "virtualGateway": gateway, "name": me.app_mesh_name, "spec": spec}, envelope)
            return self.result
        self.emit({"kind": kind, "mesh": mesh, "name": me.app_mesh_name, "spec": spec}, envelope)
        return self.result

    # ------------------------------------------------------------------ pieces

    def respell(self, value: Any, path: str) -> None:
        """The controller's Go-type spellings (``certificateARN``, ``certificateAuthorityARNs``)
        -> the API's, in place; the original paths are kept for errors."""
        if isinstance(value, list):
            for i, item in enumerate(value):
                self.respell(item, f"{path}[{i}]")
            return
        if not isinstance(value, dict):
            return
        for key in list(value):
            if key in SPELLINGS:
                api = SPELLINGS[key]
                if api in value:
                    self.problem(f"{path}.{key}", f"set one of {key}, {api}, not both")
                else:
                    value[api] = value.pop(key)
                    self.paths[f"{path}.{api}"] = f"{path}.{key}"
            self.respell(value.get(SPELLINGS.get(key, key)), f"{path}.{SPELLINGS.get(key, key)}")

    def emit(self, native: dict, envelope: dict[str, str], spec_path: str = "spec") -> None:
        paths = {"spec": spec_path, **envelope, **self.paths}
        self.result.documents.append(Converted(native, Origin(self.source, paths)))
        self.paths = {}

    def mesh(self, spec: Any) -> str | None:
        ref = spec.get("meshRef") if isinstance(spec, dict) else None
        if ref is not None:
            name = ref.get("name") if isinstance(ref, dict) else None
            if not isinstance(name, str) or not name:
                self.problem("spec.meshRef.name", "required: the name of the Mesh resource")
                return None
            return self.context.mesh_of(name)
        mesh = self.context.mesh_of("")
        if mesh is None:
            meshes = sorted(self.context.meshes)
            if not meshes:
                self.problem("spec.meshRef", "no Mesh resource is loaded: load the file that defines it, or set "
                                             "spec.meshRef.name (meshplane uses spec.meshRef or the only Mesh loaded, "
                                             "not namespace selectors)")
            else:
                self.problem("spec.meshRef", f"{len(meshes)} Mesh resources are loaded ({', '.join(meshes)}): set "
                                             "spec.meshRef.name to say which one this object belongs to "
                                             "(meshplane does not evaluate namespace selectors)")
        return mesh

    def ref(self, holder: dict, path: str, kind: str, field: str, base: str = "") -> str | None:
        """Replace ``<kind>Ref``/``<kind>ARN`` in ``holder`` by ``field`` = the App Mesh name.

        ``path`` is the holder's path in the original document (``base`` its native path
        when it differs, e.g. inside a route)."""
        lower = kind[0].lower() + kind[1:]
        ref_key, arn_key = f"{lower}Ref", f"{lower}ARN"
        native = f"{base or path}.{field}"
        has_ref, has_arn = ref_key in holder, arn_key in holder
        ref, arn = holder.pop(ref_key, None), holder.pop(arn_key, None)
        if has_ref and has_arn:
            self.problem(path, f"set one of {ref_key}, {arn_key}, not both")
            return None
        if not has_ref and not has_arn:
            if field not in holder:  # the API form written directly is fine too
                self.problem(path, f"required: {ref_key} or {arn_key}")
            return holder.get(field)
        if has_ref:
            self.paths[native] = f"{path}.{ref_key}"
            name = ref.get("name") if isinstance(ref, dict) else None
            namespace = ref.get("namespace", self.namespace) if isinstance(ref, dict) else None
            if not isinstance(name, str) or not isinstance(namespace, str):
                self.problem(f"{path}.{ref_key}", "expected {name, namespace?} with string values")
                return None
            target = self.context.objects.get((kind, namespace, name))
            if target is None:
                self.problem(f"{path}.{ref_key}.name", f"no {kind} '{name}' in namespace '{namespace}' in the loaded files")
                guess = Fact(kind, namespace, name, "", "").app_mesh_name
                holder[field] = guess  # keeps the spec valid: the problem above is the one to report
                return None
            holder[field] = target.app_mesh_name
            return target.app_mesh_name
        self.paths[native] = f"{path}.{arn_key}"
        match = _ARN.match(arn) if isinstance(arn, str) else None
        if match is None or match.group(2) != _ARN_SEGMENT[kind]:
            self.problem(f"{path}.{arn_key}", f"expected an App Mesh {kind} ARN "
                                              f"(arn:aws:appmesh:<region>:<account>:mesh/<mesh>/{_ARN_SEGMENT[kind]}/<name>)")
            return None
        if match.group(1) != self.mesh_name:
            self.problem(f"{path}.{arn_key}", f"names mesh '{match.group(1)}', but this object is in mesh '{self.mesh_name}'")
            return None
        holder[field] = match.group(3)
        return match.group(3)

    def routes(self, spec: dict, router: str, router_path: str, mesh: str, mesh_path: str) -> None:
        routes = spec.get("routes")
        if routes is None:
            return
        if not isinstance(routes, list):
            self.problem("spec.routes", "expected a list")
            return
        own = dict(self.paths)
        self.paths = {}
        seen: dict[str, int] = {}
        for i, raw in enumerate(routes):
            where = f"spec.routes[{i}]"
            if not isinstance(raw, dict):
                self.problem(where, f"expected a mapping with name and one of {', '.join(ROUTE_TYPES)}")
                continue
            name = raw.get("name")
            if not isinstance(name, str) or not name:
                self.problem(f"{where}.name", "required: a non-empty string")
                continue
            if name in seen:
                self.problem(f"{where}.name", f"duplicate route name '{name}' (also spec.routes[{seen[name]}])")
                continue
            seen[name] = i
            route = _copy({k: v for k, v in raw.items() if k != "name"})
            for route_type in WEBHOOK_PATH_RULE:
                match = route[route_type].get("match") if isinstance(route.get(route_type), dict) else None
                if isinstance(match, dict) and "prefix" not in match and "path" not in match:
                    self.problem(f"{where}.{route_type}.match", "exactly one of prefix, path must be set (the App Mesh "
                                 "controller's webhook rule for appmesh.k8s.aws routes; App Mesh's API and native files "
                                 "also take a match on port or headers alone)")
            for route_type in ROUTE_TYPES:
                body = route.get(route_type)
                action = body.get("action") if isinstance(body, dict) else None
                for j, target in _items(action.get("weightedTargets") if isinstance(action, dict) else None):
                    if isinstance(target, dict):
                        self.ref(target, f"{where}.{route_type}.action.weightedTargets[{j}]", "VirtualNode", "virtualNode",
                                 base=f"spec.{route_type}.action.weightedTargets[{j}]")
            envelope = {"name": f"{where}.name", "virtualRouter": router_path}
            if mesh_path:
                envelope["mesh"] = mesh_path
            self.emit({"kind": "Route", "mesh": mesh, "virtualRouter": router, "name": name, "spec": route},
                      envelope, spec_path=where)
        self.paths = own

    def gateway(self, spec: dict) -> str | None:
        if "virtualGatewayRef" in spec:
            holder = {"virtualGatewayRef": spec["virtualGatewayRef"]}
            return self.ref(holder, "spec", "VirtualGateway", "virtualGateway")
        candidates = self.context.gateways(self.mesh_name)
        local = [g for g in candidates if g.namespace == self.namespace]
        chosen = local if local else candidates
        if len(chosen) == 1:
            return chosen[0].app_mesh_name
        if not chosen:
            self.problem("spec.virtualGatewayRef", f"no VirtualGateway of mesh '{self.mesh_name}' is loaded: "
                                                   "load it, or set spec.virtualGatewayRef")
        else:
            names = ", ".join(f"{g.namespace}/{g.name}" for g in chosen)
            self.problem("spec.virtualGatewayRef", f"{len(chosen)} VirtualGateways could own this route ({names}): set "
                                                   "spec.virtualGatewayRef (meshplane does not evaluate gatewayRouteSelector)")
        return None


# route types whose match the controller's webhook requires a prefix or path of (App Mesh's API does not)
WEBHOOK_PATH_RULE = ("httpRoute", "http2Route")


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def _copy(value: Any) -> Any:
    """A deep copy that does not keep YAML alias sharing (each place is edited on its own)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


__all__ = ["Context", "Fact", "convert", "fact", "objects", "source_label"]
