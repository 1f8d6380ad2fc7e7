"""The load pipeline: files, texts or parsed documents -> a validated, immutable ``MeshModel``.

Native format: one resource per YAML document (``---`` separated), many per file::

    kind: Route            # Mesh | VirtualService | VirtualRouter | Route | VirtualNode
                           # | VirtualGateway | GatewayRoute | CloudMapService
    mesh: shop             # not for Mesh / CloudMapService
    virtualRouter: router  # Route only
    virtualGateway: gw     # GatewayRoute only
    namespaceName: ns      # CloudMapService only
    name: main
    spec: {...}            # the App Mesh API spec, camelCase

The steps, one module each: ``files`` (read, within limits) -> ``yaml_scan`` (parse, within
limits) -> ``documents`` (each document -> a ``Resource``) -> ``build`` (checks between
resources, then the model). ``parse_cache`` lets a reload skip the files and documents that did
not change, and check and assemble only what changed (``build.Incremental``).

Kubernetes App Mesh custom resources (``appmesh.k8s.aws/v1beta2``) and CloudFormation
templates (``AWS::AppMesh::*``) are read too: ``mesh_model.adapters`` turns them into native
documents first (other Kubernetes objects in the same files are skipped).

Loading is all-or-nothing: every problem of every file is collected and raised as one
``ModelError``, so a user fixes everything in one pass and a half-valid model never
reaches the compiler (or replaces a good one in the file watcher).
"""
from __future__ import annotations

import bisect
import os
from typing import Any, Mapping, Sequence

from mesh_model import adapters, pacing
from mesh_model.adapters import k8s as k8s_adapter
from mesh_model.errors import Issue, ModelError
from mesh_model.load.build import Incremental, checked_model, clean
from mesh_model.load.documents import resource_from_document
from mesh_model.load.files import read_files, text_from_input
from mesh_model.load.formats import (TERRAFORM_SUFFIX, ImportOptions, Imports, Parsed, format_of, imports_context,
                                     instance_template, k8s_context, merge_identical, resources_from_converted,
                                     terraform_file)
from mesh_model.load.input_limits import DEFAULT_LIMITS, Budget, Limits
from mesh_model.load.parse_cache import (ChunkResult, DocumentCache, DocumentResult, FileResult, ParseCache, chunk_digest,
                                         document_digest)
from mesh_model.load.yaml_scan import documents_from_data, parse_documents, split_documents
from mesh_model.spec.model import MeshModel, Resource


def load_paths(
    paths: Sequence[str | os.PathLike], *, limits: Limits = DEFAULT_LIMITS, parse_cache: ParseCache | None = None,
    parameters: Mapping[str, str] | None = None, variables: Mapping[str, Any] | None = None,
    warnings: list[str] | None = None, **imported: Any,
) -> MeshModel:
    """Load files and folders (recursively: ``*.yaml``, ``*.yml``, ``*.json``, ``*.tf``, sorted by path).

    Raises ``ModelError`` listing every problem found in any file (and only ever
    ``ModelError``, whatever the files contain). ``limits`` bounds sizes and counts.
    ``parse_cache`` (kept by a caller that loads the same files again and again) skips
    re-parsing files whose content did not change.

    ``parameters``: CloudFormation stack parameters (``--parameter-overrides KEY=VALUE``);
    ``variables``: Terraform variables (``-var``/``-var-file``); ``imported``: the other
    fields of ``ImportOptions`` (``stack_name``, ``region``, ``account_id``, ``attributes``).
    Folders also load their ``*.tf`` files (one Terraform module per load). A path
    ``TEMPLATE@Key=Value,...`` that is not a file is one more deployment of the template
    ``TEMPLATE`` with those values (``formats.stack_instance``), named so in its errors.
    ``warnings``: where what is valid but ignored goes (one line each; else it is logged).
    """
    issues: list[Issue] = []
    budget = Budget(limits)
    options = ImportOptions(dict(parameters or {}), dict(variables or {}), **imported)
    try:
        if parse_cache is None:
            return _load(_read(paths, issues, budget, None), issues, budget, None, options, warnings)
        with parse_cache.lock:  # its state follows one load at a time
            texts = _read(paths, issues, budget, parse_cache.decoded)
            return _load(texts, issues, budget, parse_cache, options, warnings)
    except RecursionError:  # last line of defence; the limits should make this unreachable
        raise _too_deep(issues) from None


def _read(paths: Sequence[str | os.PathLike], issues: list[Issue], budget: Budget, decoded) -> list[tuple[str, str]]:
    """``read_files``, with each ``TEMPLATE@Key=Value,...`` path read as its template's text
    under that label."""
    plain, instances = [], []
    for path in paths:
        template = instance_template(path)
        if template is not None:
            instances.append((os.fspath(path), template))
        else:
            plain.append(path)
    texts = list(read_files(plain, issues, budget, decoded))
    for label, file in instances:
        if not budget.stopped:
            texts.extend((label, text) for _, text in read_files([file], issues, budget, decoded))
    return texts


