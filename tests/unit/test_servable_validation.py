"""What validation refuses so that an accepted write can always be served (issue 17).

Each case of the issue (values that validated and then could not be built, config Envoy
NACKs) is refused with the field path of the value; the largest value Envoy takes is
accepted and compiles.
"""
from __future__ import annotations

import pytest

from mesh_model import ModelError
from mesh_model.compiler import Placement, compile_node
from mesh_model.load.pipeline import load_documents
from mesh_model.node_id import NodeRef
from mesh_model.spec.envoy_rules import INT32_MAX, INT64_MAX, INT64_MIN, MAX_DURATION_SECONDS, UINT32_MAX, regex_problem

from harness import model_builders as mb


def _docs(*, route: dict | None = None, match: dict | None = None, listener: dict | None = None,
          gateway_match: dict | None = None, gateway_rewrite: dict | None = None, hostname: str = "b.m.local",
          logging: dict | None = None) -> list[dict]:
    return mb.documents(
        mb.mesh("m"),
        mb.virtual_service("m", "svc.m", router="r"),
        mb.virtual_router("m", "r", 8080),
        mb.route("m", "r", "rt", {"b": 100}, match=match, **(route or {})),
        mb.virtual_node("m", "b", listeners=[listener or mb.listener(8080)], host=hostname, **({"logging": logging} if logging else {})),
        mb.virtual_node("m", "a", backends=["svc.m"]),
        mb.virtual_gateway("m", "g", port=8443),
        mb.gateway_route("m", "g", "gr", "svc.m", match=gateway_match, rewrite=gateway_rewrite),
    )


def _issues(docs) -> list[str]:
    with pytest.raises(ModelError) as err:
        load_documents([(f"doc-{i}", doc) for i, doc in enumerate(docs)])
    return [f"{issue.path}: {issue.message}" for issue in err.value.issues]


def _serves(docs) -> None:
    model = load_documents([(f"doc-{i}", doc) for i, doc in enumerate(docs)])
    for ref in (NodeRef("m", "virtualNode", "a"), NodeRef("m", "virtualNode", "b"), NodeRef("m", "virtualGateway", "g")):
        compile_node(model, ref, Placement())


def _seconds(value: int, unit: str = "s") -> dict:
    return {"unit": unit, "value": value}


def _outlier(interval: int = 1, base: int = 1, errors: int = 5) -> dict:
    return {"interval": _seconds(interval), "baseEjectionDuration": _seconds(base), "maxEjectionPercent": 10, "maxServerErrors": errors}


