"""CloudFormation templates (``AWS::AppMesh::*`` resources) -> native documents.

* ``Resources.<LogicalId>`` of type ``AWS::AppMesh::Mesh|VirtualNode|VirtualService|
  VirtualRouter|Route|VirtualGateway|GatewayRoute`` become one native document each; other
  resource types are skipped. ``Properties`` give the names (``MeshName``,
  ``VirtualNodeName``, ``RouteName``...) and ``Spec``; ``Tags`` and ``MeshOwner`` are ignored.
* ``Spec`` keys are PascalCase: each key becomes the API's camelCase (``PortMapping`` ->
  ``portMapping``, all-capitals ``DNS``/``ACM``/``HTTP2`` -> ``dns``/``acm``/``http2``,
  ``AWSCloudMap`` -> ``awsCloudMap``). Values are never changed.
* Intrinsic functions are evaluated inside the template, as CloudFormation would for the
  stack (:class:`Stack`): ``Ref`` to a parameter given in ``parameters``
  (``--parameter-overrides KEY=VALUE``, as ``aws cloudformation deploy`` takes them;
  ``Number`` parameters become numbers, ``CommaDelimitedList``/``List<...>`` lists) or else
  to its ``Default``; the pseudo parameters ``AWS::StackName``, ``AWS::Region``,
  ``AWS::AccountId`` (given with the stack; an error naming the flag when one is needed and not
  given), ``AWS::Partition``/``AWS::URLSuffix`` (from the region), ``AWS::NoValue``;
  ``Fn::GetAtt`` of an attribute given with the stack (``--resource-attribute
  LogicalId.Attr=VALUE``: what is only known after deploy, e.g. ``LoadBalancer.DNSName``),
  else of a property written in the template (any resource: ``CloudMapService.Name``; App Mesh
  resources' name attributes ``Mesh.MeshName``...); ``Fn::Sub`` (with all of these),
  ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``; ``Conditions`` with
  ``Fn::If``, ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition:`` on resources
  (a false one is not created) and outputs; ``Fn::ImportValue`` of an ``Outputs`` entry with
  ``Export: {Name: ...}`` of another template loaded with it (:class:`Exports`). Anything else
  (ARNs, ``Ref`` of a resource...) is an error naming the logical id and property path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mesh_model.adapters import Converted, Origin, Result, join, placeholder_message, placeholders
from mesh_model.spec import kinds

PREFIX = "AWS::AppMesh::"
# type -> (native kind, name property, parent property or "", parent envelope key)
def _type(kind: kinds.Kind) -> tuple[str, str, str]:
    parent = kinds.parent_of(kind)
    return kind.name + "Name", parent.name + "Name" if parent else "", parent.member if parent else ""


TYPES = {kind.name: _type(kind) for kind in kinds.APP_MESH}
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


PSEUDO_FLAGS = {"AWS::StackName": "--stack-name", "AWS::Region": "--region", "AWS::AccountId": "--account-id"}
_NO_VALUE = object()  # Ref AWS::NoValue: the property (or list item) is left out


class ExportError(Exception):
    """``Fn::ImportValue`` of a name no loaded template exports (the message says so)."""


@dataclass(frozen=True)
class Stack:
    """What one deployment of a template takes from outside it.

    ``parameters``: stack parameter values by name (names the template does not declare are
    not used: ``aws cloudformation deploy`` ignores them); ``pseudo``: ``AWS::StackName``,
    ``AWS::Region``, ``AWS::AccountId`` values; ``attributes``: ``LogicalId.Attr`` -> value of
    a ``Fn::GetAtt`` known only after deploy; ``imports``: export name -> value
    (``Fn::ImportValue``; raises ``ExportError``)."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    pseudo: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    imports: Callable[[str], Any] | None = None


def convert(data: dict, parameters: Mapping[str, str] | None = None, stack: Stack | None = None) -> Result:
    """One template -> native documents (never raises on bad input). ``parameters``: stack
    parameter values by name (or all of ``stack``, which wins)."""
    return _Template(data, stack or Stack(parameters=dict(parameters or {}))).run()


