"""CloudFormation templates (``AWS::AppMesh::*`` resources) -> native documents.

* ``Resources.<LogicalId>`` of type ``AWS::AppMesh::Mesh|VirtualNode|VirtualService|
  VirtualRouter|Route|VirtualGateway|GatewayRoute`` become one native document each; other
  resource types are skipped. ``Properties`` give the names (``MeshName``,
  ``VirtualNodeName``, ``RouteName``...) and ``Spec``; ``Tags`` and ``MeshOwner`` are ignored.
* ``Spec`` keys are PascalCase: each key becomes the API's camelCase (``PortMapping`` ->
  ``portMapping``, all-capitals ``DNS``/``ACM``/``HTTP2`` -> ``dns``/``acm``/``http2``,
  ``AWSCloudMap`` -> ``awsCloudMap``). Values are never changed.
* Intrinsic functions are evaluated inside the template: ``Ref`` to a parameter given in
  ``parameters`` (``--parameter-overrides KEY=VALUE``, as ``aws cloudformation deploy``
  takes them; ``Number`` parameters become numbers, ``CommaDelimitedList``/``List<...>``
  lists) or else to its ``Default``; ``Fn::GetAtt`` of another App Mesh resource's name attributes
  (``Mesh.MeshName``, ``Node.VirtualNodeName``...); ``Fn::Sub`` (with both) and
  ``Fn::Join``. Anything else (pseudo parameters, ARNs, parameters without a default,
  ``Fn::If``...) is an error naming the logical id and property path.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from mesh_model.adapters import Converted, Origin, Result, join, placeholder_message, placeholders

PREFIX = "AWS::AppMesh::"
# type -> (native kind, name property, parent property or "", parent envelope key)
TYPES = {
    "Mesh": ("MeshName", "", ""),
    "VirtualNode": ("VirtualNodeName", "", ""),
    "VirtualService": ("VirtualServiceName", "", ""),
    "VirtualRouter": ("VirtualRouterName", "", ""),
    "Route": ("RouteName", "VirtualRouterName", "virtualRouter"),
    "VirtualGateway": ("VirtualGatewayName", "", ""),
    "GatewayRoute": ("GatewayRouteName", "VirtualGatewayName", "virtualGateway"),
}
_IGNORED_PROPERTIES = ("Tags", "MeshOwner")
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_TAGS = ("Ref", "Condition", "GetAtt", "Sub", "Join", "If", "Select", "Split", "FindInMap", "Base64", "Cidr",
         "ImportValue", "GetAZs", "Equals", "And", "Or", "Not", "Transform", "Length", "ToJsonString")


def add_yaml_tags(loader_class: Any) -> None:
    """Let a PyYAML loader read CloudFormation's short-form tags (``!Ref X``, ``!GetAtt A.B``,
    ``!Sub '...'``...) as their long forms (``{Ref: X}``, ``{Fn::GetAtt: A.B}``...)."""
    import yaml

    def constructor(name: str):
        key = name if name in ("Ref", "Condition") else f"Fn::{name}"

        def construct(loader, node):  # noqa: ANN001 - PyYAML signature
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {key: value}

        return construct

    for name in _TAGS:
        loader_class.add_constructor(f"!{name}", constructor(name))


def camel(key: Any) -> Any:
    """CloudFormation's PascalCase key -> the API's camelCase key."""
    if not isinstance(key, str) or not key[:1].isupper():
        return key
    if not any(c.islower() for c in key):
        return key.lower()  # DNS, ACM, SDS, HTTP2, GRPC, TCP
    run = len(key) - len(key.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    if run == 1:
        return key[0].lower() + key[1:]
    return key[:run - 1].lower() + key[run - 1:]  # AWSCloudMap -> awsCloudMap


def convert(data: dict, parameters: Mapping[str, str] | None = None) -> Result:
    """One template -> native documents (never raises on bad input). ``parameters``: stack
    parameter values by name (names the template does not declare are not used here: the
    loader reports a name no loaded template declares)."""
    return _Template(data, parameters or {}).run()


def declared_parameters(data: Any) -> set[str]:
    """The names under ``Parameters`` of a template."""
    parameters = data.get("Parameters") if isinstance(data, dict) else None
    return {str(k) for k in parameters} if isinstance(parameters, dict) else set()


def parameter_value(parameter: Any, value: str) -> Any:
    """An override's text as ``Ref`` gives it in the template, by the parameter's ``Type``."""
    kind = parameter.get("Type") if isinstance(parameter, dict) else None
    if kind == "Number":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    if isinstance(kind, str) and (kind == "CommaDelimitedList" or kind.startswith("List<")):
        return [item.strip() for item in value.split(",")]
    return value


class _Unresolved(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message


class _Template:
    def __init__(self, data: dict, overrides: Mapping[str, str]):
        self.data = data
        self.overrides = overrides
        self.result = Result()
        resources = data.get("Resources")
        self.resources = resources if isinstance(resources, dict) else {}
        parameters = data.get("Parameters")
        self.parameters = parameters if isinstance(parameters, dict) else {}
        self.resolving: set[tuple[str, str]] = set()

    def run(self) -> Result:
        if not isinstance(self.data.get("Resources"), dict):
            self.result.problem("CloudFormation template", "Resources", "expected a mapping of logical ids to resources")
            return self.result
        for logical_id, resource in self.resources.items():
            if not isinstance(resource, dict):
                continue
            kind = resource.get("Type")
            if not (isinstance(kind, str) and kind.startswith(PREFIX)):
                continue  # not App Mesh: another part of the stack
            self.resource(str(logical_id), kind[len(PREFIX):], resource)
        return self.result

    def resource(self, logical_id: str, kind: str, resource: dict) -> None:
        base = f"Resources.{logical_id}"
        source = f"CloudFormation {logical_id}"
        if kind not in TYPES:
            self.result.problem(source, f"{base}.Type", f"{PREFIX}{kind} cannot be converted (known: "
                                                        f"{', '.join(PREFIX + t for t in TYPES)})")
            return
        if "Condition" in resource:
            self.result.problem(source, f"{base}.Condition", "conditions are not evaluated by meshplane; "
                                                             "remove the condition or the resource")
            return
        properties = resource.get("Properties")
        where = f"{base}.Properties"
        if not isinstance(properties, dict):
            self.result.problem(source, where, "expected a mapping with the resource's names and Spec")
            return
        found = placeholders(properties, where, skip=("Fn::Sub",))
        for path, variable in found:
            self.result.problem(source, path, placeholder_message(variable))
        if found:
            return
        name_property, parent_property, parent_key = TYPES[kind]
        native: dict[str, Any] = {"kind": kind}
        paths: dict[str, str] = {"spec": f"{where}.Spec"}
        wanted = [("name", name_property)] + ([] if kind == "Mesh" else [("mesh", "MeshName")])
        if parent_property:
            wanted.append((parent_key, parent_property))
        ok = True
        for key, prop in wanted:
            paths[key] = f"{where}.{prop}"
            if prop not in properties:
                generated = " (CloudFormation would generate one; meshplane needs it written)" if prop == name_property else ""
                self.result.problem(source, f"{where}.{prop}", f"required{generated}")
                ok = False
                continue
            try:
                value = self.resolve(properties[prop], f"{where}.{prop}")
            except _Unresolved as err:
                self.result.problem(source, err.path, err.message)
                ok = False
                continue
            native[key] = value
        known = {prop for _, prop in wanted} | {"Spec", *_IGNORED_PROPERTIES}
        for prop in properties:
            if prop not in known:
                allowed = ", ".join(sorted(known))
                self.result.problem(source, f"{where}.{prop}", f"unknown property (allowed: {allowed})", fatal=False)
        spec = properties.get("Spec", {})
        try:
            spec = self.resolve(spec, f"{where}.Spec")
        except _Unresolved as err:
            self.result.problem(source, err.path, err.message)
            ok = False
        if not ok:
            self.result.complete = False
            return
        native["spec"] = _recase(spec, "spec", f"{where}.Spec", paths) if spec is not None else {}
        self.result.documents.append(Converted(native, Origin(source, paths)))

    # ------------------------------------------------------------------ intrinsic functions

    def resolve(self, value: Any, path: str) -> Any:
        """``value`` with every intrinsic function evaluated (raises ``_Unresolved``)."""
        if isinstance(value, list):
            return [self.resolve(v, join(path, i)) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(argument, join(path, key))
            if isinstance(key, str) and key.startswith("Fn::"):
                return self.function(key, argument, join(path, key))
        return {k: self.resolve(v, join(path, k)) for k, v in value.items()}

    def function(self, name: str, argument: Any, path: str) -> Any:
        if name == "Fn::GetAtt":
            if isinstance(argument, str) and "." in argument:
                logical_id, attribute = argument.split(".", 1)
            elif isinstance(argument, list) and len(argument) == 2 and all(isinstance(a, str) for a in argument):
                logical_id, attribute = argument
            else:
                raise _Unresolved(path, "expected LogicalId.Attribute or [LogicalId, Attribute]")
            return self.get_att(logical_id, attribute, path)
        if name == "Fn::Sub":
            variables: dict = {}
            if isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], dict):
                argument, variables = argument
            if not isinstance(argument, str):
                raise _Unresolved(path, "expected a string or [string, {variables}]")

            def replace(match: re.Match) -> str:
                inner = match.group(1)
                if inner.startswith("!"):
                    return "${" + inner[1:] + "}"
                if inner in variables:
                    value = self.resolve(variables[inner], join(path, inner))
                elif "." in inner:
                    value = self.get_att(*inner.split(".", 1), path)
                else:
                    value = self.ref(inner, path)
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise _Unresolved(path, f"${{{inner}}} is not a string")
                return str(value)

            return _SUB_VARIABLE.sub(replace, argument)
        if name == "Fn::Join":
            if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str)):
                raise _Unresolved(path, "expected [delimiter, [values]]")
            values = self.resolve(argument[1], join(path, 1))
            if not isinstance(values, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                raise _Unresolved(path, "expected a list of strings to join")
            return argument[0].join(str(v) for v in values)
        raise _Unresolved(path, f"intrinsic function {name} is not evaluated by meshplane "
                                "(supported: Ref to a parameter (--parameter-overrides or its Default), Fn::GetAtt of App Mesh names, Fn::Sub, Fn::Join)")

    def ref(self, name: Any, path: str) -> Any:
        if not isinstance(name, str):
            raise _Unresolved(path, "expected the name of a parameter")
        if name.startswith("AWS::"):
            raise _Unresolved(path, f"pseudo parameter {name} has no value outside CloudFormation; write the value")
        if name in self.parameters:
            parameter = self.parameters[name]
            if name in self.overrides:
                return parameter_value(parameter, self.overrides[name])
            if isinstance(parameter, dict) and "Default" in parameter:
                return parameter["Default"]
            raise _Unresolved(path, f"parameter {name} has no Default: give its value with "
                                    f"--parameter-overrides {name}=VALUE (or add a Default, or write the value)")
        if name in self.resources:
            raise _Unresolved(path, f"Ref {name} is that resource's ARN, not its name; use !GetAtt {name}.<Kind>Name")
        raise _Unresolved(path, f"Ref {name}: no parameter or resource of that name in the template")

    def get_att(self, logical_id: str, attribute: str, path: str) -> Any:
        resource = self.resources.get(logical_id)
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if not (isinstance(kind, str) and kind.startswith(PREFIX) and kind[len(PREFIX):] in TYPES):
            what = "no resource" if resource is None else "not an App Mesh resource"
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: {what} '{logical_id}' in the template")
        name_property, parent_property, _ = TYPES[kind[len(PREFIX):]]
        names = {name_property, parent_property, "MeshName"} - {""}
        if attribute not in names:
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: only the name attributes "
                                    f"({', '.join(sorted(names))}) have a value outside AWS")
        properties = resource.get("Properties")
        if not isinstance(properties, dict) or attribute not in properties:
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: {logical_id} does not set {attribute}")
        key = (logical_id, attribute)
        if key in self.resolving:
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute} refers to itself")
        self.resolving.add(key)
        target = f"Resources.{logical_id}.Properties.{attribute}"
        try:
            return self.resolve(properties[attribute], target)
        except _Unresolved as err:
            if err.path.startswith(f"Resources.{logical_id}.") and not path.startswith(f"Resources.{logical_id}."):
                # reported where it is, with the resource it belongs to; here only the consequence
                raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: cannot be evaluated (see {target})") from None
            raise
        finally:
            self.resolving.discard(key)


def _recase(value: Any, native: str, original: str, paths: dict[str, str]) -> Any:
    """``value`` with every mapping key camelCased; ``paths`` learns native -> original paths."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            new = camel(key)
            child_native, child_original = join(native, new), join(original, key)
            if new != key:
                paths[child_native] = child_original
            out[new] = _recase(item, child_native, child_original, paths)
        return out
    if isinstance(value, list):
        return [_recase(item, join(native, i), join(original, i), paths) for i, item in enumerate(value)]
    return value
