"""Typed App Mesh spec objects (the ``spec`` of each resource), validated on load.

Field names are exactly App Mesh's camelCase API names (``weightedTargets``,
``portMapping.port``...), so a user's App Mesh JSON/YAML maps 1:1 and error paths read
like the App Mesh docs. Every model is frozen, forbids unknown fields and stores lists as
tuples: the compiler gets an immutable, fully checked tree. Scalars are strict (``"8080"``
is not a port) because a quoted number in YAML is a user mistake worth reporting.

Besides the limits of the API field list, the rules App Mesh and its k8s CRD webhook
enforce are checked here (union members, prefix xor path, protocol consistency...).
Rule violations are raised with :func:`_fail`, which can report several problems at
precise sub-paths in one go; ``spec_errors`` turns them into ``Issue`` paths.
"""
from __future__ import annotations

import ipaddress
import warnings
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from mesh_model.spec import envoy_rules as envoy
from mesh_model.spec.envoy_rules import INT32_MAX, INT64_MAX, INT64_MIN, UINT32_MAX
from mesh_model.spec.route_types import GATEWAY_ROUTE_TYPES, ROUTE_TYPES, route_of

# ---------------------------------------------------------------------------- helpers

RULE_ERROR = "meshplane_rule"  # pydantic error type of our own rule violations

Loc = tuple[str | int, ...]


def _fail(problems: list[tuple[Loc, str]]) -> None:
    """Raise all rule ``problems`` (sub-path relative to the model, message) at once."""
    if problems:
        raise PydanticCustomError(
            RULE_ERROR, "{message}", {"message": problems[0][1], "problems": tuple(problems)}
        )


def _str(lo: int | None = None, hi: int | None = None) -> Any:
    """A strict string with App Mesh's length limits (``len1..255`` -> ``_str(1, 255)``)."""
    return Annotated[str, Field(strict=True, min_length=lo, max_length=hi)]


def _int(lo: int | None = None, hi: int | None = None) -> Any:
    """A strict integer (YAML ``"8080"`` and ``true`` are rejected) within ``lo..hi``."""
    return Annotated[int, Field(strict=True, ge=lo, le=hi)]


def _items(item: Any, lo: int | None = None, hi: int | None = None) -> Any:
    """An immutable list (tuple) of ``item`` with App Mesh's ``list:items lo..hi`` limits."""
    return Annotated[tuple[item, ...], Field(min_length=lo, max_length=hi)]


Str = _str()
Bool = Annotated[bool, Field(strict=True)]
Port = _int(1, 65535)
Long = _int(INT64_MIN, INT64_MAX)  # App Mesh ``long`` without a range: int64
Count = _int(1, INT32_MAX)  # App Mesh ``integer 1..`` (32-bit): connection pool limits
Protocol = Literal["http", "tcp", "http2", "grpc"]
GatewayProtocol = Literal["http", "http2", "grpc"]
IpPreference = Literal["IPv6_PREFERRED", "IPv4_PREFERRED", "IPv4_ONLY", "IPv6_ONLY"]
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
HttpRetryEvent = Literal["server-error", "gateway-error", "client-error", "stream-error"]
GrpcRetryEvent = Literal["cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"]
TcpRetryEvent = Literal["connection-error"]
Toggle = Literal["ENABLED", "DISABLED"]


