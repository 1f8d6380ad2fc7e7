"""The transparent data path, for real: App Mesh's iptables rules + Envoy 1.40 + meshplane.

Two network namespaces made by this module (named with the pid, deleted in a finalizer) and a
veth pair between them, on TEST-NET-1 (192.0.2.0/24) addresses that exist only inside them:

    PEER  192.0.2.1      the rest of the network: the client, the catalog instances
          192.0.2.11     catalog-v1 app :8080 (and "plain" app :9000, an egress-ignored port)
          192.0.2.12     catalog-v2 app :8080
          192.0.2.13     "metadata" app :8080 (an egress-ignored address)
      |  veth
    POD   192.0.2.2      the task/pod of virtual node "front":
                         front app on 127.0.0.1:8080 (reachable from outside only through Envoy)
                         "side" app on 0.0.0.0:9100 (not an app port)
                         Envoy as uid 1337, started by envoy/entrypoint.sh (ingress 15000, egress 15001)
                         meshplane serve on 127.0.0.1:18000 (xDS) / :18001 (status)
                         envoy/iptables.sh start, unmodified, with App Mesh's APPMESH_* variables

Why two namespaces and not one with 127.x addresses: App Mesh's rules hinge on address types —
ingress is ``PREROUTING -m addrtype ! --src-type LOCAL`` (traffic arriving from elsewhere),
egress ``OUTPUT -m addrtype ! --dst-type LOCAL`` (traffic leaving the host). In one namespace
every 127.x address is LOCAL, and a connection made on the host gets its NAT decision in OUTPUT:
the nat PREROUTING chain never sees it (checked: a plain PREROUTING REDIRECT counts 0 packets for
a loopback connection). One namespace could only test a rewritten rule set, not the script as
shipped. A veth pair makes 192.0.2.2 a real interface address, so the exact rules App Mesh
installs are what this test exercises.

The test process itself never leaves its namespace: requests "from" a namespace run on a worker
thread that entered it with setns(2) (network namespaces are per thread). Every process runs
as ``ip netns exec NS ...`` in a ProcessGroup and is killed by pid. The root namespace's
iptables are never touched.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from harness.mesh import MeshRunner
from harness.netns import (
    ENVOY_UID, IPTABLES_SH, Netns, create_netns, delete_netns, iptables_env, probe, require_tools, start_app,
    start_serve, start_sidecar, veth,
)
from harness.processes import ProcessGroup, pgid_members, wait_until
from harness.traffic import http_get, split_violations
from harness.model_builders import mesh, route, virtual_node, virtual_router, virtual_service, write_model

FRONT = "mesh/shop/virtualNode/front"
PORT = 8080  # the virtual nodes' listener port (APPMESH_APP_PORTS)
UNLISTENED_APP_PORT = 8081  # in APPMESH_APP_PORTS, but no virtual-node listener: no filter chain
SIDE_PORT = 9100  # a port of the pod that is not an app port: inbound bypasses Envoy
IGNORED_PORT = 9000  # APPMESH_EGRESS_IGNORED_PORTS
POD_IP, PEER_IP = "192.0.2.2", "192.0.2.1"
V1_IP, V2_IP, METADATA_IP = "192.0.2.11", "192.0.2.12", "192.0.2.13"
CATALOG_VIP = "192.0.2.100"  # what catalog.shop.local resolves to in the pod: nobody has it
XDS, STATUS = ("127.0.0.1", 18000), ("127.0.0.1", 18001)
ADMIN = ("127.0.0.1", 9901)
WEIGHTS = {"catalog-v1": 3, "catalog-v2": 1}

IPTABLES_ENV = {
    "APPMESH_APP_PORTS": f"{PORT},{UNLISTENED_APP_PORT}",
    "APPMESH_EGRESS_IGNORED_PORTS": str(IGNORED_PORT),
    "APPMESH_EGRESS_IGNORED_IP": METADATA_IP,
    "APPMESH_ENABLE_IPV6": "1",
}

MODEL = [
    mesh("shop"),
    virtual_service("shop", "catalog.shop.local", router="catalog-router"),
    virtual_router("shop", "catalog-router", PORT),
    route("shop", "catalog-router", "main", WEIGHTS),
    virtual_node("shop", "front", port=PORT, host=POD_IP, backends=["catalog.shop.local"]),
    virtual_node("shop", "catalog-v1", port=PORT, host=V1_IP),
    virtual_node("shop", "catalog-v2", port=PORT, host=V2_IP),
]



# --- the mesh -----------------------------------------------------------------------------

class Net:
    pass


@pytest.fixture(scope="module")
def net(tmp_path_factory, envoy_binary):
    require_tools()
    env = Net()
    suffix = os.getpid()
    env.pod, env.peer = Netns(f"mp-pod-{suffix}"), Netns(f"mp-peer-{suffix}")
    work = tmp_path_factory.mktemp("transparent")
    # Files Envoy (uid 1337) reads: a world-readable directory of their own.
    env.shared = Path(tempfile.mkdtemp(prefix="meshplane-transparent-"))
    env.shared.chmod(0o755)
    group = ProcessGroup(log_dir=work / "logs")

    def cleanup() -> None:
        group.close()
        for ns in (env.pod, env.peer):
            ns.close()
            delete_netns(ns.name)
        shutil.rmtree(env.shared, ignore_errors=True)

    atexit.register(cleanup)  # also on an interrupted run; cleanup is idempotent
    try:
        # -- the two namespaces and the wire between them
        create_netns(env.pod, env.peer)  # (a leftover of a crashed run with this pid is removed first)
        veth(env.pod, [f"{POD_IP}/24"], env.peer, [f"{a}/24" for a in (PEER_IP, V1_IP, V2_IP, METADATA_IP)])

        # -- App Mesh's interception in the pod, as the proxyinit container would apply it
        env.iptables_env = iptables_env(IPTABLES_ENV)
        env.pod.run("sh", IPTABLES_SH, "start", env=env.iptables_env)

        # -- the apps: the rest of the network, then the pod's
        hosts = env.shared / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{CATALOG_VIP} catalog.shop.local\n")
        private_hosts = ("unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts)
        env.apps = {
            "catalog-v1": start_app(group, env.peer, "catalog-v1", V1_IP, PORT),
            "catalog-v2": start_app(group, env.peer, "catalog-v2", V2_IP, PORT),
            "plain": start_app(group, env.peer, "plain", V1_IP, IGNORED_PORT),
            "metadata": start_app(group, env.peer, "metadata", METADATA_IP, PORT),
            # the front app resolves catalog.shop.local through its own /etc/hosts (a private mount)
            "front": start_app(group, env.pod, "front", "127.0.0.1", PORT, prefix=private_hosts,
                                extra=("--call", f"http://catalog.shop.local:{PORT}")),
            "side": start_app(group, env.pod, "side", "0.0.0.0", SIDE_PORT),
        }
        model_dir = work / "model"
        write_model(model_dir / "mesh.yaml", MODEL)
        serve = start_serve(group, env.pod, model_dir, XDS, STATUS)

        # -- the sidecar: envoy/entrypoint.sh writes the bootstrap, then runs Envoy as uid 1337
        env.envoy = start_sidecar(group, env.pod, env.shared, envoy_binary, xds=XDS, admin=ADMIN, name="envoy-front",
                                  node_arn=f"arn:aws:appmesh:eu-west-1:111122223333:{FRONT}")

        for name, app in env.apps.items():
            (env.pod if name in ("front", "side") else env.peer).call(app.wait_ready, 15)

        env.runner = MeshRunner(group, model_dir, work)
        env.runner.serve_proc, env.runner.http = serve, STATUS
        env.pod.call(env.envoy.wait_ready, 30)
        env.pod.call(env.runner.wait_converged, FRONT, types=("cds", "lds", "rds"), timeout=20)
        env.pod.call(env.envoy.wait_stat, "listener_manager.total_listeners_active", lambda v: v == 2, 20)
        env.group = group
        yield env
    finally:
        cleanup()
        atexit.unregister(cleanup)


def envoy_stats(net, *names: str) -> dict[str, int]:
    stats = net.pod.call(net.envoy.stats, "|".join(f"^{n.replace('.', '[.]')}$" for n in names))
    return {n: stats.get(n, 0) for n in names}


def wait_stats(net, expected: dict[str, int], timeout: float = 5) -> None:
    """Envoy's counters reach exactly ``expected`` (they are updated as streams end)."""
    last: dict[str, int] = {}

    def reached() -> bool:
        last.update(envoy_stats(net, *expected))
        return last == expected

    try:
        wait_until(reached, timeout)
    except TimeoutError:
        raise AssertionError(f"Envoy counters {last}, expected {expected}") from None


