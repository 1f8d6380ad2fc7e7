"""Other document formats: Kubernetes App Mesh custom resources, CloudFormation templates,
``aws appmesh describe-*``/``list-*`` output, Terraform ``.tf`` files and ``terraform show
-json`` output, turned into native documents by ``mesh_model.adapters`` and then validated
exactly like hand-written ones.

Problems are reported as said of the document the user wrote: the label names the original
object (``k8s VirtualRouter ns/name``) and field paths are translated back through the
converted document's ``Origin``. Kubernetes references are resolved across all files of a
load, so their identities (``k8s_context``) are collected before any file is converted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mesh_model import adapters
from mesh_model.adapters import cloudformation as cfn_adapter, describe as describe_adapter, k8s as k8s_adapter
from mesh_model.adapters import terraform as tf_adapter
from mesh_model.errors import Issue
from mesh_model.load.documents import resource_from_document
from mesh_model.load.input_limits import Budget
from mesh_model.load.parse_cache import FileResult, ParseCache
from mesh_model.load.yaml_scan import Document, parse_documents
from mesh_model.spec.model import Resource

Origins = dict[tuple[str, str], tuple[str, adapters.Origin]]  # (file, native label) -> (label naming the original, Origin)


TERRAFORM_SUFFIX = ".tf"


log = logging.getLogger("meshplane.load")


@dataclass(frozen=True)
class ImportOptions:
    """Values the original formats take from outside their files: CloudFormation stack
    parameters (``--parameter-overrides KEY=VALUE``; names no loaded template declares are
    ignored with a warning, as ``aws cloudformation deploy`` ignores them), pseudo parameters
    (``--stack-name``, ``--region``, ``--account-id``), attributes known only after deploy
    (``--resource-attribute LogicalId.Attr=VALUE``), Terraform variables (``-var``,
    ``-var-file``), and the namespace of Kubernetes objects that do not say theirs
    (``--namespace``, as kubectl's: ``default``). A file label ``TEMPLATE@Key=Value,...`` is one more deployment of that
    template, with these values for it (:func:`stack_instance`)."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    stack_name: str | None = None
    region: str | None = None
    account_id: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    namespace: str = k8s_adapter.DEFAULT_NAMESPACE  # of Kubernetes objects without metadata.namespace (--namespace)

    def digest(self) -> bytes:
        """Part of the parse-cache key of every file when any value is given."""
        parts = [sorted(self.parameters.items()), sorted(self.variables.items()), self.stack_name, self.region,
                 self.account_id, sorted(self.attributes.items()), self.namespace]
        if parts == [[], [], None, None, None, [], k8s_adapter.DEFAULT_NAMESPACE]:
            return b""
        text = json.dumps(parts, default=repr)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


NO_OPTIONS = ImportOptions()
_INSTANCE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]*=")
PSEUDO_KEYS = ("AWS::StackName", "AWS::Region", "AWS::AccountId")


def stack_instance(label: str) -> tuple[str, dict[str, str]] | None:
    """``stack.yaml@Key=Value,Key2=Value2`` -> ``("stack.yaml", {"Key": "Value", ...})``: one
    deployment of a template with its own parameters (``AWS::StackName=``, ``AWS::Region=``,
    ``AWS::AccountId=`` for its pseudo parameters, ``LogicalId.Attr=`` for its
    ``--resource-attribute`` values; a backslash before a comma keeps it in the value). None for any other label."""
    start = 0
    while (at := label.find("@", start)) > 0:
        rest = label[at + 1:]
        if _INSTANCE_KEY.match(rest):
            values: dict[str, str] = {}
            for item in re.split(r"(?<!\\),", rest):
                key, sep, value = item.partition("=")
                if not sep or not key:
                    return None
                values[key] = value.replace("\\,", ",")
            return label[:at], values
        start = at + 1
    return None


def instance_template(path: Any) -> str | None:
    """The template file behind a ``TEMPLATE@Key=Value,...`` path that is no file itself (and
    whose template is); None for any other path."""
    import os

    text = os.fspath(path)
    found = stack_instance(text) if not os.path.exists(text) else None
    return found[0] if found is not None and os.path.isfile(found[0]) else None


def watched_paths(paths: Sequence[Any]) -> list[str]:
    """The paths a watcher of a load of ``paths`` must watch: each ``TEMPLATE@Key=Value,...``
    instance that is not a file itself as its template file (``model_files`` and the watcher
    would see a missing path)."""
    import os

    out: list[str] = []
    for path in paths:
        template = instance_template(path) or os.fspath(path)
        if template not in out:
            out.append(template)
    return out