class SpecModel(BaseModel):
    """Base of every spec object: immutable, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OneOf(SpecModel):
    """An App Mesh union: exactly one member may be (and must be) set.

    Members are the model's fields in declaration order (which is the order the error
    message lists them in). ``which``/``chosen`` give the compiler the set member.
    """

    @model_validator(mode="after")
    def _exactly_one(self) -> "OneOf":
        members = list(type(self).model_fields)
        chosen = [m for m in members if getattr(self, m) is not None]
        if len(chosen) != 1:
            text = f"{members[0]} must be set" if len(members) == 1 else f"exactly one of {', '.join(members)} must be set"
            _fail([((), text)])
        return self

    @property
    def which(self) -> str:
        """Name of the member that is set (e.g. ``"dns"``)."""
        return next(m for m in type(self).model_fields if getattr(self, m) is not None)

    @property
    def chosen(self) -> Any:
        """Value of the member that is set."""
        return getattr(self, self.which)


def _checked(problems: list[tuple[Loc, str]], loc: Loc, problem: str | None) -> None:
    if problem is not None:
        problems.append((loc, problem))


class Duration(SpecModel):
    """``{unit: s|ms, value: long >= 0}``; both required (as in the k8s CRD). At most what
    Envoy holds (``envoy_rules.MAX_DURATION_SECONDS``)."""

    unit: Literal["s", "ms"]
    value: _int(0)

    @model_validator(mode="after")
    def _rules(self) -> "Duration":
        problem = envoy.duration_problem(self.value, self.unit)
        _fail([(("value",), problem)] if problem else [])
        return self

    def to_millis(self) -> int:
        return self.value * 1000 if self.unit == "s" else self.value


def _duplicate_ports(listeners: tuple | None) -> list[tuple[Loc, str]]:
    """Listeners of one resource must use distinct ports (App Mesh rejects duplicates)."""
    problems: list[tuple[Loc, str]] = []
    first: dict[int, int] = {}
    for i, listener in enumerate(listeners or ()):
        port = listener.portMapping.port
        if port in first:
            problems.append((("listeners", i, "portMapping", "port"), f"duplicate listener port {port} (also listeners[{first[port]}])"))
        else:
            first[port] = i
    return problems


# ---------------------------------------------------------------------------- Mesh


class EgressFilter(SpecModel):
    type: Literal["ALLOW_ALL", "DROP_ALL"]


class MeshServiceDiscovery(SpecModel):
    ipPreference: IpPreference | None = None


class MeshSpec(SpecModel):
    egressFilter: EgressFilter | None = None
    serviceDiscovery: MeshServiceDiscovery | None = None


# ---------------------------------------------------------------------------- VirtualService


class VirtualNodeServiceProvider(SpecModel):
    virtualNodeName: _str(1, 255)


class VirtualRouterServiceProvider(SpecModel):
    virtualRouterName: _str(1, 255)


class VirtualServiceProvider(OneOf):
    virtualNode: VirtualNodeServiceProvider | None = None
    virtualRouter: VirtualRouterServiceProvider | None = None


class VirtualServiceSpec(SpecModel):
    provider: VirtualServiceProvider | None = None


# ---------------------------------------------------------------------------- VirtualRouter


class PortMapping(SpecModel):
    port: Port
    protocol: Protocol


class VirtualRouterListener(SpecModel):
    portMapping: PortMapping


class VirtualRouterSpec(SpecModel):
    listeners: _items(VirtualRouterListener) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "VirtualRouterSpec":
        _fail(_duplicate_ports(self.listeners))
        return self


# ---------------------------------------------------------------------------- Route


class MatchRange(SpecModel):
    """``[start, end)``; the CRD webhook requires end > start."""

    end: Long
    start: Long

    @model_validator(mode="after")
    def _rules(self) -> "MatchRange":  # int64 both (Envoy's Int64Range)
        if self.end <= self.start:
            _fail([(("end",), f"must be greater than start ({self.start})")])
        return self


class HeaderMatchMethod(OneOf):
    """HTTP header / gRPC metadata value match (same shape in routes and gateway routes)."""

    exact: _str(1, 255) | None = None
    prefix: _str(1, 255) | None = None
    suffix: _str(1, 255) | None = None
    regex: _str(1, 255) | None = None
    range: MatchRange | None = None

    @model_validator(mode="after")
    def _rules(self) -> "HeaderMatchMethod":
        """What Envoy accepts: a value a header can hold, a regex RE2 compiles within Envoy's limit."""
        problems: list[tuple[Loc, str]] = []
        for field in ("exact", "prefix", "suffix"):
            value = getattr(self, field)
            if value is not None:
                _checked(problems, (field,), envoy.header_value_problem(value))
        if self.regex is not None:
            _checked(problems, ("regex",), envoy.regex_problem(self.regex))
        _fail(problems)
        return self


class HttpRouteHeader(SpecModel):
    invert: Bool = False
    match: HeaderMatchMethod | None = None
    name: _str(1, 50)

    @model_validator(mode="after")
    def _rules(self) -> "HttpRouteHeader":
        problem = envoy.header_name_problem(self.name)
        _fail([(("name",), problem)] if problem else [])
        return self


class GrpcRouteMetadata(SpecModel):
    invert: Bool = False
    match: HeaderMatchMethod | None = None
    name: _str(1, 50)

    @model_validator(mode="after")
    def _rules(self) -> "GrpcRouteMetadata":
        problem = envoy.header_name_problem(self.name)
        _fail([(("name",), problem)] if problem else [])
        return self