def load_texts(texts: Sequence[tuple[str, str | bytes]], *, limits: Limits = DEFAULT_LIMITS,
               parameters: Mapping[str, str] | None = None, variables: Mapping[str, Any] | None = None,
               warnings: list[str] | None = None, **imported: Any) -> MeshModel:
    """Load ``(file label, text)`` pairs; same rules as :func:`load_paths`.

    A label ending in ``.json`` is parsed as JSON, anything else as YAML. ``bytes`` are
    decoded like file contents (UTF-8, optional BOM).
    """
    issues: list[Issue] = []
    budget = Budget(limits)
    try:
        decoded = []
        for label, text in texts:
            label = label if isinstance(label, str) else str(label)
            checked = text_from_input(label, text, issues, budget)
            if checked is not None:
                decoded.append((label, checked))
            if budget.stopped:
                break
        return _load(decoded, issues, budget, None, ImportOptions(dict(parameters or {}), dict(variables or {}), **imported),
                     warnings)
    except RecursionError:
        raise _too_deep(issues) from None


def load_documents(documents: Sequence[tuple[str, Any]], *, limits: Limits = DEFAULT_LIMITS,
                   cache: DocumentCache | None = None, digests: Sequence[bytes | None] | None = None) -> MeshModel:
    """Build and validate a model from already-parsed native documents ``(label, document)``,
    a document being ``{"kind": ..., "mesh": ..., "name": ..., "spec": {...}}`` as in a file.

    For callers that hold data, not text (an API validating a change): the checks, limits
    and messages are those of a file holding the same documents, the label playing the
    file's part (documents sharing a label are numbered 1, 2... in order). Documents are
    native only: Kubernetes and CloudFormation forms are read from files and texts.

    ``cache`` (kept by a caller that loads nearly the same documents again and again) reuses
    the validated ``Resource`` of every document whose label and content it has seen valid
    before, and the checks between resources redo only what the changed ones touch, so the
    cost follows what changed; the result (model or issues) is the same.
    ``digests`` (with ``cache``): each document's ``parse_cache.document_digest``, worked out
    by a caller that keeps its documents between loads (the store's reload), so unchanged
    documents are not hashed again.
    """
    issues: list[Issue] = []
    budget = Budget(limits)
    used: set[tuple[str, bytes]] = set()
    try:
        resources: list[Resource] = []
        complete = True
        numbers: dict[str, int] = {}
        for position, (label, data) in enumerate(documents):
            pacing.pace()  # every document: one not seen before costs a parse and a validation
            if budget.stopped or len(issues) >= limits.max_issues:
                complete = False
                break
            label = label if isinstance(label, str) else str(label)
            numbers[label] = numbers.get(label, 0) + 1
            if cache is None or data is None:
                digest = None
            else:
                digest = digests[position] if digests is not None else document_digest(data)
            if digest is not None:
                cached = cache.get(label, digest, budget)
                if cached is not None:
                    budget.documents += 1
                    budget.nodes += cached.nodes
                    resources.append(cached.resource)
                    used.add((label, digest))
                    continue
            before_issues, before_nodes = len(issues), budget.nodes
            docs, parsed = documents_from_data(label, [data], issues, budget, first=numbers[label])
            complete = complete and parsed
            for doc in docs:
                resource = resource_from_document(doc, issues)
                if resource is None:
                    complete = False
                else:
                    resources.append(resource)
                    if digest is not None and parsed and len(issues) == before_issues and not budget.stopped:
                        cache.put(label, digest, DocumentResult(resource, budget.nodes - before_nodes))
                        used.add((label, digest))
        if cache is None:
            return checked_model(resources, issues, complete=complete, max_issues=limits.max_issues)
        with cache.check_lock:  # the checks of the last load, updated to this one's resources
            if cache.incremental is None:
                cache.incremental = Incremental()
            return checked_model(resources, issues, complete=complete, max_issues=limits.max_issues,
                                 incremental=cache.incremental)
    except RecursionError:
        raise _too_deep(issues) from None
    finally:
        if cache is not None:
            cache.keep_only(used)


def _too_deep(issues: list[Issue]) -> ModelError:
    return ModelError(clean(issues + [Issue("<input>", "", "", "input nested too deeply to process")]))


