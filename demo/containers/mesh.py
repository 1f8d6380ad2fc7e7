"""The compose meshes of demo/containers and their traffic checks.

* :class:`ComposeMesh` -- compose/docker-compose.yaml under podman-compose, with the run's
  image, labels, host ports and a private copy of the model folder (so edits never touch the
  checkout).
* :class:`ReplicasMesh` -- compose/docker-compose.replicas.yaml: PostgreSQL, two meshplane
  replicas on it, the mesh created through replica A's App Mesh API.
* :func:`upstream_of`, :func:`count_upstreams`, :func:`split_report` -- what answered through
  ``front``, and the observed split against the route's weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from demo.containers.labels import Run
from demo.containers.podman import (COMPOSE_DIR, REPO, ContainerError, free_port, podman, podman_env, podman_out,
                                    run_cmd, tool, wait_for)

COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"


# --- the compose mesh -----------------------------------------------------------------------

NODES = ("front", "catalog-v1", "catalog-v2")
SERVICES = ("meshplane", *NODES, *(f"{n}-proxyinit" for n in NODES), *(f"{n}-envoy" for n in NODES))


class ComposeMesh:
    """compose/docker-compose.yaml under podman-compose, for one run."""

    compose_file = COMPOSE_FILE

    def __init__(self, run: Run, image: str, workdir: Path):
        self.run = run
        self.image = image
        self.workdir = workdir
        self.project = f"mp-{run.id}"
        self.mesh_dir = workdir / "mesh"
        self.front_port = free_port()
        self.admin_port = free_port()
        self.http_port = free_port()

    # the model folder meshplane serves: a private copy, world-readable (meshplane is uid 1337)
    def prepare(self) -> None:
        shutil.copytree(COMPOSE_DIR / "mesh", self.mesh_dir)
        os.chmod(self.workdir, 0o755)
        os.chmod(self.mesh_dir, 0o755)
        for file in self.mesh_dir.iterdir():
            os.chmod(file, 0o644)

    @property
    def env(self) -> dict[str, str]:
        return podman_env({
            "MESHPLANE_IMAGE": self.image,
            "MESHPLANE_MESH_DIR": str(self.mesh_dir),
            "MESHPLANE_FRONT_PORT": str(self.front_port),
            "MESHPLANE_FRONT_ADMIN_PORT": str(self.admin_port),
            "MESHPLANE_HTTP_PORT": str(self.http_port),
            "MESHPLANE_PROJECT_LABEL": self.run.project,
            "MESHPLANE_RUN_ID": self.run.id,
        })

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return run_cmd([tool("podman-compose"), "--in-pod=false", "-p", self.project, "-f", str(self.compose_file), *args],
                       env=self.env, timeout=timeout, check=check, cwd=COMPOSE_DIR)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def up(self) -> None:
        """Start the mesh: the apps, meshplane and the proxyinit containers first; once every
        proxyinit has exited 0 (the rules are in place), the sidecars.

        The two steps do what `depends_on: {condition: service_completed_successfully}` says,
        which podman-compose turns into podman's --requires: with podman 4.3 that makes
        `podman start` of a sidecar fail ("generating dependency graph ... not found in input
        list"), since an exited proxyinit, itself joined to the app's namespace, would have to
        be started again. Hence --no-deps and the wait here."""
        self.prepare()
        first = [s for s in SERVICES if not s.endswith("-envoy")]
        self.compose("up", "-d", "--no-build", "--no-deps", *first)
        for name in NODES:
            container = self.container(f"{name}-proxyinit")
            code = podman_out("wait", container, timeout=120)
            if code != "0":
                raise ContainerError(f"{container} exited {code}: {podman('logs', container, check=False).stderr.strip()}")
        self.compose("up", "-d", "--no-build", "--no-deps", *[s for s in SERVICES if s.endswith("-envoy")])
        self.wait_ready()

    def down(self) -> None:
        self.compose("down", "-t", "2", timeout=120, check=False)

    def remove(self) -> None:
        """Remove this mesh's containers and network by label (the run's and the compose
        project's together), leaving the run's image for whatever else the run does."""
        both = ["--filter", self.run.filter, "--filter", f"label=io.podman.compose.project={self.project}"]
        ids = podman_out("ps", "-a", *both, "--format", "{{.ID}}").split()
        if ids:
            podman("rm", "-f", "-t", "0", *ids, check=False, timeout=120)
        nets = podman_out("network", "ls", *both, "--format", "{{.Name}}").split()
        if nets:
            podman("network", "rm", "-f", *nets, check=False)

    # --- talking to it
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.front_port}{path}"

    def admin(self, path: str) -> str:
        return _get(f"http://127.0.0.1:{self.admin_port}{path}")

    def status(self) -> dict:
        return json.loads(_get(f"http://127.0.0.1:{self.http_port}/status"))

    def exec(self, service: str, *cmd: str, user: str | None = None) -> str:
        args = ["exec"] + (["--user", user] if user else []) + [self.container(service), *cmd]
        return podman_out(*args)

    def logs(self) -> str:
        parts = []
        for name in podman_out("ps", "-a", "--filter", self.run.filter, "--format", "{{.Names}}").split():
            out = podman("logs", "--tail", "30", name, check=False)
            parts.append(f"--- {name}\n{(out.stdout + out.stderr).strip()}")
        return "\n".join(parts)

    def wait_ready(self, timeout: float = 90) -> None:
        """meshplane up, every node connected with its config ACKed, both catalog versions known
        to the front sidecar, and a first request answered through the mesh."""
        wait_for("meshplane's /healthz", lambda: _get(f"http://127.0.0.1:{self.http_port}/healthz"), timeout)

        def nodes_acked():
            nodes = self.status().get("nodes", {})
            for name in NODES:
                node = nodes.get(f"mesh/shop/virtualNode/{name}")
                if not node:
                    return False
                for t in ("cds", "lds"):
                    entry = node["types"].get(t) or {}
                    if entry.get("sent") is None or entry.get("acked") != entry.get("sent"):
                        return False
            return True

        wait_for("the three sidecars to connect and ACK their config", nodes_acked, timeout)
        wait_for("the front sidecar to be LIVE", lambda: '"LIVE"' in self.admin("/server_info"), timeout)

        def catalogs_resolved():
            clusters = self.admin("/clusters")
            return all(any(f"{version}" in line and "::health_flags::healthy" in line for line in clusters.splitlines())
                       for version in ("catalog-v1", "catalog-v2"))

        wait_for("the front sidecar to resolve catalog-v1 and catalog-v2", catalogs_resolved, timeout)
        wait_for("a request through front", lambda: upstream_of(self.url()) in ("catalog-v1", "catalog-v2"), timeout)

    # --- the model
    def set_weights(self, v1: int, v2: int) -> None:
        path = self.mesh_dir / "mesh.yaml"
        text = path.read_text()
        text, n = re.subn(r"(\{virtualNode: catalog-v1, weight: )\d+(\})", rf"\g<1>{v1}\g<2>", text)
        text, m = re.subn(r"(\{virtualNode: catalog-v2, weight: )\d+(\})", rf"\g<1>{v2}\g<2>", text)
        if n != 1 or m != 1:
            raise ContainerError("mesh.yaml: the catalog route's weightedTargets were not found")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic, like a deploy tool or a ConfigMap swap

    def route_versions(self) -> dict[str, Any]:
        nodes = self.status().get("nodes", {})
        return {name: (nodes.get(f"mesh/shop/virtualNode/{name}", {}).get("types", {}).get("rds") or {}).get("acked")
                for name in NODES}

    def wait_route_change(self, before: dict[str, Any], timeout: float = 30) -> float:
        """Seconds until the front sidecar (the one whose routes carry the weights) has ACKed a
        new route version, every stream of it."""
        started = time.monotonic()

        def changed():
            node = self.status().get("nodes", {}).get("mesh/shop/virtualNode/front") or {}
            rds = (node.get("types") or {}).get("rds") or {}
            return (rds.get("acked") is not None and rds.get("acked") != before.get("front")
                    and rds.get("acked") == rds.get("sent") and rds.get("acked_streams", node.get("streams")) == node.get("streams"))

        wait_for("the front sidecar to ACK the edited routes", changed, timeout, interval=0.05)
        return time.monotonic() - started


def _get(url: str, timeout: float = 5) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return response.read().decode()


def upstream_of(url: str, timeout: float = 5) -> str:
    """front's answer names the catalog version that served it (``upstream.app``)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return f"status:{exc.code}"
    upstream = body.get("upstream") or {}
    return upstream.get("app") or f"upstream:{upstream.get('status', upstream.get('error', '?'))}"


def count_upstreams(url: str, n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        key = upstream_of(url)
        counts[key] = counts.get(key, 0) + 1
    return counts


def split_report(counts: dict[str, int], weights: dict[str, int]) -> tuple[bool, list[str]]:
    """Lines describing the observed split against the weights (binomial tolerance, z=4)."""
    from harness.traffic import binomial_tolerance, split_violations

    n = sum(counts.values())
    total = sum(weights.values())
    lines = []
    for version, weight in weights.items():
        p = weight / total
        observed = counts.get(version, 0) / n if n else 0.0
        lines.append(f"{version}: {counts.get(version, 0):4d} of {n}  ({observed:6.1%}; route says {p:.0%} +/- {binomial_tolerance(n, p):.1%})")
    problems = split_violations(counts, weights)
    return not problems, lines + [f"PROBLEM: {p}" for p in problems]



# --- the replicated control plane (compose/docker-compose.replicas.yaml) ---------------------

REPLICAS_COMPOSE_FILE = COMPOSE_DIR / "docker-compose.replicas.yaml"
REPLICAS = ("meshplane-a", "meshplane-b")
REPLICA_SERVICES = ("postgres", *REPLICAS, *NODES, *(f"{n}-proxyinit" for n in NODES), *(f"{n}-envoy" for n in NODES))
# the demo key of compose/replicas/api-credentials.yaml (API requests through published ports are
# not from loopback, so they are SigV4-signed)
AWS_DEMO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKMESHPLANEDEMO", "AWS_SECRET_ACCESS_KEY": "meshplane-demo",
                        "AWS_DEFAULT_REGION": "us-west-2"}


class ReplicasMesh(ComposeMesh):
    """compose/docker-compose.replicas.yaml under podman-compose: PostgreSQL, two meshplane
    replicas on it, the mesh created through replica A's App Mesh API (``meshplane apply`` of
    compose/mesh/ from the host), and the three app pods whose sidecars list both replicas."""

    compose_file = REPLICAS_COMPOSE_FILE

    def __init__(self, run: Run, image: str, postgres_image: str, workdir: Path):
        super().__init__(run, image, workdir)
        self.postgres_image = postgres_image
        self.project = f"mpr-{run.id}"
        self.http_ports = {"meshplane-a": self.http_port, "meshplane-b": free_port()}

    def prepare(self) -> None:  # the model lives in PostgreSQL, not in a folder
        pass

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        env.update({
            "MESHPLANE_POSTGRES_IMAGE": self.postgres_image,
            "MESHPLANE_HTTP_PORT_A": str(self.http_ports["meshplane-a"]),
            "MESHPLANE_HTTP_PORT_B": str(self.http_ports["meshplane-b"]),
        })
        return env

    def api_url(self, replica: str) -> str:
        return f"http://127.0.0.1:{self.http_ports[replica]}"

    def up(self) -> None:
        """In three `up --no-deps` steps (see ComposeMesh.up for why not depends_on): PostgreSQL
        until it answers; the replicas, apps and proxyinit containers, then the mesh through
        replica A's API; the sidecars once every proxyinit has exited 0."""
        self.compose("up", "-d", "--no-build", "--no-deps", "postgres")
        pg = self.container("postgres")
        wait_for("PostgreSQL to accept connections",
                 lambda: podman("exec", pg, "pg_isready", "-q", "-h", "127.0.0.1", "-U", "meshplane", check=False).returncode == 0, 60, 0.3)
        first = [s for s in REPLICA_SERVICES if s != "postgres" and not s.endswith("-envoy")]
        self.compose("up", "-d", "--no-build", "--no-deps", *first)
        for replica in REPLICAS:
            wait_for(f"{replica}'s /healthz", lambda r=replica: _get(self.api_url(r) + "/healthz"), 60)
        self.apply(COMPOSE_DIR / "mesh", replica="meshplane-a")
        for name in NODES:
            container = self.container(f"{name}-proxyinit")
            code = podman_out("wait", container, timeout=120)
            if code != "0":
                raise ContainerError(f"{container} exited {code}: {podman('logs', container, check=False).stderr.strip()}")
        self.compose("up", "-d", "--no-build", "--no-deps", *[s for s in REPLICA_SERVICES if s.endswith("-envoy")])
        self.wait_ready()

    def apply(self, path: Path, replica: str) -> str:
        """``meshplane apply`` (the host's) of model files through ``replica``'s App Mesh API."""
        env = dict(os.environ, **AWS_DEMO_CREDENTIALS)
        return run_cmd([sys.executable, "-m", "xds_server.cli", "apply", "--api", self.api_url(replica), str(path)],
                       env=env, timeout=60, cwd=REPO).stdout

    def appmesh(self, replica: str):
        """A boto3 App Mesh client of ``replica``'s API."""
        import boto3
        from botocore.config import Config
        return boto3.client("appmesh", endpoint_url=self.api_url(replica), region_name=AWS_DEMO_CREDENTIALS["AWS_DEFAULT_REGION"],
                            aws_access_key_id=AWS_DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    # --- the replicas' view
    def replica_status(self, replica: str) -> dict:
        """A replica's /status, SigV4-signed with the demo key (the replicas have --api-credentials)."""
        import urllib.request

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.api_url(replica) + "/status"
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(Credentials(AWS_DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"], AWS_DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
                  "appmesh", AWS_DEMO_CREDENTIALS["AWS_DEFAULT_REGION"]).add_auth(request)
        req = urllib.request.Request(url, headers=dict(request.headers.items()))
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 - the demo's published port
            return json.loads(response.read())

    def alive_replicas(self) -> list[str]:
        return [r for r in REPLICAS if podman_out("inspect", "--format", "{{.State.Running}}", self.container(r)) == "true"]

    def holders(self) -> dict[str, str]:
        """node name -> the replica holding its ADS stream (nodes connected nowhere are left out)."""
        out = {}
        for replica in self.alive_replicas():
            with contextlib.suppress(OSError, ValueError):
                for node_id, node in self.replica_status(replica).get("nodes", {}).items():
                    if node.get("streams", 1) and node_id.startswith("mesh/shop/virtualNode/"):
                        out[node_id.rsplit("/", 1)[1]] = replica
        return out

    def node_status(self, name: str) -> dict | None:
        replica = self.holders().get(name)
        if replica is None:
            return None
        return self.replica_status(replica).get("nodes", {}).get(f"mesh/shop/virtualNode/{name}")

    def status(self) -> dict:
        """Every node as its holding replica reports it (ComposeMesh's helpers read this)."""
        nodes = {}
        for replica in self.alive_replicas():
            with contextlib.suppress(OSError, ValueError):
                nodes.update(self.replica_status(replica).get("nodes", {}))
        return {"nodes": nodes}

    def acked_versions(self) -> dict[str, dict[str, Any]]:
        """node -> {type: acked version} for the five core types, from the holding replica."""
        out = {}
        for name in NODES:
            node = self.node_status(name) or {}
            out[name] = {t: (entry or {}).get("acked") for t, entry in (node.get("types") or {}).items()
                         if t in ("cds", "eds", "lds", "rds")}
        return out

    def wait_ready(self, timeout: float = 90) -> None:
        for replica in REPLICAS:
            wait_for(f"{replica}'s /healthz", lambda r=replica: _get(self.api_url(r) + "/healthz"), timeout)
        super().wait_ready(timeout)  # reads status(): every node on whichever replica holds it