class HttpPathMatch(OneOf):
    exact: _str(1, 255) | None = None
    regex: _str(1, 255) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "HttpPathMatch":
        problem = envoy.regex_problem(self.regex) if self.regex is not None else None
        _fail([(("regex",), problem)] if problem else [])
        return self


class QueryParameterMatch(SpecModel):
    exact: Str | None = None


class HttpQueryParameter(SpecModel):
    match: QueryParameterMatch | None = None
    name: Str

    @model_validator(mode="after")
    def _rules(self) -> "HttpQueryParameter":
        problem = envoy.query_parameter_name_problem(self.name)
        _fail([(("name",), problem)] if problem else [])
        return self


class HttpRouteMatch(SpecModel):
    headers: _items(HttpRouteHeader, 1, 10) | None = None
    method: HttpMethod | None = None
    path: HttpPathMatch | None = None
    port: Port | None = None
    prefix: Str | None = None
    queryParameters: _items(HttpQueryParameter, 1, 10) | None = None
    scheme: Literal["http", "https"] | None = None

    @model_validator(mode="after")
    def _rules(self) -> "HttpRouteMatch":
        """App Mesh's API: at most one of prefix/path (neither matches every path, as ``/``: the
        multiple-listeners walkthrough matches on ``port`` alone); prefixes are absolute. The
        controller's webhook requires exactly one, for ``appmesh.k8s.aws`` routes only
        (``adapters.k8s``)."""
        problems: list[tuple[Loc, str]] = []
        if self.prefix is not None and self.path is not None:
            problems.append(((), "at most one of prefix, path may be set"))
        if self.prefix is not None and not self.prefix.startswith("/"):
            problems.append((("prefix",), "must start with '/'"))
        _fail(problems)
        return self


class WeightedTarget(SpecModel):
    port: Port | None = None
    virtualNode: _str(1, 255)
    weight: _int(0, 100)


class RouteAction(SpecModel):
    """``action`` of every route type (HttpRouteAction, GrpcRouteAction, TcpRouteAction)."""

    weightedTargets: _items(WeightedTarget, 1, 10)

    @model_validator(mode="after")
    def _some_weight(self) -> "RouteAction":
        """Weights are relative; all zero would leave Envoy nothing to pick (it rejects the route)."""
        if sum(t.weight for t in self.weightedTargets) == 0:
            _fail([(("weightedTargets",), "at least one target must have a weight above 0")])
        return self


class HttpRetryPolicy(SpecModel):
    httpRetryEvents: _items(HttpRetryEvent, 1, 25) | None = None
    maxRetries: _int(0, UINT32_MAX)
    perRetryTimeout: Duration
    tcpRetryEvents: _items(TcpRetryEvent, 1, 1) | None = None


class GrpcRetryPolicy(SpecModel):
    grpcRetryEvents: _items(GrpcRetryEvent, 1, 5) | None = None
    httpRetryEvents: _items(HttpRetryEvent, 1, 25) | None = None
    maxRetries: _int(0, UINT32_MAX)
    perRetryTimeout: Duration
    tcpRetryEvents: _items(TcpRetryEvent, 1, 1) | None = None


class HttpTimeout(SpecModel):
    """Also the shape of gRPC timeouts (``GrpcTimeout``)."""

    idle: Duration | None = None
    perRequest: Duration | None = None


class TcpTimeout(SpecModel):
    idle: Duration | None = None


class HttpRoute(SpecModel):
    """``httpRoute`` and ``http2Route`` (same shape)."""

    action: RouteAction
    match: HttpRouteMatch
    retryPolicy: HttpRetryPolicy | None = None
    timeout: HttpTimeout | None = None


class GrpcRouteMatch(SpecModel):
    metadata: _items(GrpcRouteMetadata, 1, 10) | None = None
    methodName: _str(1, 50) | None = None
    port: Port | None = None
    serviceName: Str | None = None

    @model_validator(mode="after")
    def _rules(self) -> "GrpcRouteMatch":
        if self.methodName is not None and self.serviceName is None:
            _fail([(("methodName",), "requires serviceName to be set")])
        return self


