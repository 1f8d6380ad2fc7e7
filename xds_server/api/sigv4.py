"""AWS Signature Version 4 verification for the App Mesh API (``--api-credentials FILE``).

The AWS CLI, boto3, the Go SDKs (Terraform) and every other AWS client sign each request
with an access key: ``Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/
appmesh/aws4_request, SignedHeaders=host;x-amz-date, Signature=<hex>``. This module checks
such a request the way AWS does:

1. the ``Authorization`` header parses, its credential scope is ``<date>/<region>/appmesh/
   aws4_request`` with an accepted region and the date of ``X-Amz-Date``;
2. ``X-Amz-Date`` (or ``Date``) is within 15 minutes of now;
3. the access key id is known (``UnrecognizedClientException`` otherwise);
4. ``host`` is signed; ``x-amz-content-sha256``, if present, is the SHA-256 of the body;
5. the canonical request (method, URI-encoded path, sorted query, signed headers, body hash)
   -> string to sign -> HMAC with the derived key (``AWS4`` + secret, date, region, service,
   ``aws4_request``) equals the signature (constant-time comparison).

``path`` is the request-target path **as it arrived on the wire** (still percent-encoded,
e.g. ``BaseHTTPRequestHandler.path`` up to ``?``); for services other than S3 the signer
encodes each segment once more, and so does the verifier. ``query`` is the raw query string.

The outcome is a ``Caller`` (account, key, which meshes it may read and write) or a
``SignatureError`` carrying App Mesh's error type (``x-amzn-ErrorType``), HTTP status (403)
and a message that says exactly what is wrong.

Credentials file (YAML), one entry per access key id::

    AKIAIOSFODNN7EXAMPLE:
      secretAccessKey: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
      accountId: "111122223333"
      meshes:
        read: ["*"]          # names or shell-style patterns (fnmatch): "*", "team-*"
        write: ["shop"]      # write implies read
      cloudMap:              # CloudMapService documents (apply/export), by Cloud Map namespace
        write: ["shop.local"]  # none unless given; write implies read

A key may read a mesh matched by ``read`` or ``write``; which meshes an *account* can reach at
all (ownership, cross-account sharing) is decided by ``xds_server.api.access``. The same
patterns, under ``cloudMap``, give the Cloud Map namespaces whose ``CloudMapService`` documents
the key may read and write (``xds_server.api.rights``).
"""
from __future__ import annotations

import datetime as _dt
import email.utils
import fnmatch
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote, unquote

import yaml

__all__ = [
    "ALGORITHM",
    "Caller",
    "Credential",
    "CredentialsError",
    "SignatureError",
    "Verifier",
    "load_credentials",
    "parse_credentials",
]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "appmesh"
MAX_SKEW_SECONDS = 15 * 60
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,128}$")

# App Mesh's (API Gateway front end's) error types for authentication failures; all HTTP 403.
MISSING_TOKEN = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
INVALID_SIGNATURE = "InvalidSignatureException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"

_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


class SignatureError(Exception):
    """The request is not (correctly) signed. ``error_type`` goes into ``x-amzn-ErrorType``,
    ``status`` is the HTTP status, ``str(exc)`` the ``message``. ``detail`` (for the server
    log only, never sent to the client) says which check failed."""

    def __init__(self, error_type: str, message: str, *, detail: str = "", status: int = 403):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status
        self.detail = detail or message

    def body(self) -> dict[str, str]:
        return {"message": self.message}


class CredentialsError(ValueError):
    """The credentials file is unusable; the message names the file and the field."""


# ---------------------------------------------------------------------------- credentials
def _patterns_match(patterns: tuple[str, ...], mesh: str) -> bool:
    return any(fnmatch.fnmatchcase(mesh, p) for p in patterns)


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    account_id: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    cloud_map_read: tuple[str, ...] = ()
    cloud_map_write: tuple[str, ...] = ()


