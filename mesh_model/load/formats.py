"""Other document formats: Kubernetes App Mesh custom resources and CloudFormation
templates, turned into native documents by ``mesh_model.adapters`` and then validated
exactly like hand-written ones.

Problems are reported as said of the document the user wrote: the label names the original
object (``k8s VirtualRouter ns/name``) and field paths are translated back through the
converted document's ``Origin``. Kubernetes references are resolved across all files of a
load, so their identities (``k8s_context``) are collected before any file is converted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh_model import adapters
from mesh_model.adapters import cloudformation as cfn_adapter, k8s as k8s_adapter
from mesh_model.errors import Issue
from mesh_model.load.documents import resource_from_document
from mesh_model.load.input_limits import Budget
from mesh_model.load.parse_cache import ParseCache
from mesh_model.load.yaml_scan import Document, parse_documents
from mesh_model.spec.model import Resource

Origins = dict[tuple[str, str], tuple[str, adapters.Origin]]  # (file, native label) -> (label naming the original, Origin)


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
                parse_cache: ParseCache | None) -> tuple[k8s_adapter.Context, dict[str, Parsed]]:
    """The identities of every Kubernetes App Mesh custom resource of the load (refs, meshes
    and gateways are resolved across files), and the files parsed to find them.
    ``files``: ``(label, text, digest)``, the digest used only with a ``parse_cache``."""
    facts: list = []
    parsed: dict[str, Parsed] = {}
    for label, text, digest in files:
        if adapters.K8S_API_PREFIX not in text:
            continue
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
                      if (f := k8s_adapter.fact(item)) is not None)
        facts.extend(found)
        if parse_cache is not None and not budget.stopped:
            parse_cache.put_facts(label, digest, found)
    return k8s_adapter.Context(facts), parsed


def resources_from_converted(doc: Document, form: str, context: k8s_adapter.Context,
                             issues: list[Issue]) -> tuple[list[Resource], list[tuple[str, str, Any]], bool]:
    """The resources of one Kubernetes (``form`` "k8s") or CloudFormation document, each with
    ``(native label, label naming the original, Origin)``, and whether all converted."""
    converted = _converted(doc, form, context, issues)
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


def _converted(doc: Document, form: str, context: k8s_adapter.Context, issues: list[Issue]) -> _Conversion:
    """The native documents of one Kubernetes or CloudFormation document; problems -> ``issues``."""
    where = _where(doc)
    out = _Conversion([], True)
    try:
        if form == "k8s":
            results = [k8s_adapter.convert(item, context, prefix) for prefix, item in k8s_adapter.objects(doc.data)
                       if adapters.is_app_mesh_object(item)]
        else:
            results = [cfn_adapter.convert(doc.data)]
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


def _resource_from_converted(doc: Document, native: dict, origin: adapters.Origin, issues: list[Issue]) -> Resource | None:
    """Validate a converted document like a native one; its issues name the original object
    and the field path in the original document."""
    before = len(issues)  # (the original document's string problems are reported by _converted)
    resource = resource_from_document(Document(doc.file, doc.index, doc.line, native), issues)
    for i in range(before, len(issues)):
        issue = issues[i]
        known = issue.resource != doc.where
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
