"""Tests for harness: process cleanup, apps, traffic, real Envoy."""

from __future__ import annotations

import math
import os
import textwrap
import time
from pathlib import Path

import pytest

from harness import envoy as harness_envoy
from harness import (
    EnvoyExitedError,
    EnvoyProcess,
    ProcessGroup,
    binomial_tolerance,
    count_split,
    free_port,
    http_get,
    pgid_members,
    split_violations,
    start_app,
    start_app_process,
    validate_config,
    wait_until,
)


# ---------------------------------------------------------------- helpers

def _pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data[data.rfind(")") + 2] not in "ZX"


def _shell_with_child(group: ProcessGroup):
    """Start `sh -c 'sleep 60 & sleep 60'`; return (proc, all pids in its group)."""
    p = group.start("sh", ["sh", "-c", "sleep 60 & sleep 60"])
    # sh itself + 2 sleeps, or (if sh execs the last command) 2 sleeps
    def started():
        members = pgid_members(p.pid)
        sleeps = [x for x in members if Path(f"/proc/{x}/comm").read_text().strip() == "sleep"]
        return members if len(sleeps) == 2 else None

    pids = wait_until(started, 5, message="sleeps not started")
    return p, pids


# ---------------------------------------------------------------- processes

def test_process_group_kills_on_close(tmp_path):
    with ProcessGroup(log_dir=tmp_path) as g:
        s = g.start("sleep", ["sleep", "60"])
        sh, pids = _shell_with_child(g)
        assert s.alive() and all(_pid_alive(p) for p in pids)
        assert len(pids) >= 2
    assert not s.alive() and not sh.alive()
    wait_until(lambda: not any(_pid_alive(p) for p in [s.pid, *pids]), 3,
               message="processes survived close()")
    assert pgid_members(sh.pid) == []


def test_process_group_kills_on_exception(tmp_path):
    seen = {}
    with pytest.raises(RuntimeError, match="boom"):
        with ProcessGroup(log_dir=tmp_path) as g:
            seen["sleep"] = g.start("sleep", ["sleep", "60"]).pid
            _, seen["group"] = _shell_with_child(g)
            raise RuntimeError("boom")
    wait_until(lambda: not any(_pid_alive(p) for p in [seen["sleep"], *seen["group"]]), 3,
               message="processes survived exception")


