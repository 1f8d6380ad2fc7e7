"""Nothing Envoy would NACK is accepted (issue 17): random valid models through a real Envoy.

Models are drawn from the spec shapes (``tests/unit/servable_models.py``: every field,
extreme integers, broken and heavy regexes, odd header names first), reduced to what the
loader accepts, compiled for every node and gateway in both placements, and every output
goes through ``envoy --mode validate`` as a static bootstrap (as the golden tests do). To
keep it to a few Envoy runs, many nodes' bootstraps are merged into one: each model has its
own mesh name (so its clusters have their own names), listeners are renamed and moved to
ports of their own, and a cluster or secret whose name is already in the batch with other
content starts a new batch. A rejected batch is split to name the node, its placement, the
model and Envoy's message. Zero rejections.
"""
from __future__ import annotations

import copy
import json

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings

from mesh_model.compiler import CompileCache, compile_node
from mesh_model.render import dump_yaml, static_bootstrap
from harness.envoy import validate_config
from tests.paths import REPO
from tests.unit.servable_models import load_valid, model_documents
from tests.unit.test_servable_property import PLACEMENTS, node_refs

MODELS = 120
BATCH_NODES = 60


def _renamed(docs: list[dict], mesh: str) -> list[dict]:
    docs = copy.deepcopy(docs)
    for doc in docs:
        if doc["kind"] == "Mesh":
            doc["name"] = mesh
        else:
            doc["mesh"] = mesh
    return docs