REFUSED = [
    # (3) accepted, then impossible to build
    ("per-request timeout 10^12 s", dict(route={"timeout": {"perRequest": _seconds(10**12)}}), "spec.httpRoute.timeout.perRequest.value"),
    ("idle timeout in ms", dict(route={"timeout": {"idle": _seconds(MAX_DURATION_SECONDS * 1000 + 1, "ms")}}), "spec.httpRoute.timeout.idle.value"),
    ("per-retry timeout", dict(route={"retryPolicy": {"maxRetries": 1, "perRetryTimeout": _seconds(MAX_DURATION_SECONDS + 1)}}), "spec.httpRoute.retryPolicy.perRetryTimeout.value"),
    ("maxRetries 2^40", dict(route={"retryPolicy": {"maxRetries": 2**40, "perRetryTimeout": _seconds(1)}}), "spec.httpRoute.retryPolicy.maxRetries"),
    ("range end 2^64", dict(match={"prefix": "/", "headers": [{"name": "x", "match": {"range": {"start": 0, "end": 2**64}}}]}), "spec.httpRoute.match.headers[0].match.range.end"),
    ("range start below int64", dict(match={"prefix": "/", "headers": [{"name": "x", "match": {"range": {"start": INT64_MIN - 1, "end": 0}}}]}), "spec.httpRoute.match.headers[0].match.range.start"),
    ("listener idle 10^12 s", dict(listener=mb.listener(8080, timeout={"http": {"idle": _seconds(10**12)}})), "spec.listeners[0].timeout.http.idle.value"),
    ("maxConnections above int32", dict(listener=mb.listener(8080, connectionPool={"http": {"maxConnections": INT32_MAX + 1}})), "spec.listeners[0].connectionPool.http.maxConnections"),
    ("maxServerErrors above uint32", dict(listener=mb.listener(8080, outlierDetection=_outlier(errors=UINT32_MAX + 1))), "spec.listeners[0].outlierDetection.maxServerErrors"),
    # (4) config Envoy NACKs
    ("path regex (", dict(match={"path": {"regex": "("}}), "spec.httpRoute.match.path.regex"),
    ("lookahead", dict(match={"path": {"regex": "/(?=a)"}}), "spec.httpRoute.match.path.regex"),
    ("backreference", dict(match={"path": {"regex": r"/(a)\1"}}), "spec.httpRoute.match.path.regex"),
    ("a{1001}", dict(match={"path": {"regex": "a{1001}"}}), "spec.httpRoute.match.path.regex"),
    ("program size above 100", dict(match={"path": {"regex": "/" + "a" * 100}}), "spec.httpRoute.match.path.regex"),
    ("header regex [", dict(match={"prefix": "/", "headers": [{"name": "x", "match": {"regex": "["}}]}), "spec.httpRoute.match.headers[0].match.regex"),
    ("header name CR/LF", dict(match={"prefix": "/", "headers": [{"name": "x\r\ny"}]}), "spec.httpRoute.match.headers[0].name"),
    ("header name with a space", dict(match={"prefix": "/", "headers": [{"name": "x y"}]}), "spec.httpRoute.match.headers[0].name"),
    ("header value LF", dict(match={"prefix": "/", "headers": [{"name": "x", "match": {"exact": "a\nb"}}]}), "spec.httpRoute.match.headers[0].match.exact"),
    ("empty query parameter name", dict(match={"prefix": "/", "queryParameters": [{"name": ""}]}), "spec.httpRoute.match.queryParameters[0].name"),
    ("outlier interval 0", dict(listener=mb.listener(8080, outlierDetection=_outlier(interval=0))), "spec.listeners[0].outlierDetection.interval.value"),
    ("outlier base ejection 0", dict(listener=mb.listener(8080, outlierDetection=_outlier(base=0))), "spec.listeners[0].outlierDetection.baseEjectionDuration.value"),
    ("health check path LF", dict(listener=mb.listener(8080, healthCheck={"protocol": "http", "path": "/a\nb", "healthyThreshold": 2, "unhealthyThreshold": 2, "intervalMillis": 5000, "timeoutMillis": 2000})), "spec.listeners[0].healthCheck.path"),
    ("gateway path regex", dict(gateway_match={"path": {"regex": "("}}), "spec.httpRoute.match.path.regex"),
    ("gateway hostname beyond the RE2 limit", dict(gateway_match={"hostname": {"exact": "a" * 200 + ".com"}}), "spec.httpRoute.match.hostname.exact"),
    ("empty SDS secret name", dict(listener=mb.listener(8080, tls={"mode": "STRICT", "certificate": {"sds": {"secretName": ""}}})), "spec.listeners[0].tls.certificate.sds.secretName"),
    ("DNS hostname longer than an SNI", dict(listener=None, hostname="a" * 256), "spec.serviceDiscovery.dns.hostname"),
    ("gateway prefix rewrite LF", dict(gateway_match={"prefix": "/a/"}, gateway_rewrite={"prefix": {"value": "/b\n/"}}), "spec.httpRoute.action.rewrite.prefix.value"),
]


