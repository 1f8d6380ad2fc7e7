"""Store URLs without their secrets, for ``/status``, logs and error messages.

``redact_url`` hides every password form libpq (and so psycopg) takes from a URL: the
``user:PASSWORD@`` userinfo, and query parameters that carry secrets (``password``,
``sslpassword``, and any parameter whose name contains ``pass``, ``secret`` or ``token``),
also when the parameter's name is percent-encoded (libpq decodes it) or repeated.
``scrub(text, url)`` removes the URL's secrets from any text (a driver's error message).
"""
from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
_SECRET_PARAM = re.compile(r"pass|secret|token", re.IGNORECASE)
# key=value conninfo pairs (libpq's other syntax), should one reach a message
_CONNINFO_SECRET = re.compile(r"(?i)\b((?:ssl)?password|[a-z_]*(?:secret|token)[a-z_]*)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def _split(url: str) -> tuple[str, str, str, str]:
    """(scheme + '://', netloc, path, rest: ?query#fragment) without any parsing that can fail."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url, ""
    # the authority ends at the first '/' after its last '@' (a password may hold a raw '/')
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    slash = rest.find("/", at + 1, end)
    cut = slash if slash >= 0 else end
    netloc, tail = rest[:cut], rest[cut:]
    qpos = min((i for i in (tail.find("?"), tail.find("#")) if i >= 0), default=len(tail))
    return scheme + sep, netloc, tail[:qpos], tail[qpos:]


def secrets_of(url: str) -> list[str]:
    """The secret values in ``url`` (as written and percent-decoded), longest first."""
    _, netloc, _, rest = _split(url)
    found = []
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    query = rest[1:].partition("#")[0] if rest.startswith("?") else ""
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if eq and _SECRET_PARAM.search(unquote(key)):
            found.append(value)
    out = set()
    for value in found:
        if value:
            out.add(value)
            out.add(unquote(value))
    return sorted((v for v in out if v), key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***`` (user name, host, database and other
    parameters kept)."""
    if not isinstance(url, str):
        return "<store url>"
    prefix, netloc, path, rest = _split(url)
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hosts}"
    if rest.startswith("?"):
        query, hash_, fragment = rest[1:].partition("#")
        parts = []
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            parts.append(f"{key}={MASK}" if eq and _SECRET_PARAM.search(unquote(key)) else part)
        rest = "?" + "&".join(parts) + (hash_ + fragment if hash_ else "")
    text = prefix + netloc + path + rest
    return _CONNINFO_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text) if not prefix else text


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) without the secrets of ``url`` and without password pairs."""
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    if url and url in text:
        text = text.replace(url, redact_url(url))
    return _CONNINFO_SECRET.sub(lambda m: m.group(1) + m.group(2) + MASK, text)