def test_proc_output_and_sigkill_fallback(procs):
    # stdout+stderr land in the log file
    p = procs.start("echo", ["sh", "-c", "echo out; echo err >&2"])
    p.popen.wait(5)
    assert "out" in p.output() and "err" in p.output()
    # a process that ignores SIGTERM is SIGKILLed after the timeout
    stubborn = procs.start("stubborn", ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"])
    wait_until(lambda: "ready" in stubborn.output(), 5)
    t0 = time.monotonic()
    stubborn.stop(timeout=0.5)
    assert not stubborn.alive()
    assert time.monotonic() - t0 < 4
    assert pgid_members(stubborn.pid) == []


def test_wait_until_reports_last_value():
    assert wait_until(lambda: 42, 1) == 42
    with pytest.raises(TimeoutError, match=r"nope.*last value: 0"):
        wait_until(lambda: 0, 0.2, message="nope")
    with pytest.raises(TimeoutError, match=r"ZeroDivisionError"):
        wait_until(lambda: 1 / 0, 0.2)


def test_free_port_binds(addresses):
    host = addresses()
    port = free_port(host)
    import socket
    with socket.socket() as s:
        s.bind((host, port))


# ---------------------------------------------------------------- apps

def test_app_server_in_process(addresses):
    host = addresses()
    with start_app("v1", host, 0) as app:
        r = http_get(app.url + "/hello?x=1", host_header="svc.local", headers={"x-test": "yes"})
        assert r.status == 200
        assert r.headers["X-App"] == "v1"
        body = r.json()
        assert body["app"] == "v1" and body["path"] == "/hello?x=1" and body["host"] == "svc.local"
        assert body["headers"]["x-test"] == "yes"

        app.fail_next(2, status=502)
        assert [http_get(app.url).status for _ in range(3)] == [502, 502, 200]
        app.set_failing(500)
        assert count_split(app.url, 3) == {"status:500": 3}
        app.set_failing(None)
        assert count_split(app.url, 2) == {"v1": 2}
        assert app.requests == 9  # 1 + 3 + 3 + 2
        app.reset()
        assert app.requests == 0
    with pytest.raises(OSError):
        http_get(app.url, timeout=1)


def test_app_server_subprocess(procs, addresses):
    host = addresses()
    app = start_app_process(procs, "v2", host)
    assert app.alive()
    r = http_get(app.url + "/x")
    assert r.status == 200 and r.headers.get("x-app") == "v2" and r.json()["app"] == "v2"
    app.fail_next(1, status=503)
    assert http_get(app.url).status == 503
    app.set_failing(504)
    assert http_get(app.url).status == 504
    app.set_failing(None)
    assert http_get(app.url).status == 200
    assert app.requests == 4  # control / stats calls are not counted
    pid = app.pid
    procs.close()
    assert not app.alive() and not _pid_alive(pid)
    assert "listening on" in app.proc.output()


# ---------------------------------------------------------------- envoy

def _static_config(listen: tuple[str, int], admin: tuple[str, int], upstream: tuple[str, int]) -> str:
    return textwrap.dedent(f"""\
        admin:
          address: {{socket_address: {{address: {admin[0]}, port_value: {admin[1]}}}}}
        static_resources:
          listeners:
          - name: ingress
            address: {{socket_address: {{address: {listen[0]}, port_value: {listen[1]}}}}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: ingress
                  route_config:
                    virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                      - match: {{prefix: "/"}}
                        route: {{cluster: app}}
                  http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          clusters:
          - name: app
            type: STATIC
            connect_timeout: 1s
            load_assignment:
              cluster_name: app
              endpoints:
              - lb_endpoints:
                - endpoint:
                    address: {{socket_address: {{address: {upstream[0]}, port_value: {upstream[1]}}}}}
        """)


def test_envoy_binary_found(envoy_binary):
    assert envoy_binary.is_file() and os.access(envoy_binary, os.X_OK)


def test_envoy_binary_env_override(monkeypatch, tmp_path, envoy_binary):
    monkeypatch.setenv("MESHPLANE_ENVOY", str(envoy_binary))
    assert harness_envoy.envoy_binary().resolve() == envoy_binary.resolve()
    monkeypatch.setenv("MESHPLANE_ENVOY", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="MESHPLANE_ENVOY"):
        harness_envoy.envoy_binary()


def test_validate_config(envoy_binary, addresses, free_port, tmp_path):
    h = addresses()
    cfg = _static_config((h, free_port(h)), (h, free_port(h)), ("127.0.0.1", 9))
    ok, out = validate_config(cfg, binary=envoy_binary)
    assert ok, out
    broken = cfg.replace("type: STATIC", "type: NOT_A_TYPE")
    ok, out = validate_config(broken, binary=envoy_binary)
    assert not ok
    assert "NOT_A_TYPE" in out
    ok, out = validate_config("static_resources: {clusters: [{name: x, bogus_field: 1}]}")
    assert not ok and "bogus_field" in out
    # a path (Path or str) works too
    path = tmp_path / "ok.yaml"
    path.write_text(cfg)
    assert validate_config(path, binary=envoy_binary)[0]
    assert validate_config(str(path), binary=envoy_binary)[0]


def test_envoy_routes_to_app(procs, envoy_binary, addresses, free_port, tmp_path):
    app_host, envoy_host = addresses(), addresses()
    app = start_app("v1", app_host, 0)
    try:
        envoys = []
        # two Envoys side by side: --use-dynamic-base-id lets them coexist
        for i in range(2):
            listen = (envoy_host, free_port(envoy_host))
            admin = (envoy_host, free_port(envoy_host))
            cfg = tmp_path / f"envoy{i}.yaml"
            cfg.write_text(_static_config(listen, admin, app.address))
            e = EnvoyProcess.start(procs, cfg, name=f"envoy{i}", admin=admin)
            envoys.append((e, listen))
        for e, _ in envoys:
            e.wait_ready(timeout=20)
        e, listen = envoys[0]
        url = f"http://{listen[0]}:{listen[1]}/through-envoy"
        counts = count_split(url, 5, host_header="anything.local")
        assert counts == {"v1": 5}
        assert http_get(url).json()["path"] == "/through-envoy"
        assert e.wait_stat("cluster.app.upstream_rq_200", lambda v: v == 6) == 6
        assert e.stats()["cluster.app.upstream_rq_200"] == 6
        assert e.stat("no.such.stat") is None
        assert "app::" in e.clusters()
        dump = e.config_dump("static_clusters")
        assert any(c["cluster"]["name"] == "app" for c in dump["configs"])
        assert envoys[1][0].stat("cluster.app.upstream_rq_200") in (0, None)

        # upstream failures are visible through Envoy too
        app.fail_next(1, status=503)
        assert http_get(url).status == 503
        e.wait_stat("cluster.app.upstream_rq_503", lambda v: v == 1)

        pids = [x.pid for x, _ in envoys]
    finally:
        app.stop()
    procs.close()
    assert not any(_pid_alive(p) for p in pids)


def test_envoy_exit_is_reported(procs, envoy_binary, addresses, free_port, tmp_path):
    h = addresses()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("static_resources: {clusters: [{name: x, bogus_field: 1}]}\n")
    e = EnvoyProcess.start(procs, cfg, name="bad", admin=(h, free_port(h)))
    t0 = time.monotonic()
    with pytest.raises(EnvoyExitedError, match="bogus_field"):
        e.wait_ready(timeout=20)
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------- traffic

def test_binomial_tolerance():
    assert binomial_tolerance(400, 0.5) == pytest.approx(0.1)
    assert binomial_tolerance(100, 0.5, z=2) == pytest.approx(0.1)
    assert binomial_tolerance(1000, 0.0) == 0.0
    assert binomial_tolerance(1000, 1.0) == 0.0
    assert binomial_tolerance(1000, 0.2) == pytest.approx(4 * math.sqrt(0.16 / 1000))
    assert binomial_tolerance(10_000, 0.5) < binomial_tolerance(100, 0.5)
    # tolerance is symmetric in p <-> 1-p
    assert binomial_tolerance(300, 0.1) == pytest.approx(binomial_tolerance(300, 0.9))
    with pytest.raises(ValueError):
        binomial_tolerance(0, 0.5)

    assert split_violations({"a": 205, "b": 195}, {"a": 1, "b": 1}) == []
    assert split_violations({"a": 300, "b": 100}, {"a": 1, "b": 1})  # way off
    assert split_violations({"a": 100, "status:503": 1}, {"a": 1})  # unexpected key