class GrpcRoute(SpecModel):
    action: RouteAction
    match: GrpcRouteMatch
    retryPolicy: GrpcRetryPolicy | None = None
    timeout: HttpTimeout | None = None


class TcpRouteMatch(SpecModel):
    port: Port | None = None


class TcpRoute(SpecModel):
    action: RouteAction
    match: TcpRouteMatch | None = None
    timeout: TcpTimeout | None = None


class RouteSpec(SpecModel):
    httpRoute: HttpRoute | None = None
    http2Route: HttpRoute | None = None
    grpcRoute: GrpcRoute | None = None
    tcpRoute: TcpRoute | None = None
    priority: _int(0, 1000) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "RouteSpec":
        if sum(getattr(self, t) is not None for t in ROUTE_TYPES) != 1:
            _fail([((), f"exactly one of {', '.join(ROUTE_TYPES)} must be set")])
        return self

    @property
    def route_type(self) -> str:
        """Which route type is set: ``httpRoute``, ``http2Route``, ``grpcRoute`` or ``tcpRoute``."""
        return route_of(self)[0]

    @property
    def route(self) -> HttpRoute | GrpcRoute | TcpRoute:
        """The set route object (whatever its type)."""
        return route_of(self)[1]


# ---------------------------------------------------------------------------- TLS (nodes and gateways)


class TlsFileCertificate(SpecModel):
    certificateChain: _str(1, 255)
    privateKey: _str(1, 255)


class TlsSdsCertificate(SpecModel):
    secretName: _str(1)  # Envoy's SdsSecretConfig.name: min_len 1


class TlsAcmCertificate(SpecModel):
    certificateArn: _str(1)  # names the SDS secret


class ListenerTlsCertificate(OneOf):
    acm: TlsAcmCertificate | None = None
    file: TlsFileCertificate | None = None
    sds: TlsSdsCertificate | None = None


class ClientTlsCertificate(OneOf):
    file: TlsFileCertificate | None = None
    sds: TlsSdsCertificate | None = None


class SubjectAlternativeNameMatchers(SpecModel):
    exact: _items(_str(1, 254))


class SubjectAlternativeNames(SpecModel):
    match: SubjectAlternativeNameMatchers


class TlsTrustFile(SpecModel):
    certificateChain: _str(1, 255)


class TlsTrustSds(SpecModel):
    secretName: _str(1)


class TlsTrustAcm(SpecModel):
    certificateAuthorityArns: _items(_str(1), 1, 3)


class ListenerTlsValidationTrust(OneOf):
    file: TlsTrustFile | None = None
    sds: TlsTrustSds | None = None


class ClientTlsValidationTrust(OneOf):
    acm: TlsTrustAcm | None = None
    file: TlsTrustFile | None = None
    sds: TlsTrustSds | None = None


class ListenerTlsValidation(SpecModel):
    subjectAlternativeNames: SubjectAlternativeNames | None = None
    trust: ListenerTlsValidationTrust


class ClientTlsValidation(SpecModel):
    subjectAlternativeNames: SubjectAlternativeNames | None = None
    trust: ClientTlsValidationTrust


class ListenerTls(SpecModel):
    certificate: ListenerTlsCertificate
    mode: Literal["STRICT", "PERMISSIVE", "DISABLED"]
    validation: ListenerTlsValidation | None = None


class ClientPolicyTls(SpecModel):
    certificate: ClientTlsCertificate | None = None
    enforce: Bool = True
    ports: _items(Port) | None = None
    validation: ClientTlsValidation


class ClientPolicy(SpecModel):
    tls: ClientPolicyTls | None = None


class BackendDefaults(SpecModel):
    clientPolicy: ClientPolicy | None = None


# ---------------------------------------------------------------------------- logging


class JsonFormatRef(SpecModel):
    key: _str(1, 100)
    value: _str(1, 100)


with warnings.catch_warnings():
    # App Mesh's member is called ``json``, which shadows the deprecated BaseModel.json().
    warnings.filterwarnings("ignore", message='Field name "json"')

    class LoggingFormat(OneOf):
        json: _items(JsonFormatRef) | None = None
        text: _str(1, 1000) | None = None
        # no rule on the operators, as on App Mesh: Envoy refuses a format with an operator it
        # does not know, so the compiler writes such parts literally and serve/validate warn
        # (``envoy_rules.servable_log_format``, ``compiler.mesh_warnings``)


