"""Random App Mesh models for the "validates => compiles => Envoy accepts" tests (issue 17).

Every spec is drawn from its shape class in ``mesh_model/spec/shapes.py``, field by field
(``shape_strategy``): a new field of the model is generated without touching this file.
Integers come extreme values first (0, 1, the int32/uint32/int64 edges and one past them,
Envoy's duration ceiling and one past it, protobuf's own duration ceiling, 2**64...), then
anything; strings come from small pools of the values that matter to Envoy (broken and
heavy regexes, header names with CR/LF, empty names) and from printable text. Names that
refer to other resources are drawn from the fixed skeleton of ``model_documents``, so most
generated documents are about their numbers and strings, not about dangling references.

``load_valid`` loads a model and, when some documents are rejected, drops exactly those
and loads again (a rejected document is the validation doing its job): what is left is a
model the server would accept, and that is what the tests compile.
"""
from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel

from mesh_model import ModelError
from mesh_model.load.pipeline import load_documents
from mesh_model.spec import shapes
from mesh_model.spec.envoy_rules import MAX_DURATION_MILLIS, MAX_DURATION_SECONDS

PROTO_DURATION_MAX_SECONDS = 315_576_000_000
EXTREME_INTS = [
    0, 1, 2, 5, 10, 100, 101, 1000, 2000, 5000, 60000, 300000, 65535, 65536,
    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**63, 2**64, -1, -(2**63), -(2**63) - 1,
    MAX_DURATION_SECONDS, MAX_DURATION_SECONDS + 1, MAX_DURATION_MILLIS, MAX_DURATION_MILLIS + 1,
    PROTO_DURATION_MAX_SECONDS, PROTO_DURATION_MAX_SECONDS + 1, 10**12,
]
REGEXES = [
    "/.*", "/a/[0-9]+", "(?i)/x", r"/\d+", "/[a-z]{1,10}", "[[:alpha:]]+", "/a|/b", "^/api/v[12]/.*$",
    "(", "[", "(?=a)", "(?!a)", r"(a)\1", "a{1001}", "a{1000}", "/" + "a" * 99, "/" + "a" * 100,
    "/" + "a" * 200, "(a+)+", r"\pL+", "\\", "*", "a**", "(?P<n>a)", "(?<n>a)", "\x00", "a\nb",
]
HEADER_NAMES = ["x-h", "X-Mixed-Case", "content-type", ":authority", ":path", "grpc-timeout", "a b", "a\r\nb",
                "a\nb", "x:y", "x\x00", ":", "é", "a_b", "~!#$%&'*+-.^`|"]
HEADER_VALUES = ["v", "a b", "/p", "a\r\nb", "a\nb", "x\x00", "\t", "é", "%"]
PATHS = ["/", "/a", "/a/", "/api/v1", "/a b", "/a\r\nb", "/é"]
ACCESS_LOG_TEXTS = ["%START_TIME% %REQ(:PATH)% %RESPONSE_CODE%\n", "plain text\n", "100%%\n", "100%\n", "%FOO%\n",
                    "%REQ%\n", "%PROTOCOL(x)%\n", "%START_TIME(%s)% %REQ(:PATH):5%\n"]
ACCESS_LOG_VALUES = ["%RESPONSE_CODE%", "%REQ(:PATH)%", "constant", "50%", "%NOPE%"]
HOSTNAMES = ["b.m.local", "10.0.0.2", "::1", "", "a" * 200, "a" * 255, "a" * 256, "x.example.com"]
GATEWAY_HOSTS = ["example.com", "*.example.com", "a" * 80, "a" * 95, "a" * 200, "Ex.Ample.COM", "é.example.com"]
PORTS = [8080, 8080, 8081, 9090, 0, 1, 65535, 65536]


def ints() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(EXTREME_INTS), st.integers())


