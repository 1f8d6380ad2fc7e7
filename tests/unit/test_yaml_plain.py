"""Plain YAML documents are built without PyYAML's constructor (``load/yaml_plain.py``): the
result must be exactly PyYAML's, for every document, and everything outside the plain subset
(and every error) must still come from PyYAML."""
from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh_model.load import yaml_scan
from mesh_model.load.input_limits import MAX_INT_DIGITS, Budget, Limits
from mesh_model.load.yaml_plain import plain_document
from mesh_model.load.yaml_scan import StrictLoader


def _parse(text: str, *, plain: bool, monkeypatch) -> tuple[list, list]:
    """``parse_documents`` as it runs, or (``plain=False``) with every document built by PyYAML."""
    with monkeypatch.context() as patch:
        if not plain:
            patch.setattr(yaml_scan, "plain_document", lambda node: None)
        issues: list = []
        docs, parsed = yaml_scan.parse_documents("mesh.yaml", text, issues, Budget(Limits()))
    return [(d.index, d.line, d.data, d.problems) for d in docs] + [parsed], [str(i) for i in issues]


def _same(a, b) -> bool:
    """Equal, and of the same types all the way down (``1 == True == 1.0`` in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _plain_data(text: str) -> list:
    """What ``plain_document`` makes of each document of ``text`` (None: handed to PyYAML)."""
    loader = StrictLoader(text)
    try:
        out = []
        while loader.check_node():
            out.append(plain_document(loader.get_node()))
        return out
    finally:
        loader.dispose()


CASES = {
    # plain: built directly
    "mapping": "kind: VirtualNode\nspec:\n  listeners:\n  - portMapping: {port: 8080, protocol: http}\n",
    "scalars": "a: 1\nb: -3\nc: -0\nd: 0\ne: true\nf: no\ng: ~\nh: null\ni: ''\nj: '12'\nk: \"x\"\nl: [1, two, {x: y}]\n",
    "documents": "a: 1\n---\n---\nb: [2]\n...\n---\nc: {}\n",
    "tagged_plain": "a: !!str 12\nb: !!int 12\nc: !!null x\nd: !!bool yes\n",
    # outside the subset: built by PyYAML
    "alias": "base: &b {port: 8080}\nuse: *b\n",
    "merge": "base: &b {port: 8080}\nuse:\n  <<: *b\n  protocol: http\n",
    "non_string_keys": "1: a\non: b\nnull: c\n1.5: d\n",
    "complex_key": "? [a, b]\n: c\n",
    "duplicate": "a: 1\nb: 2\na: 3\n",
    "duplicate_nested": "spec:\n  port: 1\n  port: 2\n",
    # each integer notation alone, so that nothing else in its document hands it to PyYAML
    **{f"int_{i}": f"a: {notation}\n" for i, notation in enumerate(["012", "-012", "0x1F", "1_000", "+5", "1:30", "0b101", "00"])},
    "floats": "a: 1.5\nb: .inf\nc: -.inf\nd: .nan\ne: 1e3\n",
    "timestamp": "a: 2001-12-14\nb: 2001-13-45\n",
    "bad_bool": "a: !!bool maybe\n",
    "bad_int": "a: !!int abc\n",
    "too_long_int": f"a: {'9' * (MAX_INT_DIGITS + 1)}\n",
    "long_int": f"a: {'9' * MAX_INT_DIGITS}\n",
    "cloudformation": "Value: !Ref Mesh\nName: !Sub '${AWS::StackName}-mesh'\nList: !GetAtt [A, B]\n",
    "binary_and_set": "a: !!binary aGVsbG8=\nb: !!set {x, y}\n",
    "escapes": 'a: "nul \\0 here"\nb: "\\x00"\nc: "tab\\t"\nd: plain\\text\ne: "\\u00e9"\n',
    "nul_key": '"k\\0": v\n',
    "recursive": "a: &x [1, *x]\n",  # refused by the scan before anything is built
    "surrogate_escape": 'a: "\\ud800"\n',  # refused by libyaml
    "syntax_error": "a: [1, 2\nb: 3\n",
}

PLAIN = {"mapping", "scalars", "documents", "tagged_plain", "escapes", "nul_key", "long_int"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_parsing_is_the_same_with_and_without_the_plain_builder(name, monkeypatch):
    text = CASES[name]
    fast, fast_issues = _parse(text, plain=True, monkeypatch=monkeypatch)
    slow, slow_issues = _parse(text, plain=False, monkeypatch=monkeypatch)
    assert fast_issues == slow_issues
    assert _same(fast, slow), (fast, slow)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_plain_builder_takes_exactly_the_plain_documents(name):
    if name in ("syntax_error", "surrogate_escape"):
        return  # nothing is composed
    built = _plain_data(CASES[name])
    if name in PLAIN:
        assert any(d is not None for d in built), "a plain document was handed to PyYAML"
    else:
        assert all(d is None for d in built), "a document outside the subset was built without PyYAML"


def test_escaped_nul_characters_are_still_reported_in_plain_documents(monkeypatch):
    fast, issues = _parse(CASES["escapes"], plain=True, monkeypatch=monkeypatch)
    assert not issues
    problems = dict(fast[0][3])
    assert "NUL" in problems["a"] and "NUL" in problems["b"] and set(problems) == {"a", "b"}
    fast, _ = _parse(CASES["nul_key"], plain=True, monkeypatch=monkeypatch)
    assert any("field name" in message and "NUL" in message for _, message in fast[0][3])


_KEYS = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
_SCALARS = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=False)
            | st.text(max_size=12) | st.sampled_from(["yes", "No", "on", "~", "0x1F", "012", "1_0", "1:30", "-0", "+1"]))
_DATA = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS | st.integers(0, 9), inner, max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=st.lists(_DATA, min_size=1, max_size=3), flow=st.sampled_from([None, True, False]),
       style=st.sampled_from([None, '"', "'"]))
def test_generated_documents_parse_the_same_with_and_without_the_plain_builder(documents, flow, style):
    text = yaml.safe_dump_all(documents, default_flow_style=flow, default_style=style, allow_unicode=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, fast_issues = _parse(text, plain=True, monkeypatch=monkeypatch)
        slow, slow_issues = _parse(text, plain=False, monkeypatch=monkeypatch)
    assert fast_issues == slow_issues
    assert _same(fast, slow), (text, fast, slow)