@dataclass(frozen=True)
class Caller:
    """Who sent a verified request, and which meshes that key may read and write.

    ``read``/``write`` are mesh name patterns (fnmatch, case-sensitive); ``write`` implies read.
    ``region`` is the region of the credential scope (``None`` for an unsigned local caller).
    """

    account_id: str
    access_key_id: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    region: str | None = None
    cloud_map_read: tuple[str, ...] = ()
    cloud_map_write: tuple[str, ...] = ()

    def can_read(self, mesh: str) -> bool:
        return _patterns_match(self.read, mesh) or _patterns_match(self.write, mesh)

    def can_write(self, mesh: str) -> bool:
        return _patterns_match(self.write, mesh)

    @classmethod
    def unrestricted(cls, account_id: str, access_key_id: str = "") -> "Caller":
        """The caller of an unsigned request where the server allows those (no
        ``--api-credentials``, loopback only): every mesh, read and write."""
        return cls(account_id, access_key_id, ("*",), ("*",))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (a repeated access key id
    would otherwise silently replace the first)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # SafeLoader reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} appears twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)

_ENTRY_FIELDS = ("secretAccessKey", "accountId", "meshes", "cloudMap")


def load_credentials(path: str | Path) -> dict[str, Credential]:
    """Read ``--api-credentials FILE``; ``CredentialsError`` naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"{path}: cannot read the API credentials file: {exc.strerror or exc}") from exc
    return parse_credentials(text, source=str(path))


def parse_credentials(text: str, *, source: str = "<credentials>") -> dict[str, Credential]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CredentialsError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        raise CredentialsError(f"{source}: no access keys (expected a mapping: access key id -> "
                               "{secretAccessKey, accountId, meshes: {read, write}})")
    if not isinstance(data, dict):
        raise CredentialsError(f"{source}: expected a mapping of access key id -> settings, got {type(data).__name__}")
    out: dict[str, Credential] = {}
    for key_id, entry in data.items():
        if not isinstance(key_id, str) or not _KEY_ID_RE.match(key_id):
            raise CredentialsError(
                f"{source}: access key id {key_id!r} is invalid (1-128 characters of letters, digits and _+=,.@-)"
            )
        where = f"{source}: {key_id}"
        if not isinstance(entry, dict):
            raise CredentialsError(f"{where}: expected a mapping with {', '.join(_ENTRY_FIELDS)}, got {type(entry).__name__}")
        unknown = sorted(set(map(str, entry)) - set(_ENTRY_FIELDS))
        if unknown:
            raise CredentialsError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_ENTRY_FIELDS)})")
        secret = entry.get("secretAccessKey")
        if not isinstance(secret, str) or not secret:
            raise CredentialsError(f"{where}.secretAccessKey: required, a non-empty string")
        account = entry.get("accountId")
        if isinstance(account, int) and not isinstance(account, bool) and len(str(account)) == 12:
            account = str(account)
        if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
            raise CredentialsError(f"{where}.accountId: required, 12 digits as a quoted string (e.g. \"111122223333\"), "
                                   f"got {account!r}")
        meshes = _rights(entry, "meshes", "mesh names", where)
        cloud_map = _rights(entry, "cloudMap", "Cloud Map namespace names", where)
        out[key_id] = Credential(key_id, secret, account, meshes["read"], meshes["write"],
                                 cloud_map["read"], cloud_map["write"])
    return out


def _rights(entry: dict, section: str, what: str, where: str) -> dict[str, tuple[str, ...]]:
    """``{read: [...], write: [...]}`` of one section of an entry (``meshes``, ``cloudMap``)."""
    value = entry.get(section, {})
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise CredentialsError(f"{where}.{section}: expected a mapping with read and/or write, got {type(value).__name__}")
    bad = sorted(set(map(str, value)) - {"read", "write"})
    if bad:
        raise CredentialsError(f"{where}.{section}: unknown field(s) {', '.join(bad)} (allowed: read, write)")
    lists = {}
    for right in ("read", "write"):
        patterns = value.get(right, [])
        if patterns is None:
            patterns = []
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(v, str) and v for v in patterns):
            raise CredentialsError(f"{where}.{section}.{right}: expected a list of {what} or patterns "
                                   f"(\"*\" for all), got {patterns!r}")
        lists[right] = tuple(patterns)
    return lists


# ---------------------------------------------------------------------------- verification
def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k_date = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "aws4_request")


def _header_lists(headers: Any) -> dict[str, list[str]]:
    """Lower-cased header name -> every value in arrival order. Accepts a Mapping (values str
    or list), an ``email.message.Message``/``http.client.HTTPMessage`` (repeated headers kept),
    or an iterable of (name, value) pairs."""
    out: dict[str, list[str]] = {}
    if hasattr(headers, "raw_items"):  # email.message.Message keeps repeats
        items: Iterable = headers.raw_items()
    elif isinstance(headers, Mapping):
        items = []
        for name, value in headers.items():
            if isinstance(value, (list, tuple)):
                items.extend((name, v) for v in value)
            else:
                items.append((name, value))
    else:
        items = headers
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        out.setdefault(str(name).strip().lower(), []).append(str(value))
    return out


def _trimall(value: str) -> str:
    return " ".join(value.split())


def canonical_path(raw_path: str) -> str:
    """The path as the SigV4 canonical request has it (non-S3: every segment encoded again)."""
    return quote(raw_path or "/", safe="/~")


def _normalized(raw_path: str) -> bool:
    """True if the path has no ``.``/``..`` segments and no ``//`` (clients normalize before
    signing; a server must not route one path while the signature covered another)."""
    segments = raw_path.split("/")[1:-1] if raw_path.endswith("/") else raw_path.split("/")[1:]
    return raw_path.startswith("/") and all(s not in ("", ".", "..") for s in segments) or raw_path in ("", "/")


def canonical_query(raw_query: str) -> str:
    """Decode every key and value, encode them again (RFC 3986 unreserved), sort by key then value."""
    if not raw_query:
        return ""
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(method: str, raw_path: str, raw_query: str, headers: dict[str, list[str]],
                      signed: list[str], payload_hash: str) -> str:
    canonical_headers = "".join(f"{name}:{','.join(_trimall(v) for v in headers[name])}\n" for name in signed)
    return "\n".join([
        method.upper(), canonical_path(raw_path), canonical_query(raw_query), canonical_headers,
        ";".join(signed), payload_hash,
    ])


_AUTH_PARAM_RE = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,\s]*)\s*")


def _parse_authorization(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError(
            INCOMPLETE,
            f"Authorization header requires the {ALGORITHM} algorithm, got {algorithm!r}",
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        if not part.strip():
            continue
        m = _AUTH_PARAM_RE.fullmatch(part)
        if not m:
            raise SignatureError(INCOMPLETE, f"Authorization header has a malformed component {part.strip()!r}")
        params[m.group(1)] = m.group(2)
    missing = [p for p in ("Credential", "SignedHeaders", "Signature") if not params.get(p)]
    if missing:
        raise SignatureError(
            INCOMPLETE,
            "Authorization header requires "
            + ", ".join(f"'{p}' parameter" for p in missing)
            + ". Authorization=" + value.strip(),
        )
    return params


def _parse_request_time(headers: dict[str, list[str]]) -> tuple[str, float]:
    """(amz timestamp, epoch seconds) from ``X-Amz-Date`` or, failing that, ``Date``."""
    if "x-amz-date" in headers:
        stamp = headers["x-amz-date"][0].strip()
        try:
            when = _dt.datetime.strptime(stamp, _AMZ_DATE).replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise SignatureError(INCOMPLETE, f"X-Amz-Date must be in the ISO 8601 basic format "
                                             f"YYYYMMDD'T'HHMMSS'Z', got {stamp!r}") from None
        return stamp, when.timestamp()
    if "date" in headers:
        try:
            when = email.utils.parsedate_to_datetime(headers["date"][0])
        except (TypeError, ValueError):
            raise SignatureError(INCOMPLETE, f"Date header is not an HTTP date: {headers['date'][0]!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        when = when.astimezone(_dt.timezone.utc)
        return when.strftime(_AMZ_DATE), when.timestamp()
    raise SignatureError(INCOMPLETE, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")


class Verifier:
    """Checks SigV4 signatures against a credentials table.

    ``regions``: the region names a credential scope may carry (``None`` or ``"*"``: any);
    ``clock``: epoch seconds (tests).
    """

    def __init__(
        self,
        credentials: Mapping[str, Credential],
        *,
        regions: str | Iterable[str] | None = None,
        service: str = SERVICE,
        max_skew: float = MAX_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.credentials = dict(credentials)
        if isinstance(regions, str):
            regions = None if regions == "*" else (regions,)
        self.regions = frozenset(regions) if regions is not None else None
        self.service = service
        self.max_skew = max_skew
        self.clock = clock

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> "Verifier":
        return cls(load_credentials(path), **kwargs)

    def verify(self, method: str, path: str, query: str, headers: Any, body: bytes | str = b"") -> Caller:
        """Return the ``Caller`` of a correctly signed request; raise ``SignatureError`` otherwise."""
        if isinstance(body, (str, bytearray, memoryview)):
            body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        hdrs = _header_lists(headers)
        head = self._check_head(hdrs, query)
        body_hash = _sha256_hex(body)
        declared = declared_payload_hash(hdrs)
        if declared is not None:
            if declared != body_hash:
                raise SignatureError(
                    INVALID_SIGNATURE,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    detail=f"x-amz-content-sha256 {declared!r} is not the SHA-256 of the body ({body_hash})",
                )
        return self._check_signature(head, method, path, query, hdrs, body_hash)

    def precheck(self, method: str, path: str, query: str, headers: Any) -> Caller | None:
        """What can be checked before the body is read: everything but the body's hash (the
        header parses, the key is known, the date is within the window, ``host`` and the date
        are signed) -> ``SignatureError``; and when the request declares its payload hash in a
        signed ``x-amz-content-sha256`` header, the whole signature over that hash: then the
        ``Caller`` is returned (the body must still be checked against the declared hash, see
        ``declared_payload_hash``). ``None``: the headers are fine, the signature needs the body."""
        hdrs = _header_lists(headers)
        head = self._check_head(hdrs, query)
        declared = declared_payload_hash(hdrs)
        if declared is None or "x-amz-content-sha256" not in head[-1]:
            return None
        return self._check_signature(head, method, path, query, hdrs, declared)

    def _check_head(self, hdrs: dict[str, list[str]], query: str) -> tuple:
        authorization = hdrs.get("authorization")
        if not authorization or not authorization[0].strip():
            if "x-amz-signature" in query.lower():
                raise SignatureError(INCOMPLETE, "presigned URLs are not supported by the meshplane API; "
                                                 "sign the Authorization header")
            raise SignatureError(MISSING_TOKEN, "Missing Authentication Token",
                                 detail="no Authorization header: the request is not signed")
        if len(authorization) > 1:
            raise SignatureError(INCOMPLETE, "more than one Authorization header")
        params = _parse_authorization(authorization[0])

        scope = params["Credential"].split("/")
        if len(scope) != 5:
            raise SignatureError(
                INCOMPLETE,
                f"Credential should have 5 parts separated by '/' (AKID/date/region/service/aws4_request), "
                f"got {params['Credential']!r}",
            )
        key_id, scope_date, region, service, terminator = scope
        if terminator != "aws4_request":
            raise SignatureError(INCOMPLETE, f"Credential should be scoped with a valid terminator: 'aws4_request', "
                                             f"not '{terminator}'.")
        if service != self.service:
            raise SignatureError(INVALID_SIGNATURE, f"Credential should be scoped to correct service: '{self.service}'. "
                                                    f"It is scoped to '{service}'.")
        if self.regions is not None and region not in self.regions:
            raise SignatureError(
                INVALID_SIGNATURE,
                f"Credential should be scoped to a valid region, not '{region}'. "
                f"This endpoint serves {', '.join(sorted(self.regions))}.",
            )

        stamp, when = _parse_request_time(hdrs)
        if scope_date != stamp[:8]:
            raise SignatureError(INVALID_SIGNATURE, f"Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                                                    f"version of date from HTTP: '{scope_date}' != '{stamp[:8]}', "
                                                    f"from '{stamp}'.")
        now = self.clock()
        if when < now - self.max_skew:
            raise SignatureError(INVALID_SIGNATURE, f"Signature expired: {stamp} is now earlier than "
                                                    f"{_fmt(now - self.max_skew)} ({_fmt(now)} - "
                                                    f"{int(self.max_skew // 60)} min.)")
        if when > now + self.max_skew:
            raise SignatureError(INVALID_SIGNATURE, f"Signature not yet current: {stamp} is still later than "
                                                    f"{_fmt(now + self.max_skew)} ({_fmt(now)} + "
                                                    f"{int(self.max_skew // 60)} min.)")

        credential = self.credentials.get(key_id)
        if credential is None:
            raise SignatureError(UNRECOGNIZED_CLIENT, "The security token included in the request is invalid.",
                                 detail=f"unknown access key id {key_id!r}")

        signed = params["SignedHeaders"].split(";")
        if signed != sorted(signed) or len(set(signed)) != len(signed) or any(s != s.lower() or not s for s in signed):
            raise SignatureError(INCOMPLETE, f"SignedHeaders must be lower-case header names, sorted and separated "
                                             f"by ';', got {params['SignedHeaders']!r}")
        if "host" not in signed:
            raise SignatureError(INCOMPLETE, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
        if "x-amz-date" in hdrs and "x-amz-date" not in signed:
            raise SignatureError(INCOMPLETE, "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
        if "x-amz-date" not in hdrs and "date" not in signed:
            raise SignatureError(INCOMPLETE, "'Date' must be a 'SignedHeader' in the AWS Authorization.")
        absent = [name for name in signed if name not in hdrs]
        if absent:
            raise SignatureError(INVALID_SIGNATURE, _SIGNATURE_MISMATCH,
                                 detail=f"signed header(s) missing from the request: {', '.join(absent)}")

        return params, credential, key_id, scope_date, region, service, stamp, signed

    def _check_signature(self, head: tuple, method: str, path: str, query: str, hdrs: dict[str, list[str]],
                         payload_hash: str) -> Caller:
        params, credential, key_id, scope_date, region, service, stamp, signed = head
        if "x-amz-content-sha256" in hdrs:  # the header as sent is what the signer hashed
            payload_hash = hdrs["x-amz-content-sha256"][0].strip()
        if not _normalized(path):
            raise SignatureError(INVALID_SIGNATURE, _SIGNATURE_MISMATCH,
                                 detail=f"request path {path!r} is not normalized ('.', '..' or '//' segments)")

        creq = canonical_request(method, path, query, hdrs, signed, payload_hash)
        string_to_sign = "\n".join([
            ALGORITHM, stamp, f"{scope_date}/{region}/{service}/aws4_request", _sha256_hex(creq.encode("utf-8")),
        ])
        expected = hmac.new(signing_key(credential.secret_access_key, scope_date, region, service),
                            string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), params["Signature"].lower().encode("ascii", "replace")):
            raise SignatureError(
                INVALID_SIGNATURE, _SIGNATURE_MISMATCH,
                detail=f"signature mismatch for key {key_id!r}; canonical request was:\n{creq}\n"
                       f"string to sign was:\n{string_to_sign}",
            )
        return Caller(credential.account_id, key_id, credential.read, credential.write, region,
                      credential.cloud_map_read, credential.cloud_map_write)


_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


def declared_payload_hash(headers: Any) -> str | None:
    """The SHA-256 (lower-case hex) a request declares for its body in ``x-amz-content-sha256``,
    or None when it declares none; ``SignatureError`` for a value that is not a SHA-256
    (``UNSIGNED-PAYLOAD``, streaming signatures: not accepted by this API)."""
    hdrs = headers if isinstance(headers, dict) and all(isinstance(v, list) for v in headers.values()) \
        else _header_lists(headers)
    values = hdrs.get("x-amz-content-sha256")
    if not values:
        return None
    if len(values) > 1:
        raise SignatureError(INCOMPLETE, "more than one x-amz-content-sha256 header")
    declared = values[0].strip()
    if not _SHA256_HEX.match(declared):
        raise SignatureError(INVALID_SIGNATURE, "x-amz-content-sha256 must be the hex SHA-256 of the body "
                                                "(unsigned and streaming payloads are not accepted)",
                             detail=f"x-amz-content-sha256 {declared[:80]!r} is not a SHA-256")
    return declared.lower()


def _fmt(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime(_AMZ_DATE)