def _draw_models() -> list[list[dict]]:
    drawn: list[list[dict]] = []

    @settings(max_examples=MODELS, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(model_documents())
    def collect(docs):
        drawn.append(_renamed(docs, f"m{len(drawn)}"))

    collect()
    return drawn


class _Batch:
    def __init__(self):
        self.listeners: list[dict] = []
        self.clusters: dict[str, dict] = {}
        self.secrets: dict[str, dict] = {}
        self.members: list[tuple[str, dict]] = []  # (what, single bootstrap)

    def fits(self, bootstrap: dict) -> bool:
        resources = bootstrap["static_resources"]
        for cluster in resources.get("clusters", []):
            if cluster["name"] in self.clusters and self.clusters[cluster["name"]] != cluster:
                return False
        for secret in resources.get("secrets", []):
            if secret["name"] in self.secrets and self.secrets[secret["name"]] != secret:
                return False
        return len(self.members) < BATCH_NODES

    def add(self, what: str, bootstrap: dict, port: int) -> int:
        resources = bootstrap["static_resources"]
        for cluster in resources.get("clusters", []):
            self.clusters.setdefault(cluster["name"], cluster)
        for secret in resources.get("secrets", []):
            self.secrets.setdefault(secret["name"], secret)
        for listener in resources.get("listeners", []):
            listener = copy.deepcopy(listener)
            listener["name"] = f"{listener['name']}~{len(self.members)}"
            for address in [listener.get("address")] + [a.get("address") for a in listener.get("additional_addresses", [])]:
                if address and "socket_address" in address:
                    address["socket_address"]["port_value"] = port
            port += 1
            self.listeners.append(listener)
        self.members.append((what, bootstrap))
        return port

    def bootstrap(self) -> dict:
        return {
            "node": {"id": "fuzz", "cluster": "fuzz"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
            "static_resources": {"listeners": self.listeners, "clusters": list(self.clusters.values()),
                                 **({"secrets": list(self.secrets.values())} if self.secrets else {})},
        }


def _envoy_errors(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if "critical" in line or "rror" in line)[:2000]


def test_random_valid_models_pass_envoy_validate(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # certificate files are named relative to the repository
    batches = [_Batch()]
    port = 20000
    models = compiled = 0
    sources: dict[str, list[dict]] = {}
    for docs in _draw_models():
        model, kept = load_valid(docs)
        if model is None:
            continue
        models += 1
        cache = CompileCache(model)
        for ref in node_refs(model):
            for placement in PLACEMENTS:
                what = f"{ref.node_id} ({'explicit' if placement.explicit else 'transparent'})"
                bootstrap = json.loads(json.dumps(static_bootstrap(ref, compile_node(model, ref, placement, cache))))
                sources[what] = kept
                if not batches[-1].fits(bootstrap):
                    batches.append(_Batch())
                port = batches[-1].add(what, bootstrap, port)
                compiled += 1
    assert models >= MODELS // 2 and compiled >= 100, (models, compiled)  # the test is about something
    print(f"{models} models, {compiled} node placements, {len(batches)} envoy runs")
    for i, batch in enumerate(batches):
        config = tmp_path / f"batch-{i}.yaml"
        config.write_text(dump_yaml(batch.bootstrap()))
        ok, output = validate_config(config)
        if ok:
            continue
        for what, single in batch.members:  # name the culprit
            one = tmp_path / "single.yaml"
            one.write_text(dump_yaml(single))
            single_ok, single_output = validate_config(one)
            if not single_ok:
                model_text = yaml.safe_dump_all(sources[what], sort_keys=False)
                pytest.fail(f"envoy --mode validate rejected {what}:\n{_envoy_errors(single_output)}\nmodel:\n{model_text}")
        pytest.fail(f"envoy --mode validate rejected batch {i} (but no member alone):\n{_envoy_errors(output)}")


# Regexes: our verdict (RE2 from google-re2, program size <= 100) against Envoy's own, around
# the limit for each kind of piece. They agree exactly on ASCII pieces; for pieces matching
# multi-byte UTF-8 characters ('.', '[^/]', '\pL', '(?i)k') google-re2 counts a larger program
# than Envoy 1.40's RE2 does, so validation refuses some regexes Envoy would take, never the reverse.
REGEX_PIECES = ["a", r"\d", r"\b", "(a|b)", "a{3}", r"\w", r"\s", "é", "x*", ".", "[^/]", r"\pL", r"\p{Greek}", "(?i)k"]
PLACEHOLDER = "/placeholder-regex"


def _regex_probes() -> list[str]:
    from mesh_model.spec.envoy_rules import MAX_REGEX_PROGRAM_SIZE
    import re2

    options = re2.Options()
    options.log_errors = False
    probes = ["(", "(?=a)", r"(a)\1", "a{1001}", "[", "a**", "(?P<n>a)", "(?<n>a)", r"\C", r"\pN+", r"\Q.\E"]
    for piece in REGEX_PIECES:
        k = 1
        while re2.compile("/" + piece * (k + 1), options).programsize <= MAX_REGEX_PROGRAM_SIZE and k < 200:
            k += 1
        probes += ["/" + piece * k, "/" + piece * (k + 1)]  # the largest we accept, and one more
    return probes


def test_regex_verdicts_never_accept_what_envoy_rejects(tmp_path):
    from mesh_model.load.pipeline import load_documents
    from mesh_model.node_id import NodeRef
    from mesh_model.spec.envoy_rules import regex_problem
    from harness import model_builders as mb

    model = load_documents([(f"d{i}", d) for i, d in enumerate(mb.documents(
        mb.mesh("m"), mb.virtual_service("m", "svc.m", router="r"), mb.virtual_router("m", "r", 8080),
        mb.route("m", "r", "rt", {"b": 100}, match={"path": {"regex": PLACEHOLDER}}),
        mb.virtual_node("m", "b", port=8080, host="b.m.local"), mb.virtual_node("m", "a", backends=["svc.m"])))])
    ref = NodeRef("m", "virtualNode", "a")
    data = json.loads(json.dumps(static_bootstrap(ref, compile_node(model, ref))))
    text = json.dumps(data)  # JSON is YAML: the regex goes in as a JSON string
    assert PLACEHOLDER in text
    disagreements, unsafe = [], []
    for regex in _regex_probes():
        ours = regex_problem(regex) is None
        config = tmp_path / "regex.json"
        config.write_text(text.replace(json.dumps(PLACEHOLDER), json.dumps(regex)))
        envoy_ok, _ = validate_config(config)
        if ours != envoy_ok:
            disagreements.append((regex, ours, envoy_ok))
            if ours and not envoy_ok:
                unsafe.append(regex)
    assert not unsafe, f"validation accepts regexes Envoy rejects: {unsafe}"
    # the known, safe direction: only pieces that match multi-byte UTF-8 characters ('.',
    # '[^/]', Unicode classes, and (?i) letters with a non-ASCII case fold: k -> U+212A, s -> U+017F)
    odd = [d for d in disagreements if not any(p in d[0] for p in (".", "[^/]", r"\p", "(?i)"))]
    assert not odd, (odd, disagreements)


LOG_FORMATS_ENVOY_REFUSES = ["%FOO%\n", "100%\n", "%START_TIME\n", "%REQ(:PATH\n", "%DOWNSTREAM_REMOTE_ADDRESS%:%x\n",
                             "%PROTOCOL(x)%\n", "%REQ%\n", "%REQ()%\n", "%REQ(:PATH\n%PROTOCOL%)%\n"]


def test_access_log_commands_are_envoys(tmp_path):
    """Every command operator validation knows is one Envoy takes (all at once, as JSON format
    values); every format it refuses here, Envoy refuses too."""
    from mesh_model.load.pipeline import load_documents
    from mesh_model.node_id import NodeRef
    from mesh_model.spec import envoy_rules
    from harness import model_builders as mb

    values = [f"%{name}%" for name in sorted(envoy_rules.LOG_COMMANDS_WITHOUT_ARGUMENTS)]
    values += [f"%{name}(x-a)%" for name in sorted(envoy_rules.LOG_COMMANDS_WITH_ARGUMENTS)]
    values += ["%START_TIME%", "%START_TIME(%Y-%m-%dT%H:%M:%S)%", "%REQ(:PATH):10%", "100%%"]
    assert all(envoy_rules.access_log_format_problem(v) is None for v in values)

    def node_config(log_format: dict) -> str:
        docs = mb.documents(mb.mesh("m"), mb.virtual_node("m", "b", port=8080, host="b.m.local", logging={
            "accessLog": {"file": {"path": "/dev/stdout", "format": log_format}}}))
        model = load_documents([(f"d{i}", d) for i, d in enumerate(docs)])
        ref = NodeRef("m", "virtualNode", "b")
        return json.dumps(static_bootstrap(ref, compile_node(model, ref)))  # JSON is YAML

    config = tmp_path / "log.json"
    config.write_text(node_config({"json": [{"key": f"k{i}", "value": v} for i, v in enumerate(values)]}))
    ok, output = validate_config(config)
    assert ok, _envoy_errors(output)
    placeholder = "%PROTOCOL% placeholder\n"
    text = node_config({"text": placeholder})
    assert json.dumps(placeholder) in text
    for log_format in LOG_FORMATS_ENVOY_REFUSES:
        assert envoy_rules.access_log_format_problem(log_format) is not None, log_format
        config.write_text(text.replace(json.dumps(placeholder), json.dumps(log_format)))
        ok, _ = validate_config(config)
        assert not ok, f"Envoy takes {log_format!r}, which validation refuses"
    # ... and compiled, each (as App Mesh took them) is written literally: Envoy takes them all
    config.write_text(node_config({"json": [{"key": f"k{i}", "value": v.strip()} for i, v in enumerate(LOG_FORMATS_ENVOY_REFUSES)]}))
    ok, output = validate_config(config)
    assert ok, _envoy_errors(output)
    config.write_text(node_config({"text": "".join(LOG_FORMATS_ENVOY_REFUSES)}))
    ok, output = validate_config(config)
    assert ok, _envoy_errors(output)
