"""Building plain YAML documents without PyYAML's generic constructor.

Mesh files are plain data: mappings with string keys, lists, strings, decimal integers,
booleans and nulls. For those, PyYAML's constructor (dispatch by tag, generators that make
room for recursive structures, per-node bookkeeping) was ~30 % of loading a 40,000-resource
model. ``plain_document`` builds exactly that subset directly from the composed nodes and
gives up (``None``) on anything else: another tag (floats, timestamps, ``!Ref``...), a merge
key (``<<``), a non-string key, a node reached twice (an alias), a duplicate key, an integer
in another notation or too long to convert. The caller then builds the document with PyYAML
as before, so anything outside the subset, and every error, comes from the one constructor.
Within the subset the result is the one PyYAML builds (``tests/unit/test_yaml_plain.py``
compares both on generated and hand-written documents).
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from mesh_model.load.input_limits import MAX_INT_DIGITS

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_BOOL_VALUES = yaml.constructor.SafeConstructor.bool_values
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)")
_ScalarNode, _MappingNode, _SequenceNode = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode


class _NotPlain(Exception):
    """The document is outside the plain subset: PyYAML builds it."""


def plain_document(node: yaml.Node) -> Any | None:
    """The document of ``node`` if it is plain data (see the module), else ``None``.
    ``None`` is also what an empty document is, so callers build an empty one with PyYAML."""
    try:
        return _build(node, set())
    except _NotPlain:
        return None


def _build(node: yaml.Node, seen: set[int]) -> Any:
    # every node once: a node reached twice is an alias, which PyYAML shares (same object)
    key = id(node)
    if key in seen:
        raise _NotPlain
    seen.add(key)
    tag = node.tag
    cls = type(node)
    if cls is _ScalarNode:
        value = node.value
        if tag == _STR:
            return value
        if tag == _INT:
            if len(value) <= MAX_INT_DIGITS and _DECIMAL.fullmatch(value):
                return int(value)
            raise _NotPlain
        if tag == _BOOL:
            found = _BOOL_VALUES.get(value.lower())
            if found is None:
                raise _NotPlain  # e.g. ``!!bool maybe``: PyYAML's error
            return found
        if tag == _NULL:
            return None
        raise _NotPlain
    if cls is _MappingNode and tag == _MAP:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not _ScalarNode or key_node.tag != _STR or id(key_node) in seen:
                raise _NotPlain  # merge keys, non-string keys, aliased keys
            name = key_node.value
            if name in out:
                raise _NotPlain  # a duplicate key: PyYAML's loader reports it
            seen.add(id(key_node))
            out[name] = _build(value_node, seen)
        return out
    if cls is _SequenceNode and tag == _SEQ:
        return [_build(item, seen) for item in node.value]
    raise _NotPlain
