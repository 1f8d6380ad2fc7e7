"""TLS: listener TLS (DownstreamTlsContext) and client policy TLS (UpstreamTlsContext).

App Mesh model -> Envoy, as App Mesh's own Envoy configuration did it (listener TLS on the
ingress listeners' filter chains, client policy TLS on the callers' egress clusters).
Choices where App Mesh is silent or AWS-specific are documented on the function that makes
them; in short:

* Certificates and trust: ``file`` -> file paths (``filename`` data sources, read by Envoy;
  a bad path or a key that does not match the chain makes Envoy NACK). ``sds`` -> an SDS
  secret reference *served by meshplane on the ADS stream* (``sds_config: {ads: {}}``) named
  ``secretName``; App Mesh used a Unix-socket SDS cluster for SPIRE instead, meshplane keeps
  everything on one stream. ``acm`` (no AWS here) -> also an SDS-over-ADS reference: a
  listener certificate is the secret named after ``certificateArn``; an ACM trust is the
  validation-context secret named by ``acm_trust_secret_name`` (the ARNs, sorted, joined by
  ``,``). meshplane's CA does not serve ACM secrets, so unless something serves a secret of
  that name, Envoy keeps such a listener or cluster warming (no traffic, no NACK).
* The mesh CA (a meshplane extension of App Mesh's ``sds`` source; ``meshplane serve
  --ca-dir``): two reserved secret names, served by meshplane's built-in CA on the ADS stream.
  ``sds: {secretName: meshplane:identity}`` as a listener certificate or a client policy
  certificate is the node's own short-lived mesh-CA certificate (URI SAN
  ``spiffe://<mesh>/virtualNode/<name>``, or ``spiffe://<trust-domain>/mesh/<mesh>/virtualNode/<name>``
  with ``--trust-domain``; plus the node's service-discovery name as a DNS or IP SAN) and its
  key; ``sds: {secretName: meshplane:trust}`` as a validation trust is the mesh CA's trust
  bundle (every root not retired). They compile like any other ``sds`` name; the CA renews
  and rotates them. ``serve`` finds them in a model (``xds_server/ca/mesh_secrets.py``) to warn
  when it runs without a CA, where they would never arrive, or when one is used in the wrong place.
* Subject alternative names (``match.exact``) -> ``match_typed_subject_alt_names``; the SAN
  type is taken from the value (``san_type``): an IP literal matches IP SANs, a value with a
  URI scheme (``spiffe://...``, ``https://...``, ``urn:...``) matches URI SANs, anything else DNS SANs (where
  Envoy honours a wildcard ``*.example.com`` in the certificate).
* Listener ``validation`` => mTLS: ``require_client_certificate`` + trusted CA (+ SANs if
  given; without SANs any certificate from the trusted CA is accepted, as App Mesh documents).
* Client policy validation without SANs: the server certificate must carry the target's
  service-discovery name (DNS hostname, or ``serviceName.namespaceName`` for Cloud Map), as
  App Mesh documents. SNI is that same name (omitted when it is an IP literal: RFC 6066
  forbids IP addresses in SNI).
* Without an applicable client policy, a caller still originates TLS (encrypt only, no
  certificate validation, no client certificate) towards a target listener whose TLS mode is
  STRICT or PERMISSIVE: App Mesh's documented behaviour, and what keeps a STRICT
  server reachable while clients are being migrated. DISABLED or no TLS -> plaintext.
"""
from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from mesh_model.compiler.common import ads_config_source, typed

if TYPE_CHECKING:  # pragma: no cover
    from mesh_model.spec.model import Resource
    from mesh_model.compiler.plan import NodePlan, Target

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
DOWNSTREAM_TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS_CONTEXT = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typedConfig": typed("envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"),
}