@dataclass
class Imports:
    """What converting one load's files needs beyond each file: the Terraform module of all
    its ``.tf`` files, the values of ``ImportOptions``, and the CloudFormation exports of all
    its templates."""

    options: ImportOptions = NO_OPTIONS
    terraform: tf_adapter.Module = field(default_factory=tf_adapter.Module)
    exports: cfn_adapter.Exports | None = None
    exporters: str = ""  # what the exports were read from (part of every CloudFormation file's cache key)

    def stack(self, label: str) -> cfn_adapter.Stack:
        """The stack a CloudFormation file's templates are deployed as: the options, and for a
        ``TEMPLATE@Key=Value,...`` label that instance's values on top."""
        options = self.options
        parameters = dict(options.parameters)
        pseudo = {key: value for key, value in zip(PSEUDO_KEYS, (options.stack_name, options.region, options.account_id))
                  if value}
        attributes = dict(options.attributes)
        instance = stack_instance(label)
        for key, value in (instance[1] if instance else {}).items():
            if key.startswith("AWS::"):
                pseudo[key] = value
            elif "." in key:
                attributes[key] = value
            else:
                parameters[key] = value
        return cfn_adapter.Stack(parameters, pseudo, attributes, self.exports.value if self.exports else None)

    def digest(self) -> bytes:
        """Part of the parse-cache key of every file."""
        base = self.options.digest()
        if not self.exporters:
            return base
        return base + hashlib.sha256(self.exporters.encode("utf-8", "surrogatepass")).digest()


def format_of(data: Any) -> str | None:
    """``adapters.format_of``, plus ``"describe"`` (aws appmesh describe-*/list-* output) and
    ``"terraform-show"`` (terraform show -json output)."""
    if describe_adapter.form_of(data) is not None:
        return "describe"
    if tf_adapter.is_show_output(data):
        return "terraform-show"
    return adapters.format_of(data)


def imports_context(files: list[tuple[str, str, bytes]], issues: list[Issue], budget: Budget,
                    options: ImportOptions = NO_OPTIONS, warnings: list[str] | None = None) -> Imports:
    """Read every ``.tf`` file of the load into one Terraform module; check that every
    ``-var`` name is declared by a loaded ``variable`` block (an unknown name is an error
    naming it) and every name of a ``TEMPLATE@Key=Value`` instance by its template; warn of
    each ``--parameter-overrides`` name no loaded CloudFormation template declares (ignored,
    as ``aws cloudformation deploy`` ignores it: ``warnings``, else logged); collect the
    exports of all templates when one uses ``Fn::ImportValue``."""
    imports = Imports(options, tf_adapter.Module(given=dict(options.variables)))
    terraform_seen = False
    for label, text, _ in files:
        if not label.endswith(TERRAFORM_SUFFIX):
            continue
        terraform_seen = True
        try:
            imports.terraform.add(label, tf_adapter.parse(text))
        except ValueError as err:
            issues.append(Issue(label, "", "", str(err)))
        except RecursionError:
            issues.append(Issue(label, "", "", "nested too deeply to process"))
    if options.variables:
        if not terraform_seen:
            issues.append(Issue("-var", "", "", f"Terraform variables given ({', '.join(sorted(options.variables))}) "
                                                "but no .tf file is loaded"))
        else:
            for name in imports.terraform.undeclared():
                issues.append(Issue("-var", "", name, f"unknown variable {name}: no variable \"{name}\" block in the "
                                                      "loaded .tf files"))
    instances = {label: found for label, _, _ in files if (found := stack_instance(label)) is not None}
    importing = any("ImportValue" in text for label, text, _ in files if not label.endswith(TERRAFORM_SUFFIX))
    if not (options.parameters or instances or importing):
        return imports
    declared: set[str] = set()
    templates: list[tuple[str, Any]] = []
    for label, text, _ in files:
        if label.endswith(TERRAFORM_SUFFIX) or "Resources" not in text:
            continue
        docs, _ = parse_documents(label, text, [], Budget(budget.limits))  # counted once, by the load itself
        own: set[str] = set()
        for doc in docs:
            if adapters.format_of(doc.data) == "cloudformation":
                own |= cfn_adapter.declared_parameters(doc.data)
                templates.append((label, doc.data))
        declared |= own
        if label in instances:
            for key in instances[label][1]:
                if key.startswith("AWS::") and key not in PSEUDO_KEYS:
                    issues.append(Issue(label, "", key, f"{key} cannot be given (only {', '.join(PSEUDO_KEYS)})"))
                elif not key.startswith("AWS::") and "." not in key and key not in own:
                    known = f" (declared: {', '.join(sorted(own))})" if own else ""
                    issues.append(Issue(label, "", key, f"unknown parameter {key}: the template {instances[label][0]} "
                                                        f"does not declare it{known}"))
    unknown = sorted(name for name in options.parameters if name not in declared)
    if unknown:
        known = f"declared: {', '.join(sorted(declared))}" if declared else "no CloudFormation template is loaded"
        message = (f"--parameter-overrides {', '.join(unknown)} ignored: no loaded CloudFormation template declares "
                   f"{'it' if len(unknown) == 1 else 'them'} ({known})")
        if warnings is None:
            log.warning("%s", message)
        else:
            warnings.append(message)
    if importing:
        imports.exports = cfn_adapter.Exports()
        for label, data in templates:
            imports.exports.add(label, data, imports.stack(label))
        issues.extend(Issue(label, "", path, message) for label, path, message in imports.exports.problems)
        texts = {label: text for label, text, _ in files}
        exporters = sorted({label for label, _, _ in imports.exports.by_name.values()})
        imports.exporters = json.dumps([imports.exports.digest_parts()] + [
            (label, hashlib.sha256(texts[label].encode("utf-8", "surrogatepass")).hexdigest()) for label in exporters])
    return imports