def _load(texts: list[tuple[str, str]], issues: list[Issue], budget: Budget, parse_cache: ParseCache | None = None,
          options: ImportOptions = ImportOptions(), warnings: list[str] | None = None) -> MeshModel:
    """Parse and validate each file (or reuse its cached result), then cross-check and build."""
    max_issues = budget.limits.max_issues
    complete = not issues  # an unreadable file hides resources too
    resources: list[Resource] = []
    groups: list[tuple[str, tuple[Resource, ...]]] = []  # each file's resources: the unit of "unchanged"
    incremental = None
    if parse_cache is not None:
        if parse_cache.incremental is None:
            parse_cache.incremental = Incremental()
        incremental = parse_cache.incremental
        facts = [parse_cache.text_facts(label, text) for label, text in texts]
        files = [(label, text, digest) for (label, text), (digest, _) in zip(texts, facts)]
        k8s = {label for (label, _), (_, is_k8s) in zip(texts, facts) if is_k8s}
    else:
        files = [(label, text, b"") for label, text in texts]
        k8s = {label for label, text in texts if adapters.K8S_API_PREFIX in text}
    context, parsed = k8s_context(files, issues, budget, parse_cache, k8s, options.namespace)
    imports = imports_context(files, issues, budget, options, warnings)
    complete = complete and not issues
    origins: dict[tuple[str, str], tuple[str, adapters.Origin]] = {}
    for label, text, digest in files:
        if budget.stopped or len(issues) >= max_issues:
            complete = False
            break
        if parse_cache is not None and label in k8s:
            digest += context.identity_digest.encode()  # its conversion depends on the other custom resources
        if label.endswith(TERRAFORM_SUFFIX):  # converted with the whole module: never from the cache
            result = terraform_file(label, imports, budget)
            resources.extend(result.resources)
            groups.append((label, result.resources))
            origins.update(((label, native), (shown, origin)) for native, shown, origin in result.origins)
            issues.extend(result.issues)
            complete = complete and result.complete
            continue
        digest += imports.digest()
        cached = parse_cache.get(label, digest, budget) if parse_cache is not None else None
        if cached is not None:
            budget.documents += cached.documents
            budget.nodes += cached.nodes
            result = cached
        else:
            ahead, result = parsed.pop(label, None), None
            if parse_cache is not None and ahead is None:
                result, ahead = _load_pieces(label, text, budget, parse_cache)
            if result is None:
                result = _load_file(label, text, budget, max_issues - len(issues), context, ahead, imports)
            if parse_cache is not None and not budget.stopped:
                parse_cache.put(label, digest, result)
        resources.extend(result.resources)
        groups.append((label, result.resources))
        origins.update(((label, native), (shown, origin)) for native, shown, origin in result.origins)
        issues.extend(result.issues)
        complete = complete and result.complete
    if parse_cache is not None:
        parse_cache.keep_only({label for label, _ in texts})
    resources, groups = merge_identical(resources, groups, origins)
    return checked_model(resources, issues, complete=complete, max_issues=max_issues, origins=origins, groups=groups,
                         incremental=incremental)


def _load_pieces(label: str, text: str, budget: Budget, cache: ParseCache) -> tuple[FileResult | None, Parsed | None]:
    """A YAML file of native documents, piece by piece (``split_documents``), each piece's
    resources reused from ``cache`` when its text was seen before: an edit of one document
    parses that document only. When most pieces are new (a first load), the file is parsed
    whole (faster) and its pieces kept for the next load.

    Returns the file's result, or None as soon as something is not plainly valid (any issue,
    a converted format): the file is then loaded as a whole (``_load_file``), so every message
    is that of a whole-file load; with what was parsed of it already (the second value),
    else with the budget as it was."""
    if (label.endswith(".json") or "AWS::" in text or adapters.K8S_API_PREFIX in text
            or "AWSTemplateFormatVersion" in text):
        return None, None
    pieces = split_documents(text)
    if pieces is None or len(pieces) < 2:
        return None, None
    digests = [chunk_digest(piece) for piece in pieces]
    distinct = set(digests)
    if 2 * sum(cache.has_chunk(label, digest) for digest in distinct) < len(distinct):
        return _load_whole(label, text, pieces, digests, budget, cache)
    documents, nodes = budget.documents, budget.nodes
    known: dict[bytes, ChunkResult] = {}
    resources: list[Resource] = []
    for piece, digest in zip(pieces, digests):
        entry = cache.get_chunk(label, digest, budget) if digest not in known else None  # a piece given twice: its own resources
        if entry is not None:
            budget.documents += entry.documents
            budget.nodes += entry.nodes
        else:
            entry = _load_piece(label, piece, budget)
            if entry is None:
                budget.documents, budget.nodes, budget.stopped = documents, nodes, False
                cache.put_chunks(label, known, complete=False)
                return None, None
        known.setdefault(digest, entry)
        resources.extend(entry.resources)
    cache.put_chunks(label, known, complete=True)
    return FileResult(tuple(resources), (), True, budget.documents - documents, budget.nodes - nodes), None