class Exports:
    """The ``Outputs`` with ``Export: {Name: ...}`` of the templates loaded together, each
    evaluated in its own stack when a ``Fn::ImportValue`` asks for it."""

    def __init__(self) -> None:
        self.by_name: dict[str, tuple[str, "_Template", str]] = {}  # name -> (label, template, output id)
        self.problems: list[tuple[str, str, str]] = []  # (label, path, message)
        self._resolving: set[str] = set()

    def add(self, label: str, data: Any, stack: Stack) -> None:
        outputs = data.get("Outputs") if isinstance(data, dict) else None
        if not isinstance(outputs, dict):
            return
        template = _Template(data, Stack(stack.parameters, stack.pseudo, stack.attributes, self.value))
        for output_id, output in outputs.items():
            export = output.get("Export") if isinstance(output, dict) else None
            if not isinstance(export, dict) or "Name" not in export:
                continue
            where = f"Outputs.{output_id}"
            try:
                if "Condition" in output and not template.condition(output["Condition"], f"{where}.Condition"):
                    continue
                name = template.resolve(export["Name"], f"{where}.Export.Name")
            except _Unresolved as err:
                self.problems.append((label, err.path, err.message))
                continue
            if not isinstance(name, str) or not name:
                self.problems.append((label, f"{where}.Export.Name", "expected a non-empty string"))
                continue
            if name in self.by_name:
                other = self.by_name[name]
                self.problems.append((label, f"{where}.Export.Name", f"export name '{name}' is exported twice: "
                                                                     f"also by {other[0]} Outputs.{other[2]}"))
                continue
            self.by_name[name] = (label, template, str(output_id))

    def value(self, name: str) -> Any:
        found = self.by_name.get(name)
        if found is None:
            known = ", ".join(sorted(self.by_name)) or "none"
            raise ExportError(f"no CloudFormation template loaded with this one exports '{name}' (exported: {known}); "
                              "load the template that exports it too")
        label, template, output_id = found
        if name in self._resolving:
            raise ExportError(f"export '{name}' depends on itself")
        self._resolving.add(name)
        try:
            return template.resolve(template.data["Outputs"][output_id].get("Value"), f"Outputs.{output_id}.Value")
        except _Unresolved as err:
            raise ExportError(f"export '{name}' of {label} cannot be evaluated ({err.path}: {err.message})") from None
        finally:
            self._resolving.discard(name)

    def digest_parts(self) -> list[str]:
        return sorted(f"{name}={label}.{output_id}" for name, (label, _, output_id) in self.by_name.items())


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
    def __init__(self, data: dict, stack: Stack):
        self.data = data
        self.stack = stack
        self.overrides = stack.parameters
        self.result = Result()
        resources = data.get("Resources")
        self.resources = resources if isinstance(resources, dict) else {}
        parameters = data.get("Parameters")
        self.parameters = parameters if isinstance(parameters, dict) else {}
        conditions = data.get("Conditions")
        self.conditions = conditions if isinstance(conditions, dict) else {}
        mappings = data.get("Mappings")
        self.mappings = mappings if isinstance(mappings, dict) else {}
        self.resolving: set[tuple[str, str]] = set()
        self.condition_values: dict[str, bool] = {}

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
            try:
                if not self.condition(resource["Condition"], f"{base}.Condition"):
                    return  # CloudFormation does not create it
            except _Unresolved as err:
                self.result.problem(source, err.path, err.message)
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
            if value is _NO_VALUE:
                self.result.problem(source, f"{where}.{prop}", "required (it is AWS::NoValue here)")
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
        if spec is _NO_VALUE:
            spec = {}
        if not ok:
            self.result.complete = False
            return
        native["spec"] = _recase(spec, "spec", f"{where}.Spec", paths) if spec is not None else {}
        self.result.documents.append(Converted(native, Origin(source, paths)))

    # ------------------------------------------------------------------ intrinsic functions

    def resolve(self, value: Any, path: str) -> Any:
        """``value`` with every intrinsic function evaluated (raises ``_Unresolved``)."""
        if isinstance(value, list):
            items = [self.resolve(v, join(path, i)) for i, v in enumerate(value)]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            if key == "Ref":
                return self.ref(argument, join(path, key))
            if isinstance(key, str) and key.startswith("Fn::"):
                return self.function(key, argument, join(path, key))
        resolved = {k: self.resolve(v, join(path, k)) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def condition(self, name: Any, path: str) -> bool:
        """The value of the condition ``name`` of ``Conditions``."""
        if not isinstance(name, str):
            raise _Unresolved(path, "expected the name of a condition")
        if name not in self.conditions:
            known = ", ".join(sorted(map(str, self.conditions))) or "none"
            raise _Unresolved(path, f"no condition '{name}' in the template's Conditions (declared: {known})")
        if name in self.condition_values:
            return self.condition_values[name]
        key = ("Conditions", name)
        if key in self.resolving:
            raise _Unresolved(path, f"condition {name} depends on itself")
        self.resolving.add(key)
        try:
            value = self.truth(self.conditions[name], f"Conditions.{name}")
        finally:
            self.resolving.discard(key)
        self.condition_values[name] = value
        return value

    def truth(self, value: Any, path: str) -> bool:
        """A condition expression (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``,
        ``Condition``) -> its value."""
        if isinstance(value, dict) and len(value) == 1:
            (key, argument), = value.items()
            where = join(path, key)
            if key == "Condition":
                return self.condition(argument, where)
            if key == "Fn::Equals":
                if not (isinstance(argument, list) and len(argument) == 2):
                    raise _Unresolved(where, "expected [value, value]")
                left, right = (self.resolve(a, join(where, i)) for i, a in enumerate(argument))
                return _text(left) == _text(right)
            if key in ("Fn::Not", "Fn::And", "Fn::Or"):
                if not isinstance(argument, list) or not argument or (key == "Fn::Not" and len(argument) != 1):
                    raise _Unresolved(where, "expected [condition]" if key == "Fn::Not" else "expected a list of conditions")
                values = [self.truth(a, join(where, i)) for i, a in enumerate(argument)]
                return not values[0] if key == "Fn::Not" else all(values) if key == "Fn::And" else any(values)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _Unresolved(path, "expected a condition: Fn::Equals, Fn::Not, Fn::And, Fn::Or or {Condition: Name}")

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
        if name == "Fn::If":
            if not (isinstance(argument, list) and len(argument) == 3):
                raise _Unresolved(path, "expected [condition name, value if true, value if false]")
            chosen = 1 if self.condition(argument[0], join(path, 0)) else 2
            return self.resolve(argument[chosen], join(path, chosen))
        if name == "Fn::ImportValue":
            export = self.resolve(argument, path)
            if not isinstance(export, str):
                raise _Unresolved(path, "expected the export name (a string)")
            if self.stack.imports is None:
                raise _Unresolved(path, f"Fn::ImportValue {export}: no other template is loaded with this one; load the "
                                        "template that exports it too")
            try:
                return self.stack.imports(export)
            except ExportError as err:
                raise _Unresolved(path, f"Fn::ImportValue {export}: {err}") from None
        if name == "Fn::Select":
            if not (isinstance(argument, list) and len(argument) == 2):
                raise _Unresolved(path, "expected [index, list]")
            index, values = self.resolve(argument[0], join(path, 0)), self.resolve(argument[1], join(path, 1))
            try:
                index = int(index)
            except (TypeError, ValueError):
                raise _Unresolved(path, "expected a number as index") from None
            if not isinstance(values, list) or not 0 <= index < len(values):
                raise _Unresolved(path, f"index {index} is not in the list")
            return values[index]
        if name == "Fn::Split":
            if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str) and argument[0]):
                raise _Unresolved(path, "expected [delimiter, string]")
            text = self.resolve(argument[1], join(path, 1))
            if not isinstance(text, str):
                raise _Unresolved(path, "expected a string to split")
            return text.split(argument[0])
        if name == "Fn::FindInMap":
            if not (isinstance(argument, list) and len(argument) == 3):
                raise _Unresolved(path, "expected [map name, top-level key, second-level key]")
            keys = [self.resolve(a, join(path, i)) for i, a in enumerate(argument)]
            found: Any = self.mappings
            for key in keys:
                if not isinstance(found, dict) or _text(key) not in {_text(k) for k in found}:
                    raise _Unresolved(path, f"Fn::FindInMap: no {'.'.join(map(_text, keys))} in the template's Mappings")
                found = next(v for k, v in found.items() if _text(k) == _text(key))
            return self.resolve(found, path)
        if name == "Fn::Join":
            if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str)):
                raise _Unresolved(path, "expected [delimiter, [values]]")
            values = self.resolve(argument[1], join(path, 1))
            if not isinstance(values, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
                raise _Unresolved(path, "expected a list of strings to join")
            return argument[0].join(str(v) for v in values)
        raise _Unresolved(path, f"intrinsic function {name} is not evaluated by meshplane "
                                "(supported: Ref to a parameter or pseudo parameter, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If, "
                                "Fn::ImportValue, Fn::Select, Fn::Split, Fn::FindInMap)")

    def ref(self, name: Any, path: str) -> Any:
        if not isinstance(name, str):
            raise _Unresolved(path, "expected the name of a parameter")
        if name.startswith("AWS::"):
            return self.pseudo(name, path)
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

    def pseudo(self, name: str, path: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in PSEUDO_FLAGS:
            value = self.stack.pseudo.get(name)
            if not value:
                raise _Unresolved(path, f"the template uses {name}: give it with {PSEUDO_FLAGS[name]} VALUE "
                                        f"(or {name}=VALUE in a TEMPLATE@... stack instance)")
            return value
        region = self.stack.pseudo.get("AWS::Region", "")
        if name == "AWS::Partition":
            return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
        if name == "AWS::URLSuffix":
            return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        raise _Unresolved(path, f"pseudo parameter {name} has no value outside CloudFormation; write the value")

    def get_att(self, logical_id: str, attribute: str, path: str) -> Any:
        given = self.stack.attributes.get(f"{logical_id}.{attribute}")
        if given is not None:
            return given
        resource = self.resources.get(logical_id)
        if not isinstance(resource, dict):
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: no resource '{logical_id}' in the template")
        kind = resource.get("Type")
        properties = resource.get("Properties")
        if not isinstance(properties, dict) or attribute not in properties:
            known = f"{logical_id} does not set {attribute}" if isinstance(properties, dict) or properties is None \
                else f"{logical_id}.Properties is not a mapping"
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: {known}, and its value is known only after "
                                    f"deploy: give it with --resource-attribute {logical_id}.{attribute}=VALUE")
        key = (logical_id, attribute)
        if key in self.resolving:
            raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute} refers to itself")
        self.resolving.add(key)
        target = f"Resources.{logical_id}.Properties.{attribute}"
        try:
            return self.resolve(properties[attribute], target)
        except _Unresolved as err:
            converted = isinstance(kind, str) and kind.startswith(PREFIX)
            if converted and err.path.startswith(f"Resources.{logical_id}.") and not path.startswith(f"Resources.{logical_id}."):
                # reported where it is, with the resource it belongs to; here only the consequence
                raise _Unresolved(path, f"Fn::GetAtt {logical_id}.{attribute}: cannot be evaluated (see {target})") from None
            raise
        finally:
            self.resolving.discard(key)


def _text(value: Any) -> str:
    """How CloudFormation compares values (``Fn::Equals``, map keys): as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