class FileAccessLog(SpecModel):
    format: LoggingFormat | None = None
    path: _str(1, 255)


class AccessLog(OneOf):
    file: FileAccessLog | None = None


class Logging(SpecModel):
    accessLog: AccessLog | None = None


# ---------------------------------------------------------------------------- VirtualNode


def _health_check_problems(check: Any) -> list[tuple[Loc, str]]:
    """Envoy's HttpHealthCheck.path: a strict header value."""
    problems: list[tuple[Loc, str]] = []
    if check.path is not None:
        _checked(problems, ("path",), envoy.strict_header_value_problem(check.path))
    return problems


class HealthCheckPolicy(SpecModel):
    healthyThreshold: _int(2, 10)
    intervalMillis: _int(5000, 300000)
    path: Str | None = None
    port: Port | None = None
    protocol: Protocol
    timeoutMillis: _int(2000, 60000)
    unhealthyThreshold: _int(2, 10)

    @model_validator(mode="after")
    def _rules(self) -> "HealthCheckPolicy":
        _fail(_health_check_problems(self))
        return self


class OutlierDetection(SpecModel):
    baseEjectionDuration: Duration
    interval: Duration
    maxEjectionPercent: _int(0, 100)
    maxServerErrors: _int(1, UINT32_MAX)

    @model_validator(mode="after")
    def _rules(self) -> "OutlierDetection":
        """Envoy wants both durations above 0 (OutlierDetection: ``duration.gt: {}``)."""
        problems: list[tuple[Loc, str]] = []
        for field in ("baseEjectionDuration", "interval"):
            if getattr(self, field).value == 0:
                problems.append(((field, "value"), "must be greater than 0 (Envoy rejects a zero duration here)"))
        _fail(problems)
        return self


class ConnectionPoolRequests(SpecModel):
    """``grpc`` / ``http2`` connection pool."""

    maxRequests: Count


class ConnectionPoolHttp(SpecModel):
    maxConnections: Count
    maxPendingRequests: Count | None = None  # the compiler applies App Mesh's 2147483647


class ConnectionPoolTcp(SpecModel):
    maxConnections: Count


class VirtualNodeConnectionPool(OneOf):
    grpc: ConnectionPoolRequests | None = None
    http: ConnectionPoolHttp | None = None
    http2: ConnectionPoolRequests | None = None
    tcp: ConnectionPoolTcp | None = None


class ListenerTimeout(OneOf):
    grpc: HttpTimeout | None = None
    http: HttpTimeout | None = None
    http2: HttpTimeout | None = None
    tcp: TcpTimeout | None = None


def _listener_problems(listener: Any) -> list[tuple[Loc, str]]:
    """Per-listener rules shared by nodes and gateways: union members and health-check
    port must agree with ``portMapping`` (App Mesh / CRD webhook)."""
    protocol, port = listener.portMapping.protocol, listener.portMapping.port
    problems: list[tuple[Loc, str]] = []
    for field in ("connectionPool", "timeout"):
        union = getattr(listener, field, None)
        if union is not None and union.which != protocol:
            problems.append(((field,), f"{union.which} does not match the listener protocol {protocol} (portMapping.protocol); use {protocol}"))
    check = listener.healthCheck
    if check is not None and check.port is not None and check.port != port:
        problems.append((("healthCheck", "port"), f"must equal the listener port {port}"))
    return problems


class Listener(SpecModel):
    connectionPool: VirtualNodeConnectionPool | None = None
    healthCheck: HealthCheckPolicy | None = None
    outlierDetection: OutlierDetection | None = None
    portMapping: PortMapping
    timeout: ListenerTimeout | None = None
    tls: ListenerTls | None = None

    @model_validator(mode="after")
    def _rules(self) -> "Listener":
        _fail(_listener_problems(self))
        return self


class VirtualServiceBackend(SpecModel):
    clientPolicy: ClientPolicy | None = None
    virtualServiceName: Str


class Backend(OneOf):
    virtualService: VirtualServiceBackend | None = None


class AwsCloudMapInstanceAttribute(SpecModel):
    key: _str(1, 255)
    value: _str(1, 1024)