def _load_whole(label: str, text: str, pieces: list[str], digests: list[bytes], budget: Budget,
                cache: ParseCache) -> tuple[FileResult | None, Parsed | None]:
    """``_load_pieces`` for a file whose pieces are mostly new: one parse of the whole text,
    then each piece's documents (by the line they start on) kept as that piece's result."""
    issues: list[Issue] = []
    documents, nodes = budget.documents, budget.nodes
    starts: list[tuple[int, int]] = []
    docs, complete = parse_documents(label, text, issues, budget, starts)
    parsed = Parsed(docs, complete, tuple(issues), budget.documents - documents, budget.nodes - nodes)
    if (issues or not complete or budget.stopped or len(starts) != budget.documents - documents
            or (docs and docs[-1].index > len(starts))):
        return None, parsed
    found: dict[int, Resource] = {}  # document number -> its resource
    for doc in docs:
        resource = _native_resource(doc)
        if resource is False:
            return None, parsed
        if resource is not None:
            found[doc.index] = resource
    first_lines, line = [], 0
    for piece in pieces:
        first_lines.append(line)
        line += piece.count("\n")
    chunks: list[tuple[list[Resource], list[int]]] = [([], [0, 0]) for _ in pieces]  # resources, [documents, nodes]
    for number, (start_line, nodes_before) in enumerate(starts, 1):
        piece_resources, counts = chunks[bisect.bisect_right(first_lines, start_line) - 1]
        counts[0] += 1
        counts[1] += (starts[number][1] if number < len(starts) else budget.nodes) - nodes_before
        if number in found:
            piece_resources.append(found[number])
    known: dict[bytes, ChunkResult] = {}
    for digest, (piece_resources, (piece_documents, piece_nodes)) in zip(digests, chunks):
        known.setdefault(digest, ChunkResult(tuple(piece_resources), piece_documents, piece_nodes))
    cache.put_chunks(label, known, complete=True)
    resources = tuple(found[number] for number in sorted(found))
    return FileResult(resources, (), True, budget.documents - documents, budget.nodes - nodes), None


def _native_resource(doc) -> Resource | None | bool:
    """The resource of a document that is native and valid without any issue; None for a
    document a load skips (another Kubernetes object); False for anything else."""
    if doc.problems:
        return False
    form = format_of(doc.data)
    if form == "k8s-other":
        return None  # as in a whole-file load
    if form is not None:
        return False
    issues: list[Issue] = []
    resource = resource_from_document(doc, issues)
    return False if resource is None or issues else resource


def _load_piece(label: str, piece: str, budget: Budget) -> ChunkResult | None:
    """The resources of one piece of a file, or None unless every document in it is a native
    one that validates on its own without any issue."""
    issues: list[Issue] = []
    documents, nodes = budget.documents, budget.nodes
    docs, complete = parse_documents(label, piece, issues, budget)
    if issues or not complete or budget.stopped:
        return None
    resources = []
    for doc in docs:
        resource = _native_resource(doc)
        if resource is False:
            return None
        if resource is not None:
            resources.append(resource)
    return ChunkResult(tuple(resources), budget.documents - documents, budget.nodes - nodes)


def _load_file(label: str, text: str, budget: Budget, room: int,
               context: k8s_adapter.Context | None = None, parsed: Parsed | None = None,
               imports: Imports | None = None) -> FileResult:
    """Parse one file (unless ``parsed`` ahead) and validate each of its documents on its own
    (no cross-file checks). Kubernetes and CloudFormation documents go through their adapter."""
    issues: list[Issue] = []
    documents, nodes = budget.documents, budget.nodes
    resources: list[Resource] = []
    origins: list[tuple[str, str, adapters.Origin]] = []
    if parsed is not None:
        docs, complete = parsed.docs, parsed.complete
        issues.extend(parsed.issues)
        documents, nodes = documents - parsed.documents, nodes - parsed.nodes
    else:
        docs, complete = parse_documents(label, text, issues, budget)
    for doc in docs:
        if len(issues) >= room:
            complete = False
            break
        form = format_of(doc.data)
        if form == "k8s-other":
            continue  # Namespace, Deployment, Service...: part of real manifests, nothing for the mesh
        if form is not None:
            converted, converted_origins, converted_complete = resources_from_converted(
                doc, form, context or k8s_adapter.Context(), issues, imports)
            resources.extend(converted)
            origins.extend(converted_origins)
            complete = complete and converted_complete
            continue
        resource = resource_from_document(doc, issues)
        if resource is not None:
            resources.append(resource)
        else:
            complete = False
    return FileResult(tuple(resources), tuple(issues), complete, budget.documents - documents, budget.nodes - nodes,
                      tuple(origins))