@pytest.mark.parametrize("case,parts,path", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_the_field_path(case, parts, path):
    assert any(issue.startswith(path + ":") for issue in _issues(_docs(**parts))), (case, _issues(_docs(**parts)))


ACCEPTED = [
    ("longest timeouts", dict(route={"timeout": {"perRequest": _seconds(MAX_DURATION_SECONDS), "idle": _seconds(MAX_DURATION_SECONDS * 1000, "ms")},
                                     "retryPolicy": {"maxRetries": UINT32_MAX, "perRetryTimeout": _seconds(MAX_DURATION_SECONDS)}})),
    ("widest range", dict(match={"prefix": "/", "headers": [{"name": "x", "match": {"range": {"start": INT64_MIN, "end": INT64_MAX}}}]})),
    ("largest pools and listener timeouts", dict(listener=mb.listener(8080, connectionPool={"http": {"maxConnections": INT32_MAX, "maxPendingRequests": INT32_MAX}},
                                                               timeout={"http": {"idle": _seconds(MAX_DURATION_SECONDS), "perRequest": _seconds(MAX_DURATION_SECONDS)}},
                                                               outlierDetection=_outlier(MAX_DURATION_SECONDS, MAX_DURATION_SECONDS, UINT32_MAX)))),
    ("program size 100, pseudo-header, mixed case", dict(match={"path": {"regex": "/" + "a" * 91}, "headers": [{"name": ":authority", "match": {"suffix": ".com"}}, {"name": "X-Case"}]})),
    ("gateway hostname at the limit", dict(gateway_match={"hostname": {"exact": "a" * 80 + ".com"}})),
    ("DNS hostname of 255 bytes", dict(hostname="a" * 255)),
    # App Mesh's API took any access log format (its own tests use %END_TIME%); the parts
    # Envoy would refuse are written to the log literally (test_log_formats_app_mesh_took_...)
    ("access log command Envoy does not know", dict(listener=None, logging={"accessLog": {"file": {"path": "/dev/stdout", "format": {"text": "%FOO%\n"}}}})),
    ("access log lone percent in JSON", dict(listener=None, logging={"accessLog": {"file": {"path": "/dev/stdout", "format": {"json": [{"key": "a", "value": "50%"}]}}}})),
]


@pytest.mark.parametrize("case,parts", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_limits_themselves_are_served(case, parts):
    _serves(_docs(**parts))


def test_regex_limit_is_envoys():
    """Program size 100 is accepted, 101 is not (measured with envoy 1.40 --mode validate)."""
    assert regex_problem("/" + "a" * 95) is None  # program size 100
    assert "program size 101" in regex_problem("/" + "a" * 96)


@pytest.mark.parametrize("first,second", [("a.m", "A.m"), ("a.m", "a.m:8080")])
def test_backends_envoy_would_see_as_one_host_are_refused(first, second):
    """Envoy refuses a route configuration with one domain twice, and compares domains ignoring
    case; each backend is a virtual host with domains ``name`` and ``name:port``."""
    docs = mb.documents(
        mb.mesh("m"), mb.virtual_router("m", "r", 8080), mb.route("m", "r", "rt", {"b": 100}),
        mb.virtual_service("m", first, router="r"), mb.virtual_service("m", second, router="r"),
        mb.virtual_node("m", "b", port=8080, host="b.m.local"),
        mb.virtual_node("m", "a", backends=[first, second]))
    assert any(issue.startswith("spec.backends[1].virtualService.virtualServiceName:") and "same host for Envoy" in issue
               for issue in _issues(docs)), _issues(docs)


def test_log_formats_app_mesh_took_are_served_literally_and_warned_about():
    from mesh_model.compiler import model_warnings

    logging = {"accessLog": {"file": {"path": "/dev/stdout", "format": {"json": [
        {"key": "end", "value": "%END_TIME%"}, {"key": "method", "value": "%REQ(:METHOD)%"}, {"key": "share", "value": "50%"}]}}}}
    model = load_documents([(f"d{i}", d) for i, d in enumerate(_docs(listener=None, logging=logging))])
    warnings = [w for w in model_warnings(model) if "accessLog" in w]
    assert [w.split(": ")[1] for w in warnings] == ["spec.logging.accessLog.file.format.json[0].value",
                                                     "spec.logging.accessLog.file.format.json[2].value"], warnings
    assert "%END_TIME% is not an Envoy access log command operator" in warnings[0]
    listeners = compile_node(model, NodeRef("m", "virtualNode", "b"))["type.googleapis.com/envoy.config.listener.v3.Listener"]
    served = b"".join(listener.SerializeToString() for listener in listeners.values())
    assert b"%%END_TIME%%" in served and b"50%%" in served and b"%REQ(:METHOD)%" in served
    assert b"%%REQ" not in served  # what Envoy knows is left as it is