# ALPN: HTTP listeners accept h2 and HTTP/1.1 (the HCM codec is AUTO); upstream, offer what the
# cluster speaks (http2/grpc clusters are HTTP/2 only, http clusters HTTP/1.1). TCP: none.
_DOWNSTREAM_ALPN = {"http": ["h2", "http/1.1"], "http2": ["h2", "http/1.1"], "grpc": ["h2", "http/1.1"]}
_UPSTREAM_ALPN = {"http": ["http/1.1"], "http2": ["h2"], "grpc": ["h2"]}

# A URI SAN: scheme "://" (spiffe://, https://) or an opaque URN. "host:port" is not a URI here.
_URI_SCHEME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|urn:)", re.IGNORECASE)


# ---------------------------------------------------------------------------- sources

# Reserved SDS secret names served by meshplane's mesh CA (module docstring).
MESH_CA_PREFIX = "meshplane:"
MESH_CA_IDENTITY = "meshplane:identity"  # a certificate: the node's own mesh-CA certificate and key
MESH_CA_TRUST = "meshplane:trust"  # a validation trust: the mesh CA's trust bundle


def sds_secret(name: str) -> dict[str, Any]:
    """An SDS secret served by meshplane on the ADS stream (``sds_config: {ads: {}}``)."""
    return {"name": name, "sdsConfig": ads_config_source()}


def acm_trust_secret_name(arns) -> str:
    """The validation-context secret standing for ACM PCA trust: the ARNs, sorted, joined by ``,``.

    Envoy takes exactly one validation-context secret, App Mesh allows 1-3 CA ARNs: the secret
    that meshplane's CA serves under this name must bundle all of them in ``trusted_ca``.
    """
    return ",".join(sorted(arns))


def _certificate(cert) -> dict[str, Any]:
    """The ``common_tls_context`` piece for a listener or client certificate (file | sds | acm)."""
    if cert.file is not None:
        return {"tlsCertificates": [{
            "certificateChain": {"filename": cert.file.certificateChain},
            "privateKey": {"filename": cert.file.privateKey},
        }]}
    if cert.sds is not None:
        return {"tlsCertificateSdsSecretConfigs": [sds_secret(cert.sds.secretName)]}
    acm = getattr(cert, "acm", None)
    if acm is not None:  # no ACM here: meshplane delivers the certificate as an SDS secret named after the ARN
        return {"tlsCertificateSdsSecretConfigs": [sds_secret(acm.certificateArn)]}
    raise AssertionError("validated certificate has no source")


def san_type(value: str) -> str:
    """Envoy's SAN type for an App Mesh exact SAN: IP_ADDRESS, URI (has a scheme) or DNS."""
    try:
        ipaddress.ip_address(value)
        return "IP_ADDRESS"
    except ValueError:
        pass
    return "URI" if _URI_SCHEME.match(value) else "DNS"


def san_matchers(values) -> list[dict[str, Any]]:
    return [{"sanType": san_type(v), "matcher": {"exact": v}} for v in values]


def _validation(trust, sans: Optional[list[str]]) -> dict[str, Any]:
    """The ``common_tls_context`` piece validating the peer: trusted CA (file | sds | acm) + SANs."""
    matchers = {"matchTypedSubjectAltNames": san_matchers(sans)} if sans else {}
    if trust.file is not None:
        return {"validationContext": {"trustedCa": {"filename": trust.file.certificateChain}, **matchers}}
    if trust.sds is not None:
        name = trust.sds.secretName
    elif getattr(trust, "acm", None) is not None:
        name = acm_trust_secret_name(trust.acm.certificateAuthorityArns)
    else:
        raise AssertionError("validated trust has no source")
    # The trusted CA arrives by SDS; the SAN matchers stay in the compiled config.
    return {"combinedValidationContext": {"defaultValidationContext": matchers, "validationContextSdsSecretConfig": sds_secret(name)}}


def _sans(validation) -> list[str]:
    sans = validation.subjectAlternativeNames
    return list(sans.match.exact) if sans is not None and sans.match is not None else []


