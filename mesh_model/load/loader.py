"""Read App Mesh resource files/folders into a validated, immutable ``MeshModel``.

Native format: one resource per YAML document (``---`` separated), many per file::

    kind: Route            # Mesh | VirtualService | VirtualRouter | Route | VirtualNode | CloudMapService
    mesh: shop             # not for Mesh / CloudMapService
    virtualRouter: router  # Route only
    namespaceName: ns      # CloudMapService only
    name: main
    spec: {...}            # the App Mesh API spec, camelCase

Kubernetes App Mesh custom resources (``appmesh.k8s.aws/v1beta2``) and CloudFormation
templates (``AWS::AppMesh::*``) are read too: ``mesh_model.adapters`` turns them into native
documents first (other Kubernetes objects in the same files are skipped).

Loading is all-or-nothing: every problem of every file is collected and raised as one
``ModelError``, so a user fixes everything in one pass and a half-valid model never
reaches the compiler (or replaces a good one in the file watcher).
"""
from __future__ import annotations

import json
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import yaml
from pydantic import ValidationError

from mesh_model import adapters
from mesh_model.adapters import cloudformation as cfn_adapter, k8s as k8s_adapter
from mesh_model.errors import Issue, ModelError
from mesh_model.load.input_limits import DEFAULT_LIMITS, MAX_INT_DIGITS, Limits, size_text
from mesh_model.spec.model import KINDS, Mesh, MeshModel, Resource, frozen_map
from mesh_model.spec.shapes import SPEC_BY_KIND
from mesh_model.spec.pydantic_errors import describe, printable, spec_problems
from mesh_model.validate.references import check_references

SUFFIXES = (".yaml", ".yml", ".json")
UNSUPPORTED_KINDS: tuple[str, ...] = ()
ENVELOPE_KEYS = ("kind", "mesh", "virtualRouter", "virtualGateway", "namespaceName", "name", "spec")
# which identity keys each kind takes (name always; spec always allowed)
_IDENTITY = {
    "Mesh": (),
    "VirtualService": ("mesh",),
    "VirtualRouter": ("mesh",),
    "Route": ("mesh", "virtualRouter"),
    "VirtualNode": ("mesh",),
    "CloudMapService": ("namespaceName",),
    "VirtualGateway": ("mesh",),
    "GatewayRoute": ("mesh", "virtualGateway"),
}


@dataclass(frozen=True)
class Document:
    """One parsed YAML/JSON document and where it came from."""

    file: str
    index: int  # 1-based position in the file
    line: int  # 1-based first line (0 when unknown)
    data: Any
    problems: tuple[tuple[str, str], ...] = ()  # (field path, message) of bad strings/keys found while reading

    @property
    def where(self) -> str:
        return f"document {self.index} (line {self.line})" if self.line else f"document {self.index}"


class _Budget:
    """What one load has used so far of its ``Limits``."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0
        self.documents = 0
        self.nodes = 0
        self.stopped = False  # a per-load limit was hit: read nothing more


# ---------------------------------------------------------------------------- public API


class ParseCache:
    """Per-file results of parsing and per-document validation, keyed by the file's content.

    A control plane reloads the whole model on every change; with this, an edit of one file
    re-parses that file only (the other files' ``Resource`` objects are reused as they are,
    which also makes "what changed" an identity check). Cross-file checks always run on the
    whole model. One entry per file label: memory stays proportional to the model.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, "_FileResult"]] = {}
        self._facts: dict[str, tuple[bytes, tuple]] = {}  # Kubernetes custom resource identities per file

    def get_facts(self, label: str, digest: bytes) -> tuple | None:
        entry = self._facts.get(label)
        return entry[1] if entry is not None and entry[0] == digest else None

    def put_facts(self, label: str, digest: bytes, facts: tuple) -> None:
        self._facts[label] = (digest, facts)

    def get(self, label: str, digest: bytes) -> "_FileResult | None":
        entry = self._files.get(label)
        return entry[1] if entry is not None and entry[0] == digest else None

    def put(self, label: str, digest: bytes, result: "_FileResult") -> None:
        self._files[label] = (digest, result)

    def keep_only(self, labels: set[str]) -> None:
        for label in list(self._files):
            if label not in labels:
                del self._files[label]
        for label in list(self._facts):
            if label not in labels:
                del self._facts[label]


@dataclass(frozen=True)
class _FileResult:
    resources: tuple[Resource, ...]
    issues: tuple[Issue, ...]
    complete: bool
    documents: int
    nodes: int
    origins: tuple[tuple[str, str, Any], ...] = ()  # converted documents: (native label, label naming the original, Origin)


@dataclass(frozen=True)
class _Parsed:
    """A file parsed ahead (it holds Kubernetes custom resources, whose conversion needs the
    identities of all of them first)."""

    docs: list
    complete: bool
    issues: tuple[Issue, ...]
    documents: int
    nodes: int


