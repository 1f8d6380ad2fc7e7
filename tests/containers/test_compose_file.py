"""compose/docker-compose.yaml stays plain Compose for Docker users: it validates against the
compose-spec JSON schema (check-jsonschema's vendored copy), podman-compose reads it, and it
holds no podman-only keys (podman's settings live in compose/containers.conf and on the
command line)."""

from __future__ import annotations

import yaml

from demo.containers import COMPOSE_DIR, COMPOSE_FILE, run_cmd, podman_env, tool

SERVICES = {"meshplane"} | {f"{n}{s}" for n in ("front", "catalog-v1", "catalog-v2") for s in ("", "-proxyinit", "-envoy")}


def test_validates_against_the_compose_spec_schema():
    out = run_cmd([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)], check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_podman_compose_reads_it():
    out = run_cmd([tool("podman-compose"), "-f", str(COMPOSE_FILE), "config"], cwd=COMPOSE_DIR, env=podman_env())
    config = yaml.safe_load(out.stdout)
    assert set(config["services"]) == SERVICES
    for node in ("front", "catalog-v1", "catalog-v2"):
        for role in ("proxyinit", "envoy"):
            assert config["services"][f"{node}-{role}"]["network_mode"] == f"service:{node}"
        assert config["services"][f"{node}-proxyinit"]["cap_add"] == ["NET_ADMIN"]
        assert config["services"][node]["user"] == "1000:1000"   # never the ignored uid 1337


def _keys(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (str(key),)
            yield from _keys(value, path + (str(key),))
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item, path)


def test_no_podman_only_keys_or_values():
    text = COMPOSE_FILE.read_text()
    config = yaml.safe_load(text)
    assert set(config) <= {"name", "services", "networks", "volumes", "configs", "secrets"} | {k for k in config if k.startswith("x-")}
    assert not [k for k in _keys(config) if k[-1].startswith("x-podman")]
    for name, service in config["services"].items():
        assert not str(service.get("network_mode", "")).startswith(("pod:", "ns:", "slirp4netns", "pasta")), name
        assert "userns_mode" not in service and "pod" not in service, name
    assert "untested" not in text.lower()