def nat_rules(net, command: str = "iptables") -> list[str]:
    return [line for line in net.pod.run(command, "-w", "-t", "nat", "-S").splitlines() if "APPMESH" in line]


def app_requests(net, *names: str) -> dict[str, int]:
    return {name: net.peer.call(lambda app=net.apps[name]: app.requests) for name in names}


INGRESS_RQ = "http.ingress.downstream_rq_2xx"
EGRESS_RQ = "http.egress.downstream_rq_total"
INGRESS_CX = "listener.0.0.0.0_15000.downstream_cx_total"
NO_CHAIN = "listener.0.0.0.0_15000.no_filter_chain_match"
LOCAL_APP = f"cluster.cds_ingress_shop_front_http_{PORT}.upstream_rq_total"
V1_RQ = f"cluster.cds_egress_shop_catalog-v1_http_{PORT}.upstream_rq_total"
V2_RQ = f"cluster.cds_egress_shop_catalog-v2_http_{PORT}.upstream_rq_total"
COUNTERS = (INGRESS_RQ, EGRESS_RQ, INGRESS_CX, NO_CHAIN, LOCAL_APP, V1_RQ, V2_RQ)


# --- the proof ----------------------------------------------------------------------------

def test_rules_are_app_mesh_rules_idempotent_with_ipv6_mirror(net):
    rules = sorted(nat_rules(net))
    assert rules == sorted([
        "-A PREROUTING -p tcp -m addrtype ! --src-type LOCAL -j APPMESH_INGRESS",
        "-A OUTPUT -p tcp -m addrtype ! --dst-type LOCAL -j APPMESH_EGRESS",
        "-N APPMESH_INGRESS",
        f"-A APPMESH_INGRESS -p tcp -m multiport --dports {PORT},{UNLISTENED_APP_PORT} -j REDIRECT --to-ports 15000",
        "-N APPMESH_EGRESS",
        f"-A APPMESH_EGRESS -m owner --uid-owner {ENVOY_UID} -j RETURN",
        f"-A APPMESH_EGRESS -p tcp -m multiport --dports {IGNORED_PORT},22 -j RETURN",
        f"-A APPMESH_EGRESS -d {METADATA_IP}/32 -p tcp -j RETURN",
        "-A APPMESH_EGRESS -p tcp -j REDIRECT --to-ports 15001",
    ])
    net.pod.run("sh", IPTABLES_SH, "start", env=net.iptables_env)  # again: same rules, not twice
    assert sorted(nat_rules(net)) == rules
    # APPMESH_ENABLE_IPV6=1: the same chains in ip6tables (an IPv4 ignored address stays IPv4-only)
    assert sorted(nat_rules(net, "ip6tables")) == [r for r in rules if METADATA_IP not in r]


