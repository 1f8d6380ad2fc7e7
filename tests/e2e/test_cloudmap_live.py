"""Live Cloud Map end to end: moto's Cloud Map server -> `meshplane serve --cloudmap` -> EDS ->
a real Envoy -> real apps.

    client -> front sidecar (egress) -> recommend.shop.local (awsCloudMap shop.local/recommend,
                                        attributes stage=live) -> the registered instances' apps

moto (``moto[server]``, test-only) runs as a subprocess on a free loopback port and is stopped
by pid. Instances are registered with boto3 (AWS_INSTANCE_IPV4/AWS_INSTANCE_PORT pointing at
apps on 127.x addresses); every assertion is on real responses and meshplane's /status.
"""
from __future__ import annotations

import contextlib
import socket
import sys

import pytest

from harness.apps import AppServer
from harness.mesh import MeshRunner
from harness.processes import free_port, wait_until
from harness.traffic import count_split
from harness.model_builders import backend, listener, mesh, virtual_node, virtual_service, write_model

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server", reason="moto[server] stands in for AWS Cloud Map")
from botocore.config import Config  # noqa: E402  (after the skips)

NS, SERVICE = "shop.local", "recommend"
FRONT = "mesh/shop/virtualNode/front"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}


def _listening(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def test_envoy_traffic_follows_cloud_map_registrations(procs, addresses, tmp_path, monkeypatch, envoy_binary):
    for key, value in AWS_ENV.items():  # meshplane serve inherits them: region and credentials the usual way
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)

    # moto's Cloud Map on loopback
    moto_port = free_port()
    moto = procs.start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)])
    wait_until(lambda: _listening("127.0.0.1", moto_port), 30, message="moto server did not listen",)
    endpoint = f"http://127.0.0.1:{moto_port}"
    cloudmap = boto3.client("servicediscovery", endpoint_url=endpoint, region_name="us-east-1",
                            config=Config(inject_host_prefix=False))
    operation = cloudmap.create_http_namespace(Name=NS)["OperationId"]
    namespace_id = cloudmap.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
    service_id = cloudmap.create_service(Name=SERVICE, NamespaceId=namespace_id)["Service"]["Id"]

    a = addresses
    front_ingress, front_app, front_egress = a(), a(), a()
    port = free_port(front_ingress)
    with contextlib.ExitStack() as running:
        apps = {name: running.enter_context(AppServer(name, a(), port)) for name in ("rec-a", "rec-b", "rec-dark")}

        def register(name: str, stage: str = "live"):
            cloudmap.register_instance(ServiceId=service_id, InstanceId=name, Attributes={
                "AWS_INSTANCE_IPV4": apps[name].host, "AWS_INSTANCE_PORT": str(port), "stage": stage})

        register("rec-a")
        register("rec-dark", stage="dark")  # Cloud Map has it; the node's attributes filter it out

        model_file = tmp_path / "model" / "mesh.yaml"
        write_model(model_file, [
            mesh("shop"),
            virtual_service("shop", f"{SERVICE}.{NS}", node="recommend"),
            virtual_node("shop", "front", port=port, host=front_ingress, backends=[backend(f"{SERVICE}.{NS}")]),
            virtual_node("shop", "recommend", listeners=[listener(port)], serviceDiscovery={"awsCloudMap": {
                "namespaceName": NS, "serviceName": SERVICE, "attributes": [{"key": "stage", "value": "live"}]}}),
        ])
        runner = MeshRunner(procs, model_file.parent, tmp_path / "run")
        runner.start_control_plane("--cloudmap", "--cloudmap-endpoint-url", endpoint, "--cloudmap-interval", "0.5")
        front = runner.start_sidecar(FRONT, ingress=front_ingress, app=front_app, egress=front_egress)
        url, host = front.egress_url(port), f"{SERVICE}.{NS}:{port}"

        def split(n: int = 20):
            return count_split(url, n, host_header=host, count_errors=True)

        def service_status() -> dict:
            return runner.status()["cloudmap"]["services"][f"{NS}/{SERVICE}"]

        # the instance registered before start serves from the first config; the dark one never
        assert split() == {"rec-a": 20}
        assert service_status()["instances"] == 1 and service_status()["healthy"]  # asked with stage=live

        # register: traffic reaches the new instance
        register("rec-b")
        wait_until(lambda: set(split()) == {"rec-a", "rec-b"}, 15, interval=0.2,
                   message="traffic did not reach the newly registered rec-b")

        # deregister: it stops
        cloudmap.deregister_instance(ServiceId=service_id, InstanceId="rec-a")
        wait_until(lambda: split(10) == {"rec-b": 10}, 15, interval=0.2, message="rec-a still gets traffic")
        served = apps["rec-a"].requests
        assert split(30) == {"rec-b": 30}
        assert apps["rec-a"].requests == served and apps["rec-dark"].requests == 0

        # Cloud Map gone: the last good endpoints keep serving, /status shows the error
        moto.stop()
        error = wait_until(lambda: service_status()["lastError"], 20, interval=0.2,
                           message="/status shows no Cloud Map error")
        assert "Could not connect" in error or "Connect" in error, error
        status = service_status()
        assert status["instances"] == 1 and not status["healthy"] and status["lastSuccess"]
        assert split(30) == {"rec-b": 30}
        assert "unreachable" in runner.serve_proc.output()
        assert runner.serve_proc.output().count("unreachable") == 1, "an outage is logged once"