def load_paths(
    paths: Sequence[str | os.PathLike], *, limits: Limits = DEFAULT_LIMITS, parse_cache: ParseCache | None = None
) -> MeshModel:
    """Load files and folders (recursively: ``*.yaml``, ``*.yml``, ``*.json``, sorted by path).

    Raises ``ModelError`` listing every problem found in any file (and only ever
    ``ModelError``, whatever the files contain). ``limits`` bounds sizes and counts.
    ``parse_cache`` (kept by a caller that loads the same files again and again) skips
    re-parsing files whose content did not change.
    """
    issues: list[Issue] = []
    budget = _Budget(limits)
    try:
        texts = list(_read_files(paths, issues, budget))
        return _load(texts, issues, budget, parse_cache)
    except RecursionError:  # last line of defence; the limits should make this unreachable
        raise ModelError(_clean(issues + [Issue("<input>", "", "", "input nested too deeply to process")])) from None


def load_texts(texts: Sequence[tuple[str, str | bytes]], *, limits: Limits = DEFAULT_LIMITS) -> MeshModel:
    """Load ``(file label, text)`` pairs; same rules as :func:`load_paths`.

    A label ending in ``.json`` is parsed as JSON, anything else as YAML. ``bytes`` are
    decoded like file contents (UTF-8, optional BOM).
    """
    issues: list[Issue] = []
    budget = _Budget(limits)
    try:
        decoded = []
        for label, text in texts:
            label = label if isinstance(label, str) else str(label)
            checked = _text_from_input(label, text, issues, budget)
            if checked is not None:
                decoded.append((label, checked))
            if budget.stopped:
                break
        return _load(decoded, issues, budget)
    except RecursionError:
        raise ModelError(_clean(issues + [Issue("<input>", "", "", "input nested too deeply to process")])) from None


def _load(texts: list[tuple[str, str]], issues: list[Issue], budget: _Budget, parse_cache: ParseCache | None = None) -> MeshModel:
    """Parse, validate each document, cross-check, then build (only if nothing failed).

    Cross-file checks (references, duplicates) run only when every document could be
    identified: a file with a syntax error may hide the very resource a reference
    names, and reporting that as "not found" would send the user on a wrong chase.
    """
    max_issues = budget.limits.max_issues
    complete = not issues  # an unreadable file hides resources too
    resources: list[Resource] = []
    context, parsed = _k8s_context(texts, issues, budget, parse_cache)
    origins: dict[tuple[str, str], tuple[str, adapters.Origin]] = {}
    for label, text in texts:
        if budget.stopped or len(issues) >= max_issues:
            complete = False
            break
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() if parse_cache is not None else b""
        if parse_cache is not None and adapters.K8S_API_PREFIX in text:
            digest += context.fingerprint.encode()  # its conversion depends on the other custom resources
        cached = parse_cache.get(label, digest) if parse_cache is not None else None
        if cached is not None and _fits(budget, cached):
            budget.documents += cached.documents
            budget.nodes += cached.nodes
            result = cached
        else:
            result = _load_file(label, text, budget, max_issues - len(issues), context, parsed.pop(label, None))
            if parse_cache is not None and not budget.stopped:
                parse_cache.put(label, digest, result)
        resources.extend(result.resources)
        origins.update(((label, native), (shown, origin)) for native, shown, origin in result.origins)
        issues.extend(result.issues)
        complete = complete and result.complete
    if parse_cache is not None:
        parse_cache.keep_only({label for label, _ in texts})
    if complete:
        issues.extend(_from_origin(issue, origins) for issue in check_references(resources))
    if issues:
        raise ModelError(_clean(issues, max_issues))
    return build_model(resources)


def _fits(budget: _Budget, cached: _FileResult) -> bool:
    """Reuse a cached file only while the load stays within its per-load limits."""
    limits = budget.limits
    return budget.documents + cached.documents <= limits.max_documents and budget.nodes + cached.nodes <= limits.max_nodes


def _load_file(label: str, text: str, budget: _Budget, room: int,
               context: k8s_adapter.Context | None = None, parsed: _Parsed | None = None) -> _FileResult:
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
        docs, complete = _parse_documents(label, text, issues, budget)
    for doc in docs:
        if len(issues) >= room:
            complete = False
            break
        form = adapters.format_of(doc.data)
        if form == "k8s-other":
            continue  # Namespace, Deployment, Service...: part of real manifests, nothing for the mesh
        if form is not None:
            converted = _converted(doc, form, context or k8s_adapter.Context(), issues)
            complete = complete and converted.complete
            for native, origin in converted.documents:
                resource = _resource_from_converted(doc, native, origin, issues)
                if resource is None:
                    complete = False
                else:
                    resources.append(resource)
                    origins.append((resource.label, _origin_label(resource.label, origin, doc), origin))
            continue
        resource = _resource_from_document(doc, issues)
        if resource is not None:
            resources.append(resource)
        elif not (isinstance(doc.data, dict) and doc.data.get("kind") in UNSUPPORTED_KINDS):
            complete = False
    return _FileResult(tuple(resources), tuple(issues), complete, budget.documents - documents, budget.nodes - nodes,
                       tuple(origins))


