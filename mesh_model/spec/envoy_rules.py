"""What Envoy can hold and accepts, for the model's validation: an accepted write must always
compile and be accepted by Envoy (issue 17).

The numbers are the tighter of App Mesh's own limit (botocore's model: an ``integer`` is
32-bit) and what the Envoy field holds; the duration ceiling was measured with
``envoy --mode validate`` (Envoy 1.40 reads route, retry, idle, outlier-detection durations
as int64 nanoseconds and refuses 9223372036 s and above). Regexes are checked with RE2 (the
``re2`` module of google-re2), Envoy's engine, against Envoy's default program-size limit
(runtime ``re2.max_program_size.error_level``: a program above 100 is rejected).

Pure functions returning a problem text or ``None``; ``shapes.py`` attaches the field path.
"""
from __future__ import annotations

import functools

INT32_MAX = 2**31 - 1  # App Mesh ``integer`` (connection pool limits)
UINT32_MAX = 2**32 - 1  # Envoy UInt32Value (num_retries, consecutive_5xx)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # App Mesh ``long`` / Envoy Int64Range (header range match)
# The longest duration Envoy 1.40 accepts where it reads one as milliseconds (route timeout,
# idle timeouts, per-try timeout, outlier detection): 9223372036 s is "Duration out-of-range".
MAX_DURATION_SECONDS = 9_223_372_035
MAX_DURATION_MILLIS = MAX_DURATION_SECONDS * 1000
# Envoy's default regex program-size limit (re2.max_program_size.error_level)
MAX_REGEX_PROGRAM_SIZE = 100
QUERY_PARAMETER_NAME_MAX_BYTES = 1024  # QueryParameterMatcher.name: max_bytes 1024
SNI_MAX_BYTES = 255  # UpstreamTlsContext.sni: max_bytes 255

# RFC 9110 token characters (a header field name); a leading ':' names a pseudo-header
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def duration_problem(value: int, unit: str) -> str | None:
    limit = MAX_DURATION_SECONDS if unit == "s" else MAX_DURATION_MILLIS
    if value > limit:
        return f"must be at most {limit} (unit {unit}): Envoy holds durations up to {MAX_DURATION_SECONDS} s"
    return None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def header_name_problem(name: str) -> str | None:
    """A header (or gRPC metadata) name Envoy can match: an HTTP token, or ``:`` + token."""
    body = name[1:] if name.startswith(":") else name
    if not body or any(c not in _TCHAR for c in body):
        return f"not a valid HTTP header name: {_shown(name)} (letters, digits and !#$%&'*+-.^_`|~ only)"
    return None


def header_value_problem(value: str) -> str | None:
    """Envoy's HTTP_HEADER_VALUE rule (non-strict): no NUL, CR or LF."""
    if any(c in value for c in "\x00\r\n"):
        return "must not contain NUL, CR or LF characters"
    return None


def strict_header_value_problem(value: str) -> str | None:
    """Envoy's strict HTTP_HEADER_VALUE rule: no control characters but tab."""
    if any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in value):
        return "must not contain control characters"
    return None


def query_parameter_name_problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if len(name.encode("utf-8", "surrogatepass")) > QUERY_PARAMETER_NAME_MAX_BYTES:
        return f"must be at most {QUERY_PARAMETER_NAME_MAX_BYTES} bytes (UTF-8)"
    return None


def sni_problem(name: str) -> str | None:
    """A service-discovery name becomes the SNI of TLS towards the node (``compiler/tls.py``)."""
    if len(name.encode("utf-8", "surrogatepass")) > SNI_MAX_BYTES:
        return f"must be at most {SNI_MAX_BYTES} bytes (UTF-8): it is the TLS server name (SNI) Envoy sends"
    return None


@functools.lru_cache(maxsize=4096)
def regex_problem(pattern: str) -> str | None:
    """``None`` if Envoy's RE2 accepts ``pattern`` within its program-size limit."""
    import re2  # google-re2: Envoy's regex engine

    options = re2.Options()
    options.log_errors = False
    try:
        program_size = re2.compile(pattern, options).programsize
    except Exception as exc:  # re2.error (and any encoding problem of the pattern)
        message = exc.args[0] if exc.args else exc
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        return f"not a valid RE2 regular expression (Envoy's syntax): {message}"
    if program_size > MAX_REGEX_PROGRAM_SIZE:
        return (f"regular expression too complex for Envoy: RE2 program size {program_size} is above "
                f"Envoy's limit of {MAX_REGEX_PROGRAM_SIZE}")
    return None


def authority_regex(hostname: str, *, exact: bool) -> str:
    """The ``:authority`` regex a gateway route's hostname match compiles to (``compiler/gateway.py``)."""
    import re

    body = re.escape(hostname.lower())
    return f"(?i){body}(:[0-9]+)?" if exact else f"(?i).*{body}(:[0-9]+)?"


