"""The sidecar container honours App Mesh's stock variables, checked from inside the container:
the bootstrap the entrypoint wrote, Envoy's command line (admin port, log level, concurrency),
the uid Envoy runs as, and the root + MESHPLANE_ENABLE_IPTABLES=1 variant (no init container)."""

from __future__ import annotations

import json

import pytest
import yaml

from demo.containers import podman, podman_out, wait_for

ARN = "arn:aws:appmesh:us-west-2:111122223333:mesh/shop/virtualNode/catalog-v1"
NODE_ID = "mesh/shop/virtualNode/catalog-v1"   # the ARN's resource path: meshplane's node id

STOCK = {
    "APPMESH_RESOURCE_ARN": ARN,
    "MESHPLANE_XDS": "127.0.0.1:18000",   # nobody there: Envoy waits for it (ENVOY_INITIAL_FETCH_TIMEOUT)
    "ENVOY_ADMIN_ACCESS_PORT": "9911",
    "ENVOY_LOG_LEVEL": "debug",
    "ENVOY_CONCURRENCY": "1",
    "ENVOY_ADMIN_ACCESS_LOG_FILE": "/tmp/admin-access.log",
    "ENVOY_INITIAL_FETCH_TIMEOUT": "7",
    "APPMESH_RESOURCE_CLUSTER": "catalog-cluster",
}


def start(run, image: str, name: str, env: dict[str, str], *extra: str) -> str:
    container = run.name(name)
    args = ["run", "-d", "--name", container, "--network", "none", *run.label_args(), *extra]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    podman(*args, image)
    return container


def in_container(container: str, script: str, user: str | None = None) -> str:
    return podman_out("exec", *(["--user", user] if user else []), container, "sh", "-c", script)


def server_info(container: str, port: int) -> dict:
    def probe():
        out = podman("exec", container, "curl", "-s", f"http://127.0.0.1:{port}/server_info", check=False)
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.startswith("{") else None
    return wait_for(f"Envoy's admin on :{port} in {container}", probe, 60, interval=0.5)


@pytest.fixture(scope="module")
def stock_sidecar(container_run, meshplane_image):
    container = start(container_run, meshplane_image, "sidecar-stock", STOCK)
    yield container
    podman("rm", "-f", "-t", "0", container, check=False)


def test_bootstrap_written_from_the_stock_variables(stock_sidecar):
    server_info(stock_sidecar, 9911)
    bootstrap = yaml.safe_load(in_container(stock_sidecar, "cat /tmp/envoy.yaml"))
    assert bootstrap["node"]["id"] == NODE_ID
    assert bootstrap["node"]["cluster"] == "catalog-cluster"
    admin = bootstrap["admin"]
    assert admin["address"]["socket_address"]["port_value"] == 9911
    assert admin["address"]["socket_address"]["address"] == "0.0.0.0"
    assert "/tmp/admin-access.log" in json.dumps(admin)
    dynamic = bootstrap["dynamic_resources"]
    assert dynamic["cds_config"]["initial_fetch_timeout"] == "7s"
    assert dynamic["lds_config"]["initial_fetch_timeout"] == "7s"
    assert "127.0.0.1" in json.dumps(bootstrap["static_resources"]) and "18000" in json.dumps(bootstrap["static_resources"])


def envoy_process(container: str) -> str:
    """/proc status and command line of the one process named envoy in the container."""
    found = in_container(container, "for d in /proc/[0-9]*; do if [ \"$(cat $d/comm 2>/dev/null)\" = envoy ]; then "
                                    "cat $d/status; echo; tr '\\0' ' ' <$d/cmdline; echo; echo ---; fi; done")
    processes = [p for p in found.split("---") if p.strip()]
    assert len(processes) == 1, found
    return processes[0]


def test_envoy_runs_with_the_stock_admin_port_log_level_and_concurrency(stock_sidecar):
    info = server_info(stock_sidecar, 9911)
    options = info["command_line_options"]
    assert options["log_level"] == "debug"
    assert options["concurrency"] == 1
    assert info["node"]["id"] == NODE_ID
    assert info["node"]["cluster"] == "catalog-cluster"
    # Envoy runs as uid 1337, the uid the rules exempt, as the entrypoint's child (the
    # entrypoint stays PID 1 to drain Envoy on SIGTERM)
    status = envoy_process(stock_sidecar)
    assert "\nUid:\t1337\t" in status
    assert status.strip().splitlines()[-1].startswith("envoy -c /tmp/envoy.yaml --log-level debug")
    logging = in_container(stock_sidecar, "curl -s -X POST http://127.0.0.1:9911/logging")
    assert "admin: debug" in logging
    assert in_container(stock_sidecar, "test -s /tmp/admin-access.log && echo yes") == "yes"


def test_without_the_resource_arn_the_entrypoint_says_what_is_missing(container_run, meshplane_image):
    out = podman("run", "--rm", "--no-healthcheck", "--network", "none", *container_run.label_args(),
                 "-e", "MESHPLANE_XDS=127.0.0.1:18000", meshplane_image, check=False)
    assert out.returncode != 0
    assert "APPMESH_RESOURCE_ARN (or APPMESH_VIRTUAL_NODE_NAME / APPMESH_RESOURCE_NAME) is required" in out.stderr


def test_as_root_it_applies_the_rules_itself_and_drops_to_uid_1337(container_run, meshplane_image):
    env = {"APPMESH_RESOURCE_ARN": "mesh/shop/virtualNode/front", "MESHPLANE_XDS": "127.0.0.1:18000",
           "MESHPLANE_ENABLE_IPTABLES": "1", "APPMESH_APP_PORTS": "8080"}
    container = start(container_run, meshplane_image, "sidecar-root", env, "--user", "0:0", "--cap-add", "NET_ADMIN")
    try:
        server_info(container, 9901)
        assert "\nUid:\t1337\t" in envoy_process(container)
        rules = in_container(container, "/opt/meshplane/iptables.sh status", user="0:0")
        assert "-A APPMESH_INGRESS -p tcp -m multiport --dports 8080 -j REDIRECT --to-ports 15000" in rules
        assert "-A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 15001" in rules
    finally:
        podman("rm", "-f", "-t", "0", container, check=False)