def sometimes(tame: st.SearchStrategy, wild: st.SearchStrategy, one_in: int = 12) -> st.SearchStrategy:
    """``wild`` about once in ``one_in`` draws, else ``tame``: a model has dozens of fields, and
    one wild value in each would leave hardly any document valid. (Hypothesis favours 0, so
    0 is tame: shrinking goes towards tame values too.)"""
    return st.integers(0, one_in - 1).flatmap(lambda k: wild if k == one_in - 1 else tame)


def _text(pool: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(pool), st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12))


# field name -> strategy, for strings whose content matters to Envoy or that name other resources
STRING_FIELDS: dict[str, st.SearchStrategy] = {
    "regex": sometimes(st.sampled_from(REGEXES[:8]), st.sampled_from(REGEXES), 3),
    "exact": sometimes(st.sampled_from(["v", "/p", "/a/b"]), _text(HEADER_VALUES + PATHS)),
    "prefix": sometimes(st.sampled_from(["/", "/a", "/api/"]), st.sampled_from(PATHS + HEADER_VALUES)),
    "suffix": sometimes(st.sampled_from(["v", ".json"]), _text(HEADER_VALUES)),
    "name": sometimes(st.sampled_from(["x-h", "X-Mixed-Case", ":authority", "q"]), st.sampled_from(HEADER_NAMES + ["", "a" * 1025])),
    "virtualNode": sometimes(st.just("b"), st.just("b2"), 3),
    "virtualNodeName": st.just("b"),
    "virtualRouterName": st.just("r"),
    "virtualServiceName": st.just("svc.m"),
    "hostname": sometimes(st.just("b.m.local"), st.sampled_from(HOSTNAMES)),
    "certificateChain": st.just("tests/golden/mtls/certs/server.pem"),
    "privateKey": st.just("tests/golden/mtls/certs/server.key"),
    "secretName": sometimes(st.sampled_from(["s1", "meshplane:identity", "meshplane:trust"]), st.just("")),
    "certificateArn": st.just("arn:aws:acm:us-east-1:111122223333:certificate/c1"),
    "text": st.sampled_from(ACCESS_LOG_TEXTS),
    "key": st.sampled_from(["code", "path", "k"]),
    "value": st.sampled_from(ACCESS_LOG_VALUES + ["/x/", "/a b/", "/a\r\n/"]),
    "path": st.sampled_from(PATHS + ["/dev/stdout"]),
    "serviceName": st.sampled_from(["pkg.Svc", "Svc", ""]),
    "methodName": st.sampled_from(["Get", "a/b"]),
    "namespaceName": st.just("ns"),
}
# hostname matches of gateway routes (a class whose ``exact``/``suffix`` are hosts)
CLASS_STRING_FIELDS: dict[tuple[str, str], st.SearchStrategy] = {
    ("GatewayRouteHostnameMatch", "exact"): sometimes(st.just("example.com"), st.sampled_from(GATEWAY_HOSTS), 3),
    ("GatewayRouteHostnameMatch", "suffix"): sometimes(st.just(".example.com"), st.sampled_from(GATEWAY_HOSTS), 3),
    ("SubjectAlternativeNameMatchers", "exact"): st.lists(st.sampled_from(["b.m.local", "spiffe://m/b"]), min_size=1, max_size=2),
    ("TlsTrustAcm", "certificateAuthorityArns"): st.lists(st.just("arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/ca"), min_size=1, max_size=1),
    ("AwsCloudMapServiceDiscovery", "serviceName"): st.just("b"),
    # a file Envoy can open (whether it can is the Envoy host's business, not the model's)
    ("FileAccessLog", "path"): st.sampled_from(["/dev/stdout", "/dev/null"]),
}
INT_FIELDS: dict[str, st.SearchStrategy] = {"port": sometimes(st.just(8080), st.sampled_from(PORTS)),
                                            "weight": sometimes(st.integers(1, 100), st.sampled_from([0, 100, 101, -1]), 4)}