# ---------------------------------------------------------------------------- other formats (mesh_model.adapters)


def _k8s_context(texts: list[tuple[str, str]], issues: list[Issue], budget: _Budget,
                 parse_cache: ParseCache | None) -> tuple[k8s_adapter.Context, dict[str, _Parsed]]:
    """The identities of every Kubernetes App Mesh custom resource of the load (refs, meshes
    and gateways are resolved across files), and the files parsed to find them."""
    facts: list = []
    parsed: dict[str, _Parsed] = {}
    for label, text in texts:
        if adapters.K8S_API_PREFIX not in text:
            continue
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() if parse_cache is not None else b""
        known = parse_cache.get_facts(label, digest) if parse_cache is not None else None
        if known is not None:
            facts.extend(known)
            continue
        if budget.stopped:
            break
        file_issues: list[Issue] = []
        documents, nodes = budget.documents, budget.nodes
        docs, complete = _parse_documents(label, text, file_issues, budget)
        if budget.stopped:  # a per-load limit: the load ends here, with this file's issues
            issues.extend(file_issues)
            break
        parsed[label] = _Parsed(docs, complete, tuple(file_issues), budget.documents - documents, budget.nodes - nodes)
        found = tuple(f for doc in docs for _, item in k8s_adapter.objects(doc.data)
                      if (f := k8s_adapter.fact(item)) is not None)
        facts.extend(found)
        if parse_cache is not None and not budget.stopped:
            parse_cache.put_facts(label, digest, found)
    return k8s_adapter.Context(facts), parsed


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
    resource = _resource_from_document(Document(doc.file, doc.index, doc.line, native), issues)
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


def _from_origin(issue: Issue, origins: dict[tuple[str, str], tuple[str, adapters.Origin]]) -> Issue:
    """A cross-file issue about a converted resource, as said of the original object."""
    found = origins.get((issue.file, issue.resource))
    if found is None:
        return issue
    shown, origin = found
    return Issue(issue.file, shown, origin.translate(issue.path), issue.message)


def _clean(issues: list[Issue], max_issues: int | None = None) -> list[Issue]:
    """Issues as one printable line each (names, keys and values the user wrote can hold
    newlines, control or bidi characters, lone surrogates...), at most ``max_issues``."""
    cleaned = [Issue(*(printable(part, 1000) for part in (i.file, i.resource, i.path, i.message))) for i in issues]
    if max_issues is not None and len(set(cleaned)) > max_issues:
        cleaned = sorted(set(cleaned))[:max_issues]
        cleaned.append(Issue(cleaned[-1].file, "", "", f"more than {max_issues:,} problems; stopped checking here (fix these first)"))
    return cleaned


# ---------------------------------------------------------------------------- files