def test_inbound_app_port_is_redirected_to_envoy_ingress(net):
    """A client elsewhere connects to the pod's app port; iptables hands the connection to
    Envoy's 15000, whose filter chain for the original destination port forwards it to the app
    on 127.0.0.1:8080 — where the client itself could never reach it."""
    before = envoy_stats(net, *COUNTERS)
    n = 5
    for _ in range(n):
        response = net.peer.call(http_get, f"http://{POD_IP}:{PORT}/hello", timeout=10)
        assert response.status == 200, response.text
        body = response.json()
        assert body["app"] == "front" and body["path"] == "/hello"
        assert response.headers.get("server") == "envoy"  # Envoy's HCM answered the client
        assert "x-request-id" in body["headers"] and "x-envoy-expected-rq-timeout-ms" in body["headers"]
    wait_stats(net, {INGRESS_CX: before[INGRESS_CX] + n, INGRESS_RQ: before[INGRESS_RQ] + n,
                     LOCAL_APP: before[LOCAL_APP] + n, NO_CHAIN: before[NO_CHAIN]})
    # the filter chain is chosen by the original destination port: 8081 is redirected too
    # (APPMESH_APP_PORTS) but no virtual-node listener has it, so no chain matches
    with pytest.raises(OSError):
        net.peer.call(http_get, f"http://{POD_IP}:{UNLISTENED_APP_PORT}/", timeout=5)
    wait_stats(net, {NO_CHAIN: before[NO_CHAIN] + 1})
    # only traffic from elsewhere is intercepted inbound (! --src-type LOCAL): inside the pod the
    # app port on the pod address is just closed (the app listens on 127.0.0.1)
    with pytest.raises(ConnectionRefusedError):
        net.pod.call(http_get, f"http://{POD_IP}:{PORT}/", timeout=5)


def test_outbound_by_service_name_is_redirected_to_envoy_egress_with_model_weights(net):
    """The front app (uid 0, in the pod) calls http://catalog.shop.local:8080/, a name its
    /etc/hosts maps to an address nobody has; iptables sends the connection to Envoy's 15001,
    which routes by Host to the catalog's weighted targets (3:1 in the model)."""
    before = envoy_stats(net, *COUNTERS)
    served_before = app_requests(net, "catalog-v1", "catalog-v2")
    n = 160
    counts: dict[str, int] = {}
    for _ in range(n):
        response = net.peer.call(http_get, f"http://{POD_IP}:{PORT}/order", timeout=20)
        assert response.status == 200, response.text
        upstream = response.json()["upstream"]
        assert upstream["status"] == 200, upstream
        counts[upstream["app"]] = counts.get(upstream["app"], 0) + 1
    problems = split_violations(counts, WEIGHTS)
    assert not problems, f"split {counts}: {problems}"
    served = app_requests(net, "catalog-v1", "catalog-v2")
    assert {k: served[k] - served_before[k] for k in served} == counts  # each request reached an app exactly once
    wait_stats(net, {
        EGRESS_RQ: before[EGRESS_RQ] + n,  # every call went through 15001 once (and only once: no loop)
        V1_RQ: before[V1_RQ] + counts["catalog-v1"],
        V2_RQ: before[V2_RQ] + counts["catalog-v2"],
        INGRESS_RQ: before[INGRESS_RQ] + n,
    })