class AwsCloudMapServiceDiscovery(SpecModel):
    attributes: _items(AwsCloudMapInstanceAttribute) | None = None
    ipPreference: IpPreference | None = None
    namespaceName: _str(1, 1024)
    serviceName: _str(1, 1024)

    @model_validator(mode="after")
    def _rules(self) -> "AwsCloudMapServiceDiscovery":
        """``serviceName.namespaceName`` is the SNI of TLS towards this node (Envoy: at most 255 bytes)."""
        problem = envoy.sni_problem(f"{self.serviceName}.{self.namespaceName}")
        _fail([((), f"serviceName.namespaceName {problem}")] if problem else [])
        return self


class DnsServiceDiscovery(SpecModel):
    hostname: _str(1)  # Envoy's SocketAddress.address: min_len 1
    ipPreference: IpPreference | None = None
    responseType: Literal["LOADBALANCER", "ENDPOINTS"] = "LOADBALANCER"

    @model_validator(mode="after")
    def _rules(self) -> "DnsServiceDiscovery":
        """The hostname is also the SNI of TLS towards this node (Envoy: at most 255 bytes)."""
        problem = envoy.sni_problem(self.hostname)
        _fail([(("hostname",), problem)] if problem else [])
        return self


class ServiceDiscovery(OneOf):
    awsCloudMap: AwsCloudMapServiceDiscovery | None = None
    dns: DnsServiceDiscovery | None = None


class VirtualNodeSpec(SpecModel):
    backendDefaults: BackendDefaults | None = None
    backends: _items(Backend) | None = None
    listeners: _items(Listener) | None = None
    logging: Logging | None = None
    serviceDiscovery: ServiceDiscovery | None = None

    @model_validator(mode="after")
    def _rules(self) -> "VirtualNodeSpec":
        problems = _duplicate_ports(self.listeners)
        if self.listeners and self.serviceDiscovery is None:
            problems.append((("serviceDiscovery",), "required when listeners are defined"))
        first: dict[str, int] = {}
        for i, backend in enumerate(self.backends or ()):
            name = backend.virtualService.virtualServiceName
            if name in first:
                problems.append((("backends", i, "virtualService", "virtualServiceName"), f"duplicate backend '{name}' (also backends[{first[name]}])"))
            else:
                first[name] = i
        _fail(problems)
        return self


# ---------------------------------------------------------------------------- VirtualGateway


class VirtualGatewayPortMapping(SpecModel):
    port: Port
    protocol: GatewayProtocol


class VirtualGatewayHealthCheckPolicy(SpecModel):
    healthyThreshold: _int(2, 10)
    intervalMillis: _int(5000, 300000)
    path: Str | None = None
    port: Port | None = None
    protocol: GatewayProtocol
    timeoutMillis: _int(2000, 60000)
    unhealthyThreshold: _int(2, 10)

    @model_validator(mode="after")
    def _rules(self) -> "VirtualGatewayHealthCheckPolicy":
        _fail(_health_check_problems(self))
        return self


class VirtualGatewayConnectionPool(OneOf):
    grpc: ConnectionPoolRequests | None = None
    http: ConnectionPoolHttp | None = None
    http2: ConnectionPoolRequests | None = None


class VirtualGatewayListener(SpecModel):
    connectionPool: VirtualGatewayConnectionPool | None = None
    healthCheck: VirtualGatewayHealthCheckPolicy | None = None
    portMapping: VirtualGatewayPortMapping
    tls: ListenerTls | None = None

    @model_validator(mode="after")
    def _rules(self) -> "VirtualGatewayListener":
        _fail(_listener_problems(self))
        return self


class VirtualGatewaySpec(SpecModel):
    backendDefaults: BackendDefaults | None = None
    listeners: _items(VirtualGatewayListener, 1)
    logging: Logging | None = None

    @model_validator(mode="after")
    def _rules(self) -> "VirtualGatewaySpec":
        _fail(_duplicate_ports(self.listeners))
        return self


# ---------------------------------------------------------------------------- GatewayRoute

RESERVED_PREFIXES = ("/aws-appmesh", "/aws-app-mesh")


class GatewayRouteHostnameMatch(OneOf):
    exact: _str(1, 253) | None = None
    suffix: _str(1, 253) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "GatewayRouteHostnameMatch":
        """The match becomes an ``:authority`` regex, which must stay within Envoy's RE2 limit."""
        value = self.exact if self.exact is not None else self.suffix
        problem = envoy.regex_problem(envoy.authority_regex(value, exact=self.exact is not None)) if value is not None else None
        if problem is not None:
            problem = f"too long or complex for Envoy's :authority match ({problem})"
        _fail([((self.which,), problem)] if problem else [])
        return self


