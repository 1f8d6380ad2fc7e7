"""Envoy's request matching, exactly as Envoy 1.40 evaluates it (router/config_impl.cc,
http/header_utility.cc), over the compiled protos.

* the path is normalised first (the HCM has ``normalize_path`` and ``merge_slashes``): dot
  segments resolved (RFC 3986 §5.2.4), then repeated slashes merged;
* path matches look at the path without its query string; prefixes and exact paths are case
  sensitive unless ``case_sensitive: false``; regexes must match the whole path;
* a header matcher sees every value of the header joined with ","; a missing header fails every
  matcher except ``present_match: false``, and an inverted matcher on a missing header matches
  only when it is an inverted presence match; ranges are signed integers, start inclusive,
  end exclusive;
* a query parameter matcher sees the first value of the parameter (no decoding);
* ``grpc: {}`` requires ``content-type`` ``application/grpc`` or ``application/grpc+...``;
* virtual hosts are chosen by the lower-cased Host: exact domain, then ``*.suffix`` wildcards
  (longest first), then ``prefix.*`` wildcards (longest first), then ``*``.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Optional

from mesh_model.explain.request import Request


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def regex_full_match(pattern: str, value: str) -> bool:
    """RE2 ``FullMatch``; the compiler's regexes are in the common subset of RE2 and Python."""
    try:
        return _regex(pattern).fullmatch(value) is not None
    except re.error:
        return False


def split_path(path: str) -> tuple[str, str]:
    """(path, query) of a :path value; a fragment is dropped as Envoy does."""
    path = path.split("#", 1)[0]
    p, sep, q = path.partition("?")
    return p, q


def remove_dot_segments(path: str) -> str:
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
            continue
        if segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
            continue
        output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def normalize_path(path: str) -> str:
    """What the HCM makes of :path before routing (normalize_path + merge_slashes); keeps the query."""
    p, query = split_path(path)
    p = p.replace("\\", "/")
    p = remove_dot_segments(p or "/")
    p = re.sub(r"/{2,}", "/", p)
    return p + ("?" + query if query else "")


def parse_query(path: str) -> dict[str, str]:
    """First value of each query parameter, undecoded (Envoy's QueryParamsMulti::getFirstValue)."""
    _, query = split_path(path)
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        params.setdefault(name, value)
    return params


def string_matches(matcher, value: str) -> bool:
    """An envoy.type.matcher.v3.StringMatcher."""
    which = matcher.WhichOneof("match_pattern")
    ignore_case = matcher.ignore_case
    subject = value.lower() if ignore_case else value
    if which == "exact":
        return subject == (matcher.exact.lower() if ignore_case else matcher.exact)
    if which == "prefix":
        return subject.startswith(matcher.prefix.lower() if ignore_case else matcher.prefix)
    if which == "suffix":
        return subject.endswith(matcher.suffix.lower() if ignore_case else matcher.suffix)
    if which == "contains":
        return (matcher.contains.lower() if ignore_case else matcher.contains) in subject
    if which == "safe_regex":
        return regex_full_match(matcher.safe_regex.regex, value)
    return False


def describe_string_matcher(matcher) -> str:
    which = matcher.WhichOneof("match_pattern")
    value = matcher.safe_regex.regex if which == "safe_regex" else getattr(matcher, which or "exact", "")
    word = {"safe_regex": "regex", "exact": "exact"}.get(which, which)
    return f"{word} {value!r}" + (" (ignore case)" if matcher.ignore_case else "")


def _atoi(value: str) -> Optional[int]:
    text = value.strip()
    if re.fullmatch(r"[+-]?[0-9]+", text) is None:
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def describe_header_matcher(hm) -> str:
    which = hm.WhichOneof("header_match_specifier")
    if which == "present_match":
        text = "present" if hm.present_match else "absent"
    elif which == "range_match":
        text = f"an integer in [{hm.range_match.start}, {hm.range_match.end})"
    elif which == "string_match":
        text = describe_string_matcher(hm.string_match)
    elif which is None:
        text = "present"
    else:
        text = f"{which} {getattr(hm, which)!r}"
    return f"{hm.name} {'NOT ' if hm.invert_match else ''}{text}"