# ---------------------------------------------------------------------------- listener TLS


def listener_tls_mode(listener) -> str:
    """STRICT | PERMISSIVE | DISABLED; a listener without ``tls`` is DISABLED."""
    return listener.tls.mode if listener.tls is not None else "DISABLED"


def downstream_transport_socket(listener) -> dict[str, Any]:
    """The DownstreamTlsContext of a listener whose mode is STRICT or PERMISSIVE.

    ``validation`` => mutual TLS: the client must present a certificate from the trusted CA
    (and, when SANs are listed, one of them).
    """
    tls = listener.tls
    common: dict[str, Any] = _certificate(tls.certificate)
    context: dict[str, Any] = {}
    if tls.validation is not None:
        common.update(_validation(tls.validation.trust, _sans(tls.validation)))
        context["requireClientCertificate"] = True
    alpn = _DOWNSTREAM_ALPN.get(listener.portMapping.protocol)
    if alpn:
        common["alpnProtocols"] = alpn
    context["commonTlsContext"] = common
    return {"name": TLS_TRANSPORT_SOCKET, "typedConfig": typed(DOWNSTREAM_TLS_CONTEXT, context)}


def listener_filter_chains(listener, filters: list, match: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """The filter chains serving one virtual-node listener, by TLS mode.

    * DISABLED (or no ``tls``): one plaintext chain.
    * STRICT: one chain, TLS only. There is no transport-protocol match, so no TLS inspector is
      needed (and server-first protocols do not stall); a plaintext client fails the handshake
      and is disconnected.
    * PERMISSIVE: a TLS chain matching ``transport_protocol: tls`` and a plaintext chain for
      the rest; the listener needs ``tls_inspector`` (``needs_tls_inspector``).

    ``match`` is the chain's base ``filter_chain_match`` (the original destination port on
    the transparent path), repeated on every chain of the listener.
    """
    base = dict(match or {})
    mode = listener_tls_mode(listener)
    if mode == "DISABLED":
        return [_chain(base, filters)]
    tls = downstream_transport_socket(listener)
    if mode == "STRICT":
        return [_chain(base, filters, tls)]
    return [_chain({**base, "transportProtocol": "tls"}, filters, tls), _chain(base, filters)]


def _chain(match: Mapping[str, Any], filters: list, transport_socket: Optional[dict] = None) -> dict[str, Any]:
    chain: dict[str, Any] = {}
    if match:
        chain["filterChainMatch"] = dict(match)
    chain["filters"] = filters
    if transport_socket is not None:
        chain["transportSocket"] = transport_socket
    return chain


def needs_tls_inspector(listeners) -> bool:
    return any(listener_tls_mode(l) == "PERMISSIVE" for l in listeners)


def tls_inspector_for_ports(listeners) -> dict[str, Any]:
    """``tls_inspector`` for a listener serving several ports (transparent path), run only on PERMISSIVE ports.

    The inspector waits for the client's first bytes; on ports of server-first protocols
    (MySQL, SMTP) that would stall every connection until the listener-filter timeout (as
    App Mesh's egress listener did to such protocols). ``filter_disabled`` keeps it off the
    connections to every other original destination port.
    """
    ports = sorted({l.portMapping.port for l in listeners if listener_tls_mode(l) == "PERMISSIVE"})
    rules = [{"destinationPortRange": {"start": p, "end": p + 1}} for p in ports]
    permissive = rules[0] if len(rules) == 1 else {"orMatch": {"rules": rules}}
    return {**TLS_INSPECTOR, "filterDisabled": {"notMatch": permissive}}


# ---------------------------------------------------------------------------- client policy TLS


def _backend_policies(node: "Resource") -> tuple[Any, dict[str, Any]]:
    spec = node.spec
    defaults = None
    if spec.backendDefaults is not None and spec.backendDefaults.clientPolicy is not None:
        defaults = spec.backendDefaults.clientPolicy.tls
    per_backend = {}
    for backend in getattr(spec, "backends", None) or ():  # a virtual gateway has only defaults
        vs = backend.virtualService
        if vs is not None and vs.clientPolicy is not None and vs.clientPolicy.tls is not None:
            per_backend[vs.virtualServiceName] = vs.clientPolicy.tls
    return defaults, per_backend


def policy_applies(policy, port: int) -> bool:
    """An enforced policy whose ``ports`` include ``port`` (no ports = every port)."""
    return policy is not None and policy.enforce and (not policy.ports or port in policy.ports)


def client_policies(plan: "NodePlan") -> Callable[["Target"], Any]:
    """The calling node's client policy TLS for each target listener (``None``: none), as a
    function of the target: the caller's policies are read once for all its targets (and
    most callers have none).

    A backend's own ``clientPolicy.tls`` replaces ``backendDefaults.clientPolicy.tls``
    wholesale (no field-by-field merge); a backend without one uses the defaults. A policy
    applies to a target when it is enforced and its ``ports`` include the target's port.

    Every caller's snapshot is its own, so the caller's policy shapes its copy of the shared
    ``cds_egress_...`` cluster. When several backends of the caller reach the same target
    listener (e.g. two routers both routing to it), the cluster is one, so one policy must win:
    the first *applicable* effective policy, taking backends in virtual-service name order.
    A backend whose policy does not apply (``enforce: false``, other ports) does not turn
    TLS off for a target that another backend's policy protects.
    """
    defaults, per_backend = _backend_policies(plan.node)
    if defaults is None and not per_backend:
        return _no_policy
    return lambda target: _first_applicable(plan, target, defaults, per_backend)


def _no_policy(_target: "Target") -> None:
    return None


def _first_applicable(plan: "NodePlan", target: "Target", defaults, per_backend: dict[str, Any]):
    services = sorted({sp.service for sp in plan.backends if target in sp.targets})
    for service in services:
        policy = per_backend.get(service, defaults)
        if policy_applies(policy, target.port):
            return policy
    return None


def service_discovery_name(node: "Resource") -> Optional[str]:
    """The name a server certificate must carry when the client lists no SANs (App Mesh)."""
    sd = node.spec.serviceDiscovery
    if sd is None:
        return None
    if sd.dns is not None:
        return sd.dns.hostname
    return f"{sd.awsCloudMap.serviceName}.{sd.awsCloudMap.namespaceName}"


def upstream_transport_socket(target_node: "Resource", target_listener, protocol: str, policy=None) -> Optional[dict[str, Any]]:
    """The UpstreamTlsContext of a caller's egress cluster for one target listener, or ``None``.

    * an applicable client policy (``client_policies``): TLS with SNI, validation of the
      server certificate (trust + SANs; default SAN = the target's service-discovery name) and
      the client certificate, if any, for mTLS;
    * otherwise, a target listener in STRICT or PERMISSIVE mode: TLS without validation
      (App Mesh originates TLS towards TLS listeners even without a client policy);
    * otherwise plaintext (``None``).
    """
    if policy is None and listener_tls_mode(target_listener) == "DISABLED":
        return None
    sd_name = service_discovery_name(target_node)
    common: dict[str, Any] = {}
    if policy is not None:
        if policy.certificate is not None:
            common.update(_certificate(policy.certificate))
        sans = _sans(policy.validation) or ([sd_name] if sd_name else [])
        common.update(_validation(policy.validation.trust, sans))
    alpn = _UPSTREAM_ALPN.get(protocol)
    if alpn:
        common["alpnProtocols"] = alpn
    context: dict[str, Any] = {}
    if sd_name and san_type(sd_name) != "IP_ADDRESS":
        context["sni"] = sd_name
    context["commonTlsContext"] = common
    return {"name": TLS_TRANSPORT_SOCKET, "typedConfig": typed(UPSTREAM_TLS_CONTEXT, context)}