# Envoy 1.40's access log command operators (substitution formatter); the whole list is run
# through envoy --mode validate by tests/e2e/test_servable_envoy_fuzz.py. A command missing
# here is refused although Envoy knows it (add it); one Envoy does not know would be a NACK.
LOG_COMMANDS_WITHOUT_ARGUMENTS = frozenset((
    "ACCESS_LOG_TYPE", "BYTES_RECEIVED", "BYTES_SENT", "CONNECTION_ID", "CONNECTION_TERMINATION_DETAILS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS", "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_PORT", "DOWNSTREAM_HANDSHAKE_DURATION", "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT", "DOWNSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_LOCAL_DNS_SAN", "DOWNSTREAM_LOCAL_PORT", "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_LOCAL_URI_SAN", "DOWNSTREAM_PEER_CERT", "DOWNSTREAM_PEER_CERT_V_END",
    "DOWNSTREAM_PEER_CERT_V_START", "DOWNSTREAM_PEER_DNS_SAN", "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_FINGERPRINT_256", "DOWNSTREAM_PEER_ISSUER", "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_SUBJECT", "DOWNSTREAM_PEER_URI_SAN", "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", "DOWNSTREAM_REMOTE_PORT", "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_SESSION_ID", "DOWNSTREAM_TLS_VERSION", "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED", "DOWNSTREAM_WIRE_BYTES_SENT", "DURATION", "EMIT_TIME",
    "EMIT_TIME_LOCAL", "FILTER_CHAIN_NAME", "GRPC_STATUS", "GRPC_STATUS_NUMBER", "HOSTNAME",
    "LOCAL_REPLY_BODY", "PROTOCOL", "REQUESTED_SERVER_NAME", "REQUEST_DURATION", "REQUEST_HEADERS_BYTES",
    "REQUEST_TX_DURATION", "RESPONSE_CODE", "RESPONSE_CODE_DETAILS", "RESPONSE_DURATION", "RESPONSE_FLAGS",
    "RESPONSE_FLAGS_LONG", "RESPONSE_HEADERS_BYTES", "RESPONSE_TRAILERS_BYTES", "RESPONSE_TX_DURATION",
    "ROUNDTRIP_DURATION", "ROUTE_NAME", "START_TIME_LOCAL", "STREAM_ID", "TRACE_ID", "UNIQUE_ID",
    "UPSTREAM_CLUSTER", "UPSTREAM_CLUSTER_RAW", "UPSTREAM_CONNECTION_ID", "UPSTREAM_HEADER_BYTES_RECEIVED",
    "UPSTREAM_HEADER_BYTES_SENT", "UPSTREAM_HOST", "UPSTREAM_HOST_NAME", "UPSTREAM_LOCAL_ADDRESS",
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", "UPSTREAM_LOCAL_PORT", "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_PEER_CERT", "UPSTREAM_PEER_ISSUER", "UPSTREAM_PEER_SUBJECT", "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PROTOCOL", "UPSTREAM_REMOTE_ADDRESS", "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_REMOTE_PORT", "UPSTREAM_REQUEST_ATTEMPT_COUNT", "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_SESSION_ID", "UPSTREAM_TLS_VERSION", "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_WIRE_BYTES_RECEIVED", "UPSTREAM_WIRE_BYTES_SENT", "VIRTUAL_CLUSTER_NAME",
))
LOG_COMMANDS_WITH_ARGUMENTS = frozenset(("REQ", "RESP", "TRAILER", "DYNAMIC_METADATA", "CLUSTER_METADATA", "UPSTREAM_METADATA",
                                         "FILTER_STATE", "ENVIRONMENT"))
LOG_COMMANDS_WITH_LENGTH = frozenset(("REQ", "RESP", "TRAILER"))  # %REQ(X):10%
_LOG_COMMAND = None


def access_log_format_problem(text: str) -> str | None:
    """Envoy's format string rules: ``%%`` is a percent sign, every other ``%`` starts a
    ``%COMMAND%``, ``%COMMAND(argument)%`` or ``%COMMAND(argument):length%`` of a command it
    knows. The first place that breaks them, described, or ``None``."""
    for _, problem in _log_format_problems(text):
        return problem
    return None


def servable_log_format(text: str) -> str:
    """``text`` as Envoy takes it: every ``%`` that starts no command Envoy knows is doubled,
    so that it is written to the log as it stands (``%END_TIME%`` -> ``%%END_TIME%%``).

    App Mesh's API checked only a format's length, and Envoy then refused the listener of a
    format with an operator it does not know (App Mesh's own tests use ``%END_TIME%``); a
    format that was accepted there is accepted here, logged literally, and warned about."""
    escaped = [at for at, _ in _log_format_problems(text)]
    if not escaped:
        return text
    out, last = [], 0
    for at in escaped:
        out.append(text[last:at])
        out.append("%%")
        last = at + 1
    out.append(text[last:])
    return "".join(out)


def _log_format_problems(text: str):
    """``(position, problem)`` of each ``%`` that does not start a command Envoy takes (the
    scan goes on after it, as if it were a literal percent sign)."""
    import re

    global _LOG_COMMAND
    if _LOG_COMMAND is None:
        _LOG_COMMAND = re.compile(r"%([A-Z0-9_]+)(\(([^)]*)\))?(:[0-9]+)?%")
    at = 0
    while (at := text.find("%", at)) >= 0:
        if text.startswith("%%", at):
            at += 2
            continue
        match = _LOG_COMMAND.match(text, at)
        problem = (f"'%' at position {at} does not start a command operator such as %START_TIME% (a percent sign is %%)"
                   if match is None else _command_problem(match))
        if problem is not None:
            yield at, problem
            at += 1
        else:
            at = match.end()


def _command_problem(match) -> str | None:
    name, argument, length = match.group(1), match.group(3), match.group(4)
    if argument is not None and ("\n" in argument or "\r" in argument):
        # Envoy refuses the format (its argument pattern runs over lines up to the next ')')
        return f"%{name}(...)% has a line break in its argument (is a ')' missing?)"
    if name == "START_TIME":
        if length is not None:
            return "%START_TIME% takes no length"
    elif name in LOG_COMMANDS_WITH_ARGUMENTS:
        if not argument:
            return f"%{name}(...)% needs an argument"
        if length is not None and name not in LOG_COMMANDS_WITH_LENGTH:
            return f"%{name}(...)% takes no length"
    elif name in LOG_COMMANDS_WITHOUT_ARGUMENTS:
        if match.group(2) is not None or length is not None:
            return f"%{name}% takes no argument or length"
    else:
        return f"%{name}% is not an Envoy access log command operator"
    return None