def terraform_file(label: str, imports: Imports, budget: Budget) -> FileResult:
    """The resources of one ``.tf`` file (the module read by ``imports_context``)."""
    issues: list[Issue] = []
    result = imports.terraform.convert_file(label)
    doc = Document(label, 1, 0, None)
    issues.extend(Issue(label, source, path, message) for source, path, message in result.problems)
    resources, origins = [], []
    complete = result.complete
    for converted in result.documents:
        budget.documents += 1
        resource = _resource_from_converted(doc, converted.data, converted.origin, issues, terraform=True)
        if resource is None:
            complete = False
        else:
            resources.append(resource)
            origins.append((resource.label, f"{resource.label} ({converted.origin.source})", converted.origin))
    return FileResult(tuple(resources), tuple(issues), complete, len(result.documents), 0, tuple(origins))


@dataclass(frozen=True)
class Parsed:
    """A file parsed ahead (it holds Kubernetes custom resources, whose conversion needs the
    identities of all of them first)."""

    docs: list
    complete: bool
    issues: tuple[Issue, ...]
    documents: int
    nodes: int


def k8s_context(files: list[tuple[str, str, bytes]], issues: list[Issue], budget: Budget,
                parse_cache: ParseCache | None, k8s: set[str] | None = None,
                namespace: str = k8s_adapter.DEFAULT_NAMESPACE) -> tuple[k8s_adapter.Context, dict[str, Parsed]]:
    """The identities of every Kubernetes App Mesh custom resource of the load (refs, meshes
    and gateways are resolved across files), and the files parsed to find them.
    ``files``: ``(label, text, digest)``, the digest used only with a ``parse_cache``;
    ``k8s``: the labels of the files that hold such resources (found in the texts if None);
    ``namespace``: that of objects without ``metadata.namespace``."""
    facts: list = []
    parsed: dict[str, Parsed] = {}
    for label, text, digest in files:
        if label not in k8s if k8s is not None else adapters.K8S_API_PREFIX not in text:
            continue
        if namespace != k8s_adapter.DEFAULT_NAMESPACE:
            digest += namespace.encode("utf-8", "surrogatepass")
        known = parse_cache.get_facts(label, digest) if parse_cache is not None else None
        if known is not None:
            facts.extend(known)
            continue
        if budget.stopped:
            break
        file_issues: list[Issue] = []
        documents, nodes = budget.documents, budget.nodes
        docs, complete = parse_documents(label, text, file_issues, budget)
        if budget.stopped:  # a per-load limit: the load ends here, with this file's issues
            issues.extend(file_issues)
            break
        parsed[label] = Parsed(docs, complete, tuple(file_issues), budget.documents - documents, budget.nodes - nodes)
        found = tuple(f for doc in docs for _, item in k8s_adapter.objects(doc.data)
                      if (f := k8s_adapter.fact(item, namespace)) is not None)
        facts.extend(found)
        if parse_cache is not None and not budget.stopped:
            parse_cache.put_facts(label, digest, found)
    return k8s_adapter.Context(facts, namespace), parsed