class HttpGatewayRouteMatch(SpecModel):
    headers: _items(HttpRouteHeader, 1, 10) | None = None
    hostname: GatewayRouteHostnameMatch | None = None
    method: HttpMethod | None = None
    path: HttpPathMatch | None = None
    port: Port | None = None
    prefix: Str | None = None
    queryParameters: _items(HttpQueryParameter, 1, 10) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "HttpGatewayRouteMatch":
        """CRD webhook: one of prefix/path/hostname; prefix and path exclusive; reserved prefixes."""
        problems: list[tuple[Loc, str]] = []
        if self.prefix is None and self.path is None and self.hostname is None:
            problems.append(((), "at least one of prefix, path, hostname must be set"))
        if self.prefix is not None and self.path is not None:
            problems.append(((), "at most one of prefix, path may be set"))
        if self.prefix is not None:
            if not self.prefix.startswith("/"):
                problems.append((("prefix",), "must start with '/'"))
            elif self.prefix.startswith(RESERVED_PREFIXES):
                problems.append((("prefix",), f"'{self.prefix}' is reserved ({', '.join(RESERVED_PREFIXES)} are App Mesh prefixes)"))
        _fail(problems)
        return self


class GatewayRouteVirtualService(SpecModel):
    virtualServiceName: _str(1, 255)


class GatewayRouteTarget(SpecModel):
    port: Port | None = None
    virtualService: GatewayRouteVirtualService


class GatewayRouteHostnameRewrite(SpecModel):
    defaultTargetHostname: Toggle | None = None


class HttpGatewayRoutePathRewrite(SpecModel):
    exact: _str(1, 255) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "HttpGatewayRoutePathRewrite":  # Envoy's prefix_rewrite: a header value
        problem = envoy.header_value_problem(self.exact) if self.exact is not None else None
        _fail([(("exact",), problem)] if problem else [])
        return self


class HttpGatewayRoutePrefixRewrite(SpecModel):
    defaultPrefix: Toggle | None = None
    value: _str(1, 255) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "HttpGatewayRoutePrefixRewrite":
        problems: list[tuple[Loc, str]] = []
        if self.defaultPrefix is not None and self.value is not None:
            problems.append(((), "at most one of defaultPrefix, value may be set"))
        if self.value is not None and not (self.value.startswith("/") and self.value.endswith("/")):
            problems.append((("value",), "must start and end with '/'"))
        if self.value is not None:
            _checked(problems, ("value",), envoy.header_value_problem(self.value))
        _fail(problems)
        return self


class HttpGatewayRouteRewrite(SpecModel):
    hostname: GatewayRouteHostnameRewrite | None = None
    path: HttpGatewayRoutePathRewrite | None = None
    prefix: HttpGatewayRoutePrefixRewrite | None = None


class HttpGatewayRouteAction(SpecModel):
    rewrite: HttpGatewayRouteRewrite | None = None
    target: GatewayRouteTarget


class HttpGatewayRoute(SpecModel):
    """``httpRoute`` and ``http2Route`` of a gateway route."""

    action: HttpGatewayRouteAction
    match: HttpGatewayRouteMatch


class GrpcGatewayRouteMatch(SpecModel):
    hostname: GatewayRouteHostnameMatch | None = None
    metadata: _items(GrpcRouteMetadata, 1, 10) | None = None
    port: Port | None = None
    serviceName: Str | None = None

    @model_validator(mode="after")
    def _rules(self) -> "GrpcGatewayRouteMatch":
        if self.serviceName is None and self.hostname is None:
            _fail([((), "at least one of serviceName, hostname must be set")])
        return self


class GrpcGatewayRouteRewrite(SpecModel):
    hostname: GatewayRouteHostnameRewrite | None = None


class GrpcGatewayRouteAction(SpecModel):
    rewrite: GrpcGatewayRouteRewrite | None = None
    target: GatewayRouteTarget


class GrpcGatewayRoute(SpecModel):
    action: GrpcGatewayRouteAction
    match: GrpcGatewayRouteMatch