def _read_files(paths: Sequence[str | os.PathLike], issues: list[Issue], budget: _Budget) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` for every input file, each real file once."""
    seen: set[str] = set()
    limits = budget.limits
    for path in paths:
        for file in _expand(os.fspath(path), issues, limits):
            real = os.path.realpath(file)
            if real in seen:
                continue
            seen.add(real)
            budget.files += 1
            if budget.files > limits.max_files:
                issues.append(Issue(file, "", "", f"more than {limits.max_files:,} files to load (limit per load); not read"))
                budget.stopped = True
                return
            text = _read_text(file, issues, budget)
            if budget.stopped:
                return
            if text is not None:
                yield file, text


def _expand(path: str, issues: list[Issue], limits: Limits) -> list[str]:
    """A file as is; a folder as its resource files, recursively, sorted by path.

    Names starting with ``.`` are skipped: editor temp files, ``.git``, and the
    ``..data``/``..2024_...`` twins in Kubernetes ConfigMap volume mounts (which would
    otherwise load every resource twice). A sub-folder that cannot be listed is an
    error (silently skipping it would drop its resources from the served model).
    """
    try:
        if os.path.isfile(path):
            return [path]
        if not os.path.isdir(path):
            issues.append(Issue(path, "", "", "no such file or directory"))
            return []
    except (ValueError, OSError) as err:  # e.g. a NUL byte in the path
        issues.append(Issue(path, "", "", f"invalid path: {err}"))
        return []

    def unreadable(err: OSError) -> None:
        issues.append(Issue(err.filename or path, "", "", f"cannot read folder: {err.strerror or err}"))

    found: list[str] = []
    for folder, dirs, files in os.walk(path, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(folder, f) for f in files if f.endswith(SUFFIXES) and not f.startswith(".")]
        if len(found) > limits.max_files:
            break  # _read_files reports the limit
    return sorted(found)


def _read_text(file: str, issues: list[Issue], budget: _Budget) -> str | None:
    """The file's text, or None (with an issue) when it cannot or must not be read.

    Opened non-blocking and checked to be a regular file: a FIFO or device named
    ``*.yaml`` would otherwise hang or never end. Size is checked before and while reading.
    """
    limits = budget.limits
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                issues.append(Issue(file, "", "", "not a regular file"))
                return None
            if info.st_size > limits.max_file_bytes:
                issues.append(Issue(file, "", "", _too_big(info.st_size, limits.max_file_bytes)))
                return None
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as err:
        issues.append(Issue(file, "", "", f"cannot read: {err.strerror or err}"))
        return None
    if len(data) > limits.max_file_bytes:  # grew since fstat
        issues.append(Issue(file, "", "", _too_big(len(data), limits.max_file_bytes)))
        return None
    if not _count_bytes(file, len(data), issues, budget):
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        issues.append(Issue(file, "", "", f"not UTF-8 text (byte {err.start})"))
    return None


def _too_big(size: int, limit: int) -> str:
    return f"file is {size_text(size)}, larger than the limit of {size_text(limit)}"


def _count_bytes(label: str, size: int, issues: list[Issue], budget: _Budget) -> bool:
    limit = budget.limits.max_total_bytes
    budget.bytes += size
    if budget.bytes > limit:
        issues.append(Issue(label, "", "", f"the files add up to more than {size_text(limit)} (limit per load); not read"))
        budget.stopped = True
        return False
    return True


def _text_from_input(label: str, text: Any, issues: list[Issue], budget: _Budget) -> str | None:
    """``load_texts`` input as checked text: same size limits and decoding as files, and
    no unpaired surrogates (not valid Unicode: YAML cannot read it, protobuf cannot send it)."""
    limits = budget.limits
    if isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
        if len(data) > limits.max_file_bytes:
            issues.append(Issue(label, "", "", _too_big(len(data), limits.max_file_bytes)))
            return None
        if not _count_bytes(label, len(data), issues, budget):
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            issues.append(Issue(label, "", "", f"not UTF-8 text (byte {err.start})"))
            return None
    if not isinstance(text, str):
        issues.append(Issue(label, "", "", f"expected text, got {describe(text)}"))
        return None
    if len(text) > limits.max_file_bytes:  # at least one byte per character
        issues.append(Issue(label, "", "", _too_big(len(text.encode("utf-8", "surrogatepass")), limits.max_file_bytes)))
        return None
    size = len(text)
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as err:
            line, column = _line_column(text, err.start)
            issues.append(Issue(label, "", f"line {line} column {column}",
                                f"unpaired surrogate character U+{ord(text[err.start]):04X} (not valid Unicode text)"))
            return None
        if size > limits.max_file_bytes:
            issues.append(Issue(label, "", "", _too_big(size, limits.max_file_bytes)))
            return None
    if not _count_bytes(label, size, issues, budget):
        return None
    return text[1:] if text.startswith("\ufeff") else text


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index``."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


# ---------------------------------------------------------------------------- YAML / JSON


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG, _MERGE_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:merge"


class _StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader (no ``!!python/...`` tags: plain data only) that rejects duplicate
    mapping keys (PyYAML silently keeps the last one, which hides copy-paste mistakes
    like two ``port:`` lines) and integers too long to convert."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML signature
        first_line: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in first_line:
                    problem = f"duplicate key '{key_node.value}' (first at line {first_line[key]})"
                    raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):  # noqa: ANN001
        if len(node.value) > MAX_INT_DIGITS:
            problem = f"integer of {len(node.value):,} characters is too large (limit: {MAX_INT_DIGITS:,})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor(_INT_TAG, _StrictLoader.construct_yaml_int)
cfn_adapter.add_yaml_tags(_StrictLoader)  # !Ref, !Sub, !GetAtt... as {Ref: ...}, {Fn::Sub: ...}


def _parse_documents(label: str, text: str, issues: list[Issue], budget: _Budget) -> tuple[list[Document], bool]:
    """All non-empty documents of one file, and whether the whole file parsed (on a syntax
    error, the documents before it are still returned so their problems are reported)."""
    if label.endswith(".json"):
        return _parse_json(label, text, issues, budget)
    if not _scan_yaml(label, text, issues, budget):
        return [], False
    docs: list[Document] = []
    parsed = False
    loader = None
    node, index = None, 0
    try:
        loader = _StrictLoader(text)  # PyYAML's pure-Python reader already checks characters here
        while loader.check_node():
            node = loader.get_node()
            index += 1
            data = loader.construct_document(node)
            if data is not None:
                problems, _ = _walk(data, budget.limits)
                docs.append(Document(label, index, node.start_mark.line + 1, data, tuple(problems)))
        parsed = True
    except yaml.reader.ReaderError as err:
        issues.append(Issue(label, "", _reader_where(text, err), _reader_message(err)))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "line ?"
        message = _yaml_message(err, text)
        if message.startswith("exceeded maximum nesting depth"):  # libyaml's own limit (1,000)
            message = f"nested deeper than the limit of {budget.limits.max_depth} levels"
        issues.append(Issue(label, "", where, message))
    except yaml.YAMLError as err:
        issues.append(Issue(label, "", "line ?", str(err)))
    except RecursionError:
        issues.append(Issue(label, "", "", f"nested deeper than the limit of {budget.limits.max_depth} levels"))
    except Exception as err:  # noqa: BLE001 - PyYAML's scalar constructors raise ValueError, KeyError...
        # e.g. ``2001-13-45`` (a timestamp with month 13), ``!!int abc``, ``!!bool maybe``
        where = f"document {index} (line {node.start_mark.line + 1})" if node is not None else f"document {index}"
        issues.append(Issue(label, where, "", f"invalid value: {_value_error(err)}"))
    finally:
        if loader is not None:
            loader.dispose()
    return docs, parsed


def _value_error(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"unknown value {err}"
    if isinstance(err, AttributeError):
        return "value does not match its tag"
    return str(err) or type(err).__name__


def _reader_where(text: str, err: yaml.reader.ReaderError) -> str:
    """``line L column C`` of a reader error (libyaml counts UTF-8 bytes, PyYAML characters)."""
    position = err.position if isinstance(err.position, int) else 0
    if err.encoding == "unicode" or _BaseLoader is yaml.SafeLoader:
        index = position
    else:
        index = len(text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore"))
    line, column = _line_column(text, min(index, len(text)))
    return f"line {line} column {column}"


def _reader_message(err: yaml.reader.ReaderError) -> str:
    character = err.character
    code = character if isinstance(character, int) else (ord(character) if isinstance(character, str) and len(character) == 1 else None)
    shown = f"U+{code:04X}" if code is not None else "character"
    return f"character {shown} is not allowed in YAML ({err.reason}); write it as an escape in a double-quoted string"


_EVENTS = yaml.events


def _scan_yaml(label: str, text: str, issues: list[Issue], budget: _Budget) -> bool:
    """Check the limits on the YAML event stream, before anything is built: documents,
    values (aliases expanded: "billion laughs"), nesting depth and string length.

    Streaming keeps the cost of hostile input bounded by the limits, not by the input.
    Returns False (with an issue) when the file must not be loaded; True when it is
    within limits or has a syntax error (which the real parse then reports precisely).
    """
    limits = budget.limits
    try:
        parser = _BaseLoader(text)
    except Exception:  # noqa: BLE001 - e.g. a control character: the parse reports it
        return True
    scalar, alias = _EVENTS.ScalarEvent, _EVENTS.AliasEvent
    starts = (_EVENTS.SequenceStartEvent, _EVENTS.MappingStartEvent)
    ends = (_EVENTS.SequenceEndEvent, _EVENTS.MappingEndEvent)
    document, document_line, nodes, depth, used_alias = 0, 0, 0, 0, False
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, height) of its finished node
    open_anchors: set[str] = set()
    stack: list[list] = []  # open collections: [anchor, values before it, its depth, deepest depth inside]

    def refuse(event: Any, message: str) -> bool:
        mark = event.start_mark
        issues.append(Issue(label, f"document {document} (line {document_line})",
                            f"line {mark.line + 1} column {mark.column + 1}", message))
        return False

    try:
        while parser.check_event():
            event = parser.get_event()
            kind = type(event)
            if kind is scalar:
                count = 1
                if len(event.value) > limits.max_string_length:
                    return refuse(event, f"string of {len(event.value):,} characters is longer than the limit of {limits.max_string_length:,}")
                if event.anchor:
                    anchors[event.anchor] = (1, 0)
            elif kind is alias:
                if event.anchor in open_anchors:
                    return refuse(event, f"alias *{event.anchor} is used inside its own anchor &{event.anchor} (a recursive structure)")
                count, height = anchors.get(event.anchor, (1, 0))
                used_alias = True
                if depth + height > limits.max_depth:
                    return refuse(event, f"nested deeper than the limit of {limits.max_depth} levels (through alias *{event.anchor})")
                if stack:
                    stack[-1][3] = max(stack[-1][3], depth + height)
            elif kind in starts:
                depth += 1
                if depth > limits.max_depth:
                    return refuse(event, f"nested deeper than the limit of {limits.max_depth} levels")
                stack.append([event.anchor, nodes, depth, depth])
                if event.anchor:
                    open_anchors.add(event.anchor)
                count = 1
            elif kind in ends:
                anchor, before, level, deepest = stack.pop()
                if stack:
                    stack[-1][3] = max(stack[-1][3], deepest)
                depth -= 1
                if anchor:
                    anchors[anchor] = (nodes - before, deepest - level + 1)
                    open_anchors.discard(anchor)
                continue
            elif kind is _EVENTS.DocumentStartEvent:
                document += 1
                document_line = event.start_mark.line + 1
                nodes, used_alias = 0, False
                anchors.clear()
                budget.documents += 1
                if budget.documents > limits.max_documents:
                    budget.stopped = True
                    return refuse(event, f"more than {limits.max_documents:,} documents in all files together (limit per load)")
                continue
            else:
                continue
            nodes += count
            budget.nodes += count
            if nodes > limits.max_document_nodes:
                how = " once aliases are expanded (an alias bomb?)" if used_alias else ""
                return refuse(event, f"more than {limits.max_document_nodes:,} values in one document{how} (limit per document)")
            if budget.nodes > limits.max_nodes:
                budget.stopped = True
                return refuse(event, f"more than {limits.max_nodes:,} values in all files together (limit per load)")
    except yaml.YAMLError:
        return True  # the parse reports it, with its usual message
    except Exception:  # noqa: BLE001 - let the parse report whatever this is
        return True
    finally:
        parser.dispose()
    return True


def _yaml_message(err: yaml.MarkedYAMLError, text: str) -> str:
    """The YAML problem, plus where the construct it belongs to started (an unclosed
    ``[`` is reported at the end of the file, far from the real mistake)."""
    mark, context_mark = err.problem_mark, err.context_mark
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        return "tab character found; YAML must be indented with spaces"
    message = err.problem or err.context or "invalid YAML"
    if err.problem and err.context and context_mark is not None and (mark is None or context_mark.line != mark.line):
        message += f" ({err.context} started at line {context_mark.line + 1})"
    return message


def _char_at(text: str, line: int, column: int) -> str:
    start = 0
    for _ in range(line):  # no splitlines(): a 16 MiB file would be copied line by line
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    current = text[start:end if end >= 0 else len(text)]
    return current[column] if column < len(current) else ""


class _InputProblem(ValueError):
    """A JSON file problem found by a parse hook (a huge integer)."""


def _json_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise _InputProblem(f"integer of {len(text):,} characters is too large (limit: {MAX_INT_DIGITS:,})")
    return int(text)


class _JsonObject(dict):
    """A JSON object that remembers its duplicate keys (json keeps the last silently);
    ``_walk`` reports them at their field path, like YAML's duplicate keys are reported."""

    duplicates: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    data = _JsonObject(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        data.duplicates = tuple(dict.fromkeys(key for key, _ in pairs if key in seen or seen.add(key)))
    return data


def _parse_json(label: str, text: str, issues: list[Issue], budget: _Budget) -> tuple[list[Document], bool]:
    """A JSON file holds one resource object or a list of them."""
    limits = budget.limits
    try:
        data = json.loads(text, parse_int=_json_int, object_pairs_hook=_json_object)
    except json.JSONDecodeError as err:
        issues.append(Issue(label, "", f"line {err.lineno} column {err.colno}", err.msg))
        return [], False
    except _InputProblem as err:
        issues.append(Issue(label, "", "", str(err)))
        return [], False
    except RecursionError:
        issues.append(Issue(label, "", "", f"nested deeper than the limit of {limits.max_depth} levels"))
        return [], False
    except ValueError as err:  # anything else json refuses
        issues.append(Issue(label, "", "", f"invalid JSON: {err}"))
        return [], False
    items = data if isinstance(data, list) else [data]
    budget.documents += len(items)
    if budget.documents > limits.max_documents:
        budget.stopped = True
        issues.append(Issue(label, "", "", f"more than {limits.max_documents:,} documents in all files together (limit per load)"))
        return [], False
    docs = []
    for i, item in enumerate(items, 1):
        if item is None:
            continue
        problems, refused = _walk(item, limits, budget=budget)
        if refused is not None:
            issues.append(Issue(label, f"document {i}", *refused))
            return docs, False
        docs.append(Document(label, i, 0, item, tuple(problems)))
    return docs, True


def _walk(data: Any, limits: Limits, budget: _Budget | None = None) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """Problems of the strings and keys of one document, as ``(field path, message)``:
    keys that are not strings, NUL characters and unpaired surrogates (which no Envoy
    config can carry). With a ``budget`` (JSON, which has no event stream to scan) the
    limits are checked too; the second result is then ``(path, message)`` of the first
    limit exceeded, or None. Iterative: depth is limited, Python's stack is not needed.
    """
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    nodes = 0
    while stack:
        value, path, depth = stack.pop()
        if budget is not None:
            nodes += 1
            budget.nodes += 1
            if nodes > limits.max_document_nodes:
                return problems, (path, f"more than {limits.max_document_nodes:,} values in one document (limit per document)")
            if budget.nodes > limits.max_nodes:
                budget.stopped = True
                return problems, (path, f"more than {limits.max_nodes:,} values in all files together (limit per load)")
        if isinstance(value, str):
            if budget is not None and len(value) > limits.max_string_length:
                return problems, (path, f"string of {len(value):,} characters is longer than the limit of {limits.max_string_length:,}")
            problem = _string_problem(value)
            if problem:
                problems.append((path, problem))
            continue
        if isinstance(value, (dict, list, tuple, set, frozenset)) and budget is not None and depth > limits.max_depth:
            return problems, (path, f"nested deeper than the limit of {limits.max_depth} levels")
        if isinstance(value, dict):
            if type(value) is _JsonObject and value.duplicates:
                problems.extend((path, f"duplicate key '{key}'") for key in value.duplicates)
            for key, item in value.items():
                if isinstance(key, str):
                    child = f"{path}.{key}" if path else key
                    if budget is not None and len(key) > limits.max_string_length:
                        return problems, (path, f"field name of {len(key):,} characters is longer than the limit of {limits.max_string_length:,}")
                    problem = _string_problem(key)
                    if problem:
                        problems.append((path, f"field name {problem}"))
                else:
                    problems.append((path, f"field names must be strings, got {describe(key)}"
                                           + (" (quote it)" if isinstance(key, (bool, int, float)) or key is None else "")))
                    child = f"{path}.{describe(key)}"
                stack.append((item, child, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, (set, frozenset)):
            stack.extend((item, path, depth + 1) for item in value)
    return problems, None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\0), which is not allowed"
    if not text.isascii():
        found = _SURROGATE.search(text)
        if found:
            return f"contains an unpaired surrogate U+{ord(found.group()):04X}, which is not valid Unicode"
    return None
# ---------------------------------------------------------------------------- documents -> resources


def _resource_from_document(doc: Document, issues: list[Issue]) -> Resource | None:
    """Validate one document's envelope and spec.

    Returns None when the document has no usable identity (bad kind/name...). When only
    the spec is invalid, returns a Resource with ``spec=None`` so that references to it
    are not reported as dangling (the spec problems are already in ``issues``).
    """
    data = doc.data
    if not isinstance(data, dict):
        issues.append(Issue(doc.file, doc.where, "", f"expected a mapping with kind, name and spec, got {describe(data)}"))
        return None
    kind = _check_kind(doc, data.get("kind"), issues)
    if kind is None:
        _report_problems(doc, doc.where, {"kind"}, issues)
        return None
    before = len(issues)
    identity = _check_identity(doc, kind, data, issues)
    identified = len(issues) == before
    label = _label(kind, identity) if identified else doc.where
    _report_problems(doc, label, {issue.path for issue in issues[before:]}, issues)
    allowed = ("kind", "name") + _IDENTITY[kind] + ("spec",)
    for key in data:
        if isinstance(key, str) and key not in ENVELOPE_KEYS:
            issues.append(Issue(doc.file, label, "", f"unknown field '{key}' (allowed: {', '.join(allowed)})"))
    if any(path == "spec" or path.startswith(("spec.", "spec[")) for path, _ in doc.problems):
        spec, spec_ok = None, False  # already reported; pydantic would only repeat them less clearly
    else:
        spec, spec_ok = _check_spec(doc, kind, label, data.get("spec"), issues)
    if kind in UNSUPPORTED_KINDS:
        issues.append(Issue(doc.file, label, "", f"kind {kind} is not supported yet"))
        return None
    if not identified:
        return None
    return Resource(
        kind=kind,
        name=identity["name"],
        spec=spec if spec_ok else None,
        mesh=identity["name"] if kind == "Mesh" else identity.get("mesh", ""),
        virtualRouter=identity.get("virtualRouter", ""),
        virtualGateway=identity.get("virtualGateway", ""),
        namespaceName=identity.get("namespaceName", ""),
        file=doc.file,
        digest=hashlib.blake2b(spec.__pydantic_serializer__.to_json(spec), digest_size=16).hexdigest() if spec_ok else "",
    )


def _report_problems(doc: Document, label: str, reported: set[str], issues: list[Issue]) -> None:
    """The string/key problems found while reading, except on fields already reported."""
    issues.extend(Issue(doc.file, label, path, message) for path, message in doc.problems if path not in reported)


def _check_kind(doc: Document, kind: Any, issues: list[Issue]) -> str | None:
    known = ", ".join(KINDS)
    if kind is None:
        issues.append(Issue(doc.file, doc.where, "kind", f"required field missing (one of: {known})"))
    elif isinstance(kind, str) and kind in SPEC_BY_KIND:
        return kind
    else:
        shown = f"'{kind}'" if isinstance(kind, str) else describe(kind)
        issues.append(Issue(doc.file, doc.where, "kind", f"unknown kind {shown}; known kinds: {known}"))
    return None


def _check_identity(doc: Document, kind: str, data: dict, issues: list[Issue]) -> dict[str, str]:
    """``name`` plus the identity keys this kind needs (and none it does not take)."""
    identity: dict[str, str] = {}
    wanted = ("name",) + _IDENTITY[kind]
    for key in ("name", "mesh", "virtualRouter", "virtualGateway", "namespaceName"):
        value = data.get(key)
        if key not in wanted:
            if key in data:
                issues.append(Issue(doc.file, doc.where, key, f"not allowed for kind {kind}"))
            continue
        problem = _name_problem(value, 1024 if key == "namespaceName" else 255)
        if not problem and kind == "Mesh" and "@" in value:
            problem = f"must not contain '@': node ids read mesh/<mesh>@<account id>/..., so no Envoy could join this mesh (got '{printable(value)}')"
        if problem:
            issues.append(Issue(doc.file, doc.where, key, problem))
        else:
            identity[key] = value
    return identity


def _name_problem(value: Any, max_length: int) -> str | None:
    """Names become Envoy resource names, stat names and node ids
    (``mesh/<mesh>/virtualNode/<name>``): no ``/``, no whitespace, and no control or
    invisible characters (NUL, bidi overrides such as U+202E, zero-width joiners...,
    which would make two different names look the same in logs and configs). Anything
    else printable is allowed: App Mesh names are 1..255 characters of any kind, and
    unicode letters, combining marks and emoji are fine."""
    if value is None:
        return "required field missing"
    if not isinstance(value, str):
        return f"expected a string, got {describe(value)}"
    if not 1 <= len(value) <= max_length:
        return "must not be empty" if not value else f"must be at most {max_length} characters (got {len(value)})"
    if "/" in value or any(c.isspace() for c in value):
        return f"must not contain '/' or whitespace, got '{printable(value)}'"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return f"must not contain control or invisible characters (U+{ord(bad):04X}), got '{printable(value)}'"
    return None


def _label(kind: str, identity: dict[str, str]) -> str:
    return Resource(kind=kind, name=identity["name"], spec=None, mesh=identity.get("mesh", ""),
                    virtualRouter=identity.get("virtualRouter", ""), virtualGateway=identity.get("virtualGateway", ""),
                    namespaceName=identity.get("namespaceName", "")).label


def _check_spec(doc: Document, kind: str, label: str, raw: Any, issues: list[Issue]) -> tuple[Any, bool]:
    """Validate ``spec`` (absent/null means ``{}``) against the kind's model."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        issues.append(Issue(doc.file, label, "spec", f"expected a mapping, got {describe(raw)}"))
        return None, False
    model = SPEC_BY_KIND[kind]
    try:
        return model.model_validate(raw), True
    except ValidationError as err:
        issues.extend(Issue(doc.file, label, path, message) for path, message in spec_problems(err, model))
        return None, False


# ---------------------------------------------------------------------------- model


def build_model(resources: Sequence[Resource]) -> MeshModel:
    """Index validated resources into the immutable, name-sorted ``MeshModel``.

    Every router gets an entry in ``Mesh.routes`` (empty when it has no routes).
    """
    grouped: dict[tuple[str, str], dict[str, Resource]] = {}  # (kind, mesh) -> name -> resource
    routes: dict[tuple[str, str], dict[str, Resource]] = {}  # (mesh, router) -> name -> route
    gateway_routes: dict[tuple[str, str], dict[str, Resource]] = {}  # (mesh, gateway) -> name -> route
    cloud_map = {}
    for r in resources:
        if r.kind == "CloudMapService":
            cloud_map[(r.namespaceName, r.name)] = r
        elif r.kind == "Route":
            routes.setdefault((r.mesh, r.virtualRouter), {})[r.name] = r
        elif r.kind == "GatewayRoute":
            gateway_routes.setdefault((r.mesh, r.virtualGateway), {})[r.name] = r
        else:
            grouped.setdefault((r.kind, r.mesh), {})[r.name] = r

    def named(kind: str, mesh: str) -> dict[str, Resource]:
        return grouped.get((kind, mesh), {})

    meshes = {}
    for mesh in (r for r in resources if r.kind == "Mesh"):
        name = mesh.name
        routers = named("VirtualRouter", name)
        gateways = named("VirtualGateway", name)
        meshes[name] = Mesh(
            resource=mesh,
            virtual_services=frozen_map(named("VirtualService", name)),
            virtual_routers=frozen_map(routers),
            routes=frozen_map({router: frozen_map(routes.get((name, router), {})) for router in routers}),
            virtual_nodes=frozen_map(named("VirtualNode", name)),
            virtual_gateways=frozen_map(gateways),
            gateway_routes=frozen_map({gw: frozen_map(gateway_routes.get((name, gw), {})) for gw in gateways}),
        )
    return MeshModel(meshes=frozen_map(meshes), cloud_map=frozen_map(cloud_map))