def merge_identical(resources: list, groups: list, origins: Origins) -> tuple[list, list]:
    """The resources of a load with every Kubernetes custom resource that is an identical
    copy of one loaded before it left out (two clusters' manifests holding the same Mesh,
    VirtualService...: one App Mesh resource, as applying both would make). Copies that differ
    are kept: the duplicate check reports them, naming both files."""
    def from_k8s(resource) -> bool:
        found = origins.get((resource.file, resource.label))
        return found is not None and found[1].source.startswith("k8s ")

    first: dict[tuple, Any] = {}
    dropped: set[int] = set()
    for resource in resources:
        key = (resource.kind, resource.mesh, resource.virtualRouter, resource.virtualGateway, resource.namespaceName,
               resource.name)
        if key not in first:
            first[key] = resource
        elif first[key] is not resource and first[key] == resource and from_k8s(resource) and from_k8s(first[key]):
            dropped.add(id(resource))
    if not dropped:
        return resources, groups
    return ([r for r in resources if id(r) not in dropped],
            [(label, group if not any(id(r) in dropped for r in group) else tuple(r for r in group if id(r) not in dropped))
             for label, group in groups])


def resources_from_converted(doc: Document, form: str, context: k8s_adapter.Context,
                             issues: list[Issue], imports: Imports | None = None,
                             ) -> tuple[list[Resource], list[tuple[str, str, Any]], bool]:
    """The resources of one Kubernetes (``form`` "k8s"), CloudFormation, describe-* or
    terraform-show document, each with ``(native label, label naming the original, Origin)``,
    and whether all converted."""
    converted = _converted(doc, form, context, issues, imports or Imports())
    complete = converted.complete
    resources, origins = [], []
    for native, origin in converted.documents:
        resource = _resource_from_converted(doc, native, origin, issues)
        if resource is None:
            complete = False
        else:
            resources.append(resource)
            origins.append((resource.label, _origin_label(resource.label, origin, doc), origin))
    return resources, origins, complete


@dataclass
class _Conversion:
    documents: list  # (native data, Origin)
    complete: bool


def _converted(doc: Document, form: str, context: k8s_adapter.Context, issues: list[Issue],
               imports: Imports) -> _Conversion:
    """The native documents of one converted document; problems -> ``issues``."""
    where = _where(doc)
    out = _Conversion([], True)
    try:
        if form == "k8s":
            results = [k8s_adapter.convert(item, context, prefix) for prefix, item in k8s_adapter.objects(doc.data)
                       if adapters.is_app_mesh_object(item)]
        elif form == "describe":
            results = [describe_adapter.convert(doc.data)]
        elif form == "terraform-show":
            results = [tf_adapter.convert_show(doc.data)]
        else:
            results = [cfn_adapter.convert(doc.data, stack=imports.stack(doc.file))]
    except RecursionError:
        raise
    except Exception as err:  # noqa: BLE001 - the adapters never raise on bad input; if one did, still only a ModelError
        issues.append(Issue(doc.file, doc.where, "", f"cannot convert this document ({type(err).__name__}: {err})"))
        return _Conversion([], False)
    # what reading found in the original (NUL characters, JSON duplicate keys...), at its paths
    issues.extend(Issue(doc.file, doc.where, path, message) for path, message in doc.problems)
    for result in results:
        issues.extend(Issue(doc.file, f"{source} ({where})", path, message) for source, path, message in result.problems)
        out.complete = out.complete and result.complete
        out.documents.extend((converted.data, converted.origin) for converted in result.documents)
    return out


def _resource_from_converted(doc: Document, native: dict, origin: adapters.Origin, issues: list[Issue],
                             terraform: bool = False) -> Resource | None:
    """Validate a converted document like a native one; its issues name the original object
    and the field path in the original document (a ``.tf`` file's: the resource address)."""
    before = len(issues)  # (the original document's string problems are reported by _converted)
    resource = resource_from_document(Document(doc.file, doc.index, doc.line, native), issues)
    for i in range(before, len(issues)):
        issue = issues[i]
        known = issue.resource != doc.where
        if terraform:
            label = f"{issue.resource} ({origin.source})" if known else origin.source
        else:
            label = _origin_label(issue.resource, origin, doc) if known else f"{origin.source} ({_where(doc)})"
        issues[i] = Issue(issue.file, label, origin.translate(issue.path), issue.message)
    return resource


def _where(doc: Document) -> str:
    return f"document {doc.index}, line {doc.line}" if doc.line else f"document {doc.index}"


def _origin_label(native: str, origin: adapters.Origin, doc: Document) -> str:
    return f"{native} ({origin.source}, {_where(doc)})"


def from_origin(issue: Issue, origins: Origins) -> Issue:
    """A cross-file issue about a converted resource, as said of the original object."""
    found = origins.get((issue.file, issue.resource))
    if found is None:
        return issue
    shown, origin = found
    return Issue(issue.file, shown, origin.translate(issue.path), issue.message)