def _constraints(metadata) -> tuple[int | None, int | None]:
    lo = hi = None
    for item in metadata:
        if isinstance(item, (annotated_types.Ge, annotated_types.MinLen)):
            lo = getattr(item, "ge", getattr(item, "min_length", None))
        if isinstance(item, (annotated_types.Le, annotated_types.MaxLen)):
            hi = getattr(item, "le", getattr(item, "max_length", None))
        for sub in getattr(item, "metadata", ()) or ():  # a FieldInfo inside Annotated
            a, b = _constraints([sub])
            lo, hi = a if a is not None else lo, b if b is not None else hi
    return lo, hi


def _value(annotation: Any, metadata: list, owner: str, field: str) -> st.SearchStrategy:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = get_args(annotation)
        return _value(base, list(metadata) + meta, owner, field)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return st.one_of([_value(a, metadata, owner, field) for a in options])
    if (owner, field) in CLASS_STRING_FIELDS:
        return CLASS_STRING_FIELDS[(owner, field)]
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin is tuple:
        item = get_args(annotation)[0]
        lo, hi = _constraints(metadata)
        lo = lo or 0
        return st.lists(_value(item, [], owner, field), min_size=lo, max_size=min(hi or 3, max(lo, 3)))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return shape_strategy(annotation)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        if field in INT_FIELDS:
            return INT_FIELDS[field]
        lo, hi = _constraints(metadata)
        if lo is None and hi is None:
            return ints()
        tame = st.one_of(st.sampled_from([v for v in (lo, hi) if v is not None]), st.integers(lo, hi))
        return sometimes(tame, ints(), 6 if hi is None or hi > 10**6 else 16)
    if annotation is str:
        if field in STRING_FIELDS:
            return STRING_FIELDS[field]
        return _text(["/", "/a/", "a", "x-y"])
    raise TypeError(f"no strategy for {owner}.{field}: {annotation!r}")


def _one_path(d: dict) -> dict:
    """Routes: exactly one of prefix, path (most of the time)."""
    if "prefix" in d and "path" in d:
        d = dict(d)
        del d["path" if len(d) % 2 else "prefix"]
    elif "prefix" not in d and "path" not in d:
        d = {**d, "prefix": "/"}
    return d


# shape -> what makes most drawn dicts pass the rules between its fields
FIXUPS = {"HttpRouteMatch": _one_path, "HttpGatewayRouteMatch": _one_path,
          "GrpcGatewayRouteMatch": lambda d: d if "serviceName" in d or "hostname" in d else {**d, "serviceName": "pkg.Svc"},
          "GrpcRouteMatch": lambda d: d if "methodName" not in d or "serviceName" in d else {**d, "serviceName": "pkg.Svc"},
          "HttpGatewayRoutePrefixRewrite": lambda d: {k: v for k, v in d.items() if k != "defaultPrefix"} if "value" in d else d}


def shape_strategy(cls: type[BaseModel]) -> st.SearchStrategy[dict]:
    """A spec dict for shape ``cls`` (camelCase keys), every field drawn from its annotation."""
    fields = {name: _value(info.annotation, info.metadata, cls.__name__, name) for name, info in cls.model_fields.items()}
    if issubclass(cls, shapes.OneOf):
        one = [st.fixed_dictionaries({name: strategy}) for name, strategy in fields.items()]
        return st.one_of(one)
    required = {n: s for n, s in fields.items() if cls.model_fields[n].is_required()}
    optional = {n: s for n, s in fields.items() if not cls.model_fields[n].is_required()}
    drawn = st.fixed_dictionaries(required, optional=optional)
    fixup = FIXUPS.get(cls.__name__)
    return drawn if fixup is None else sometimes(drawn.map(fixup), drawn, 6)


def _router_listener(protocol: str, port: int = 8080) -> dict:
    return {"portMapping": {"port": port, "protocol": protocol}}