def _exe_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/exe").resolve().name
    except OSError:
        return ""


def test_envoy_uid_is_not_redirected(net):
    """Envoy runs as uid 1337 and its upstream connections go straight out (the stats above: one
    egress request per app call, each answered by a catalog app). The same raw request to a
    catalog address shows the rule itself: as uid 0 it lands in Envoy, as uid 1337 it does not."""
    # the entrypoint stays Envoy's parent (it drains Envoy on SIGTERM): find Envoy in its group
    envoys = [pid for pid in pgid_members(os.getpgid(net.envoy.pid)) if _exe_name(pid) == "envoy"]
    assert len(envoys) == 1, [(pid, _exe_name(pid)) for pid in pgid_members(os.getpgid(net.envoy.pid))]
    status = Path(f"/proc/{envoys[0]}/status").read_text()
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == [str(ENVOY_UID)] * 4, status  # real, effective, saved, filesystem
    before = envoy_stats(net, EGRESS_RQ)

    as_app = probe(net.group, net.pod, V1_IP, PORT, f"catalog.shop.local:{PORT}", uid=0)
    assert as_app["status"] == 200 and as_app["headers"]["server"] == "envoy", as_app
    assert as_app["headers"]["x-app"] in WEIGHTS
    wait_stats(net, {EGRESS_RQ: before[EGRESS_RQ] + 1})

    as_envoy = probe(net.group, net.pod, V1_IP, PORT, f"catalog.shop.local:{PORT}", uid=ENVOY_UID)
    assert as_envoy["status"] == 200, as_envoy
    assert as_envoy["headers"]["server"] == "meshplane-app" and as_envoy["headers"]["x-app"] == "catalog-v1"
    wait_stats(net, {EGRESS_RQ: before[EGRESS_RQ] + 1})
    # meshplane serve is on the pod's loopback: LOCAL destinations are never redirected
    assert net.pod.call(http_get, "http://%s:%d/healthz" % STATUS, timeout=5).status == 200


def test_ignored_ports_and_addresses_bypass_envoy(net):
    before = envoy_stats(net, *COUNTERS)
    # APPMESH_EGRESS_IGNORED_PORTS: straight to the app on that port
    plain = probe(net.group, net.pod, V1_IP, IGNORED_PORT, f"catalog.shop.local:{PORT}")
    assert plain["headers"]["server"] == "meshplane-app" and plain["headers"]["x-app"] == "plain", plain
    # APPMESH_EGRESS_IGNORED_IP: straight to that address (e.g. the instance metadata service)
    metadata = probe(net.group, net.pod, METADATA_IP, PORT, f"catalog.shop.local:{PORT}")
    assert metadata["headers"]["server"] == "meshplane-app" and metadata["headers"]["x-app"] == "metadata", metadata
    # inbound to a port that is not in APPMESH_APP_PORTS: straight to the app listening there
    side = net.peer.call(http_get, f"http://{POD_IP}:{SIDE_PORT}/", timeout=5)
    assert side.status == 200 and side.headers.get("server", "").strip() == "meshplane-app", side
    assert "x-request-id" not in side.json()["headers"]
    assert envoy_stats(net, *COUNTERS) == before


def test_stop_removes_the_interception(net):
    """Last: `iptables.sh stop` takes every rule out (twice is fine) and traffic no longer meets Envoy."""
    net.pod.run("sh", IPTABLES_SH, "stop", env=net.iptables_env)
    net.pod.run("sh", IPTABLES_SH, "stop", env=net.iptables_env)
    assert nat_rules(net) == [] and nat_rules(net, "ip6tables") == []
    with pytest.raises(ConnectionRefusedError):  # the app listens on 127.0.0.1 only
        net.peer.call(http_get, f"http://{POD_IP}:{PORT}/", timeout=5)
    direct = probe(net.group, net.pod, V1_IP, PORT, f"catalog.shop.local:{PORT}")
    assert direct["headers"]["server"] == "meshplane-app" and direct["headers"]["x-app"] == "catalog-v1", direct
