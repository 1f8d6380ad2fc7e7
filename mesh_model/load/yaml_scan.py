"""Parsing YAML and JSON text into documents, within the limits of one load.

YAML is first scanned as an event stream (``_scan_yaml``) so that hostile input (alias
bombs, deep nesting, huge strings, floods of documents) is refused at a cost bounded by the
limits, before anything is built; then it is loaded with ``StrictLoader`` (plain data only,
duplicate keys and oversized integers refused). JSON, which has no event stream, is checked
while walking the parsed values. Every string and key is also checked for what no Envoy
config can carry (NUL, unpaired surrogates). Problems become ``Issue``s, never exceptions.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from mesh_model.adapters import cloudformation as cfn_adapter
from mesh_model.errors import Issue
from mesh_model.load.files import line_column
from mesh_model.load.input_limits import MAX_INT_DIGITS, Budget, Limits
from mesh_model.load.yaml_plain import plain_document
from mesh_model.spec.pydantic_errors import describe


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



_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG, _MERGE_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:merge"


class StrictLoader(_BaseLoader):  # type: ignore[misc, valid-type]
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


StrictLoader.add_constructor(_INT_TAG, StrictLoader.construct_yaml_int)
cfn_adapter.add_yaml_tags(StrictLoader)  # !Ref, !Sub, !GetAtt... as {Ref: ...}, {Fn::Sub: ...}


def parse_documents(label: str, text: str, issues: list[Issue], budget: Budget,
                    document_starts: list[tuple[int, int]] | None = None) -> tuple[list[Document], bool]:
    """All non-empty documents of one file, and whether the whole file parsed (on a syntax
    error, the documents before it are still returned so their problems are reported).

    ``document_starts`` (YAML only) gets, for every document (empty ones too), the 0-based line where
    it starts and ``budget.nodes`` before its values were counted."""
    if label.endswith(".json"):
        return _parse_json(label, text, issues, budget)
    if not _scan_yaml(label, text, issues, budget, document_starts):
        return [], False
    docs: list[Document] = []
    parsed = False
    loader = None
    node, index = None, 0
    # without escapes (double-quoted strings are the only way to write a NUL or a surrogate)
    # and without such characters in the text, no string of a plain document can hold one
    plain_strings = "\\" not in text and _string_problem(text) is None
    try:
        loader = StrictLoader(text)  # PyYAML's pure-Python reader already checks characters here
        while loader.check_node():
            node = loader.get_node()
            index += 1
            data = plain_document(node)  # mesh files are plain data: built directly
            plain = data is not None
            if not plain:
                data = loader.construct_document(node)
            if data is not None:
                # a plain document's keys are all strings: only its strings could be a problem
                problems = () if plain and plain_strings else tuple(walk(data, budget.limits)[0])
                docs.append(Document(label, index, node.start_mark.line + 1, data, problems))
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


# a document start marker: "---" at the start of a line, then a blank, a line break or the end
_DOCUMENT_START = re.compile("\n(?=---(?:[ \t\r\n\x85\u2028\u2029]|\\Z))")


def split_documents(text: str) -> list[str] | None:
    """A YAML text cut before each ``---`` line, so each piece can be parsed on its own; None
    when that is not safe (directives, ``...`` document ends, a byte order mark).

    A ``---`` at the start of a line always starts a document (it ends a block or plain
    scalar; inside a quoted one it is an error, which parsing the piece before it reports
    as well), and anchors never cross documents: when every piece parses without a
    problem, the pieces' documents are the file's documents. A marker after another line
    break than a newline stays inside its piece (which then holds two documents).
    """
    if "\ufeff" in text or text.startswith(("%", "...")) or "\n%" in text or "\n..." in text:
        return None
    starts = [0] + [m.end() for m in _DOCUMENT_START.finditer(text)]
    starts.append(len(text))
    return [text[a:b] for a, b in zip(starts, starts[1:]) if b > a]


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
    line, column = line_column(text, min(index, len(text)))
    return f"line {line} column {column}"


def _reader_message(err: yaml.reader.ReaderError) -> str:
    character = err.character
    code = character if isinstance(character, int) else (ord(character) if isinstance(character, str) and len(character) == 1 else None)
    shown = f"U+{code:04X}" if code is not None else "character"
    return f"character {shown} is not allowed in YAML ({err.reason}); write it as an escape in a double-quoted string"


_EVENTS = yaml.events


def _scan_yaml(label: str, text: str, issues: list[Issue], budget: Budget, document_starts: list | None = None) -> bool:
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
                if document_starts is not None:
                    document_starts.append((event.start_mark.line, budget.nodes))
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
    ``walk`` reports them at their field path, like YAML's duplicate keys are reported."""

    duplicates: tuple[str, ...] = ()


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    data = _JsonObject(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        data.duplicates = tuple(dict.fromkeys(key for key, _ in pairs if key in seen or seen.add(key)))
    return data


def _parse_json(label: str, text: str, issues: list[Issue], budget: Budget) -> tuple[list[Document], bool]:
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
    return documents_from_data(label, data if isinstance(data, list) else [data], issues, budget)


def documents_from_data(label: str, items: list, issues: list[Issue], budget: Budget, first: int = 1) -> tuple[list[Document], bool]:
    """Already-parsed values (the items of a JSON file, or documents handed over as data) as
    documents numbered from ``first``, with the limits checked while walking each."""
    limits = budget.limits
    budget.documents += len(items)
    if budget.documents > limits.max_documents:
        budget.stopped = True
        issues.append(Issue(label, "", "", f"more than {limits.max_documents:,} documents in all files together (limit per load)"))
        return [], False
    docs = []
    for i, item in enumerate(items, first):
        if item is None:
            continue
        problems, refused = walk(item, limits, budget=budget)
        if refused is not None:
            issues.append(Issue(label, f"document {i}", *refused))
            return docs, False
        docs.append(Document(label, i, 0, item, tuple(problems)))
    return docs, True


def walk(data: Any, limits: Limits, budget: Budget | None = None) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
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