class GatewayRouteSpec(SpecModel):
    httpRoute: HttpGatewayRoute | None = None
    http2Route: HttpGatewayRoute | None = None
    grpcRoute: GrpcGatewayRoute | None = None
    priority: _int(0, 1000) | None = None

    @model_validator(mode="after")
    def _rules(self) -> "GatewayRouteSpec":
        if sum(getattr(self, t) is not None for t in GATEWAY_ROUTE_TYPES) != 1:
            _fail([((), f"exactly one of {', '.join(GATEWAY_ROUTE_TYPES)} must be set")])
        return self

    @property
    def route_type(self) -> str:
        """Which route type is set: ``httpRoute``, ``http2Route`` or ``grpcRoute``."""
        return route_of(self)[0]

    @property
    def route(self) -> HttpGatewayRoute | GrpcGatewayRoute:
        """The set route object (whatever its type)."""
        return route_of(self)[1]


# ---------------------------------------------------------------------------- CloudMapService (meshplane)

IPV4, IPV6, PORT = "AWS_INSTANCE_IPV4", "AWS_INSTANCE_IPV6", "AWS_INSTANCE_PORT"


def _attribute_problems(attributes: dict[str, str]) -> list[tuple[Loc, str]]:
    """Cloud Map's DiscoverInstances rules: an IP is required, IPs and port must parse."""
    problems: list[tuple[Loc, str]] = []
    if IPV4 not in attributes and IPV6 not in attributes:
        problems.append((("attributes",), f"{IPV4} or {IPV6} is required"))
    for key, version in ((IPV4, 4), (IPV6, 6)):
        if key in attributes:
            try:
                ipaddress.ip_address(attributes[key])
                valid = ipaddress.ip_address(attributes[key]).version == version
            except ValueError:
                valid = False
            if not valid:
                problems.append((("attributes", key), f"not a valid IPv{version} address: '{attributes[key]}'"))
    port = attributes.get(PORT)
    if port is not None and not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        shown = port if len(port) <= 20 else port[:20] + "..."
        problems.append((("attributes", PORT), f"must be a port number 1..65535 (as a string), got '{shown}'"))
    for key, value in attributes.items():
        if not 1 <= len(key) <= 255:
            problems.append((("attributes",), f"attribute names must be 1..255 characters, got '{key[:40]}'"))
        if not 1 <= len(value) <= 1024:
            problems.append((("attributes", key), "must be 1..1024 characters"))
    return problems


class CloudMapInstance(SpecModel):
    """One registered instance, as Cloud Map's DiscoverInstances would return it."""

    instanceId: _str(1, 64) | None = None
    attributes: dict[_str(), _str()]

    @model_validator(mode="after")
    def _rules(self) -> "CloudMapInstance":
        _fail(_attribute_problems(self.attributes))
        return self

    @property
    def ipv4(self) -> str | None:
        return self.attributes.get(IPV4)

    @property
    def ipv6(self) -> str | None:
        return self.attributes.get(IPV6)

    @property
    def address(self) -> str:
        """The IPv4 address if registered, else the IPv6 one (Cloud Map's default order)."""
        return self.ipv4 or self.ipv6

    @property
    def port(self) -> int | None:
        value = self.attributes.get(PORT)
        return int(value) if value is not None else None


class CloudMapServiceSpec(SpecModel):
    """meshplane's stand-in for an AWS Cloud Map service: its registered instances."""

    instances: _items(CloudMapInstance) = ()

    @model_validator(mode="after")
    def _rules(self) -> "CloudMapServiceSpec":
        problems: list[tuple[Loc, str]] = []
        first: dict[str, int] = {}
        for i, instance in enumerate(self.instances):
            if instance.instanceId is None:
                continue
            if instance.instanceId in first:
                problems.append((("instances", i, "instanceId"), f"duplicate instanceId '{instance.instanceId}' (also instances[{first[instance.instanceId]}])"))
            else:
                first[instance.instanceId] = i
        _fail(problems)
        return self


# ---------------------------------------------------------------------------- by kind

SPEC_BY_KIND: dict[str, type[SpecModel]] = {
    "Mesh": MeshSpec,
    "VirtualService": VirtualServiceSpec,
    "VirtualRouter": VirtualRouterSpec,
    "Route": RouteSpec,
    "VirtualNode": VirtualNodeSpec,
    "VirtualGateway": VirtualGatewaySpec,
    "GatewayRoute": GatewayRouteSpec,
    "CloudMapService": CloudMapServiceSpec,
}