def header_matches(hm, request: Request) -> bool:
    """Envoy's HeaderUtility::matchHeaders for one HeaderMatcher."""
    value = request.header(hm.name)
    which = hm.WhichOneof("header_match_specifier")
    is_present_type = which == "present_match"
    if value is None and not hm.treat_missing_header_as_empty:
        if hm.invert_match:
            return is_present_type and hm.present_match
        return is_present_type and not hm.present_match
    value = value or ""
    if which == "present_match":
        match = hm.present_match
    elif which is None:
        match = True
    elif which == "range_match":
        number = _atoi(value)
        match = number is not None and hm.range_match.start <= number < hm.range_match.end
    elif which == "string_match":
        match = string_matches(hm.string_match, value)
    elif which == "exact_match":
        match = not hm.exact_match or value == hm.exact_match
    elif which == "safe_regex_match":
        match = regex_full_match(hm.safe_regex_match.regex, value)
    elif which == "prefix_match":
        match = value.startswith(hm.prefix_match)
    elif which == "suffix_match":
        match = value.endswith(hm.suffix_match)
    elif which == "contains_match":
        match = hm.contains_match in value
    else:
        match = False
    return match != hm.invert_match


def query_matches(qm, params: dict[str, str]) -> bool:
    value = params.get(qm.name)
    if value is None:
        return False
    if qm.HasField("string_match"):
        return string_matches(qm.string_match, value)
    return qm.present_match or not qm.HasField("string_match")


def describe_query_matcher(qm) -> str:
    if qm.HasField("string_match"):
        return f"?{qm.name} {describe_string_matcher(qm.string_match)}"
    return f"?{qm.name} present"


def is_grpc(request: Request) -> bool:
    content_type = request.header("content-type") or ""
    return content_type == "application/grpc" or content_type.startswith("application/grpc+")


def describe_path_match(match) -> str:
    which = match.WhichOneof("path_specifier")
    if which == "safe_regex":
        return f"path matches regex {match.safe_regex.regex!r}"
    if which == "path":
        return f"path is {match.path!r}"
    if which == "prefix":
        return f"path starts with {match.prefix!r}"
    if which == "path_separated_prefix":
        return f"path is {match.path_separated_prefix!r} or below it"
    return f"{which}"


def path_matches(match, path: str) -> bool:
    which = match.WhichOneof("path_specifier")
    p, _ = split_path(path)
    case_sensitive = match.case_sensitive.value if match.HasField("case_sensitive") else True

    def fold(s: str) -> str:
        return s if case_sensitive else s.lower()

    if which == "prefix":
        return fold(p).startswith(fold(match.prefix))
    if which == "path":
        return fold(p) == fold(match.path)
    if which == "safe_regex":
        return regex_full_match(match.safe_regex.regex, p)
    if which == "path_separated_prefix":
        prefix = match.path_separated_prefix
        return fold(p) == fold(prefix) or fold(p).startswith(fold(prefix) + "/")
    return False


def route_mismatches(match, request: Request) -> list[str]:
    """Why ``match`` (a RouteMatch) does not take ``request``: empty when it matches.

    The request's path must already be normalised (``normalize_path``).
    """
    reasons: list[str] = []
    if not path_matches(match, request.path):
        reasons.append(f"{describe_path_match(match)}, the request's is {split_path(request.path)[0]!r}")
    for hm in match.headers:
        if not header_matches(hm, request):
            actual = request.header(hm.name)
            reasons.append(f"header {describe_header_matcher(hm)}; the request's is " + ("absent" if actual is None else repr(actual)))
    if match.query_parameters:
        params = parse_query(request.path)
        for qm in match.query_parameters:
            if not query_matches(qm, params):
                actual = params.get(qm.name)
                reasons.append(f"query {describe_query_matcher(qm)}; the request's is " + ("absent" if actual is None else repr(actual)))
    if match.HasField("grpc") and not is_grpc(request):
        reasons.append("only gRPC requests (content-type application/grpc)")
    return reasons


def _domain_rank(domain: str, host: str) -> Optional[tuple[int, int]]:
    """How a domain matches a host (lower sorts first), or None."""
    domain = domain.lower()
    if domain == host:
        return (0, 0)
    if domain == "*":
        return (3, 0)
    if domain.startswith("*") and host.endswith(domain[1:]) and len(host) > len(domain) - 1:
        return (1, -len(domain))
    if domain.endswith("*") and host.startswith(domain[:-1]) and len(host) > len(domain) - 1:
        return (2, -len(domain))
    return None


def select_virtual_host(virtual_hosts: Iterable, host: str):
    """(virtual host, matched domain) for a Host value, or (None, None)."""
    host = host.lower()
    best = None
    for vh in virtual_hosts:
        for domain in vh.domains:
            rank = _domain_rank(domain, host)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, vh, domain)
    if best is None:
        return None, None
    return best[1], best[2]