@st.composite
def model_documents(draw, mesh: str = "m") -> list[dict]:
    """One mesh: a service behind router ``r`` (two routes), nodes ``b``/``b2`` behind it, a
    caller ``a``, a gateway ``g`` with two gateway routes; every spec but the skeleton's
    references is drawn from its shape."""
    protocol = draw(st.sampled_from(["http", "http2", "grpc", "tcp"]))
    route_key = {"http": "httpRoute", "http2": "http2Route", "grpc": "grpcRoute", "tcp": "tcpRoute"}[protocol]
    route_shape = {"httpRoute": shapes.HttpRoute, "http2Route": shapes.HttpRoute, "grpcRoute": shapes.GrpcRoute, "tcpRoute": shapes.TcpRoute}[route_key]
    docs: list[dict] = [{"kind": "Mesh", "name": mesh, "spec": draw(shape_strategy(shapes.MeshSpec))}]
    docs.append({"kind": "VirtualService", "mesh": mesh, "name": "svc.m", "spec": {"provider": {"virtualRouter": {"virtualRouterName": "r"}}}})
    docs.append({"kind": "VirtualRouter", "mesh": mesh, "name": "r", "spec": {"listeners": [_router_listener(protocol)]}})
    for name in ("rt1", "rt2", "rt3", "rt4"):
        spec: dict = {route_key: draw(route_shape_strategy(route_shape))}
        if draw(st.booleans()):
            spec["priority"] = draw(sometimes(st.integers(0, 1000), ints()))
        docs.append({"kind": "Route", "mesh": mesh, "virtualRouter": "r", "name": name, "spec": spec})
    for name in ("b", "b2"):
        node = draw(shape_strategy(shapes.VirtualNodeSpec))
        listener = draw(shape_strategy(shapes.Listener))
        listener["portMapping"] = {"port": 8080, "protocol": protocol}
        node["listeners"] = [listener] + node.get("listeners", [])[:1]
        node.pop("backends", None)
        node.setdefault("serviceDiscovery", {"dns": {"hostname": f"{name}.m.local"}})
        docs.append({"kind": "VirtualNode", "mesh": mesh, "name": name, "spec": node})
    caller = draw(shape_strategy(shapes.VirtualNodeSpec))
    caller["backends"] = [{"virtualService": {"virtualServiceName": "svc.m", **draw(st.fixed_dictionaries({}, optional={"clientPolicy": shape_strategy(shapes.ClientPolicy)}))}}]
    caller.pop("listeners", None)
    caller.pop("serviceDiscovery", None)
    docs.append({"kind": "VirtualNode", "mesh": mesh, "name": "a", "spec": caller})
    gateway = draw(shape_strategy(shapes.VirtualGatewaySpec))
    gateway_protocol = "http" if protocol == "tcp" else protocol
    gateway["listeners"][0]["portMapping"] = {"port": 8443, "protocol": gateway_protocol}
    for listener in gateway["listeners"][1:]:
        listener.get("portMapping", {})["protocol"] = gateway_protocol
    docs.append({"kind": "VirtualGateway", "mesh": mesh, "name": "g", "spec": gateway})
    gateway_key = {"http": "httpRoute", "http2": "http2Route", "grpc": "grpcRoute"}[gateway_protocol]
    gateway_shape = shapes.GrpcGatewayRoute if gateway_key == "grpcRoute" else shapes.HttpGatewayRoute
    for name in ("gr1", "gr2", "gr3"):
        spec = {gateway_key: draw(shape_strategy(gateway_shape))}
        if draw(st.booleans()):
            spec["priority"] = draw(sometimes(st.integers(0, 1000), ints()))
        docs.append({"kind": "GatewayRoute", "mesh": mesh, "virtualGateway": "g", "name": name, "spec": spec})
    return docs


def route_shape_strategy(cls) -> st.SearchStrategy[dict]:
    return shape_strategy(cls)


def load_valid(docs: list[dict], *, rounds: int = 6):
    """The model of ``docs`` without the documents validation rejects (None if nothing valid is left)."""
    docs = list(docs)
    for _ in range(rounds):
        labelled = [(f"doc-{i}", doc) for i, doc in enumerate(docs)]
        try:
            return load_documents(labelled), docs
        except ModelError as exc:
            bad = {issue.file for issue in exc.issues}
            kept = [doc for label, doc in labelled if label not in bad]
            if len(kept) == len(docs) or not kept:
                return None, []
            docs = kept
    return None, []
