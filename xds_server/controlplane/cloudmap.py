"""Live AWS Cloud Map (``meshplane serve --cloudmap``): instances from ``DiscoverInstances``.

A model overlay, not a second compiler input: ``CloudMapPoller.overlay(model)`` adds a
``CloudMapService`` resource per live service to ``model.cloud_map`` -- exactly what a
``CloudMapService`` document gives -- so the compiler stays pure and unchanged, and the
dependency sets (``("CloudMapService", namespace, service)``) make a change of instances
recompile only the nodes that call that service (only their EDS changes).

What is polled: every (namespaceName, serviceName) a virtual node's
``serviceDiscovery.awsCloudMap`` names, except the ones a ``CloudMapService`` document
covers (documents win: they are the offline source, and a way to pin a service). Each node's
``attributes`` go to Cloud Map as ``QueryParameters`` (one query per distinct filter set, the
answers merged by instance id); the compiler then applies each node's filter to the merged
instances, exactly as for documents. ``HealthStatus`` is ``HEALTHY`` (what App Mesh asked
for; Cloud Map ignores it for services without health checks and returns every instance).

Every ``interval`` seconds each service is asked again; when the set of instances changes,
``on_change`` (``ControlPlane.reload``) runs the normal rebuild. When Cloud Map cannot be
reached (or answers with an error) the last good answer of that service is kept, the outage is
logged once (and its end once), and ``status()`` (``/status`` ``cloudmap``) shows per service
the last success, the instance count and the last error.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Iterable, Mapping

from mesh_model.spec.model import MeshModel, Resource, frozen_map
from mesh_model.spec.shapes import CloudMapInstance, CloudMapServiceSpec

log = logging.getLogger("meshplane.cloudmap")

HEALTH_STATUS = "HEALTHY"  # App Mesh's choice; Cloud Map ignores it for services without health checks
MAX_RESULTS = 1000  # DiscoverInstances' maximum (it has no paging)
LIVE_FILE = "<aws cloud map>"  # the ``file`` of live resources (error messages, explain)

ServiceKey = tuple[str, str]  # (namespaceName, serviceName)
Filter = tuple[tuple[str, str], ...]  # a node's attributes, sorted
Instances = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # ((instanceId, sorted attributes), ...) sorted


def wanted_services(model: MeshModel) -> dict[ServiceKey, frozenset[Filter]]:
    """Every Cloud Map service a virtual node uses, with the distinct attribute filters of its nodes."""
    wanted: dict[ServiceKey, set[Filter]] = {}
    for mesh in model.meshes.values():
        for node in mesh.virtual_nodes.values():
            sd = node.spec.serviceDiscovery
            cloud_map = sd.awsCloudMap if sd is not None else None
            if cloud_map is None:
                continue
            attributes = tuple(sorted((a.key, a.value) for a in cloud_map.attributes or ()))
            wanted.setdefault((cloud_map.namespaceName, cloud_map.serviceName), set()).add(attributes)
    return {key: frozenset(filters) for key, filters in sorted(wanted.items())}


def canonical(instances: Iterable[Mapping[str, Any]]) -> tuple[Instances, list[str]]:
    """DiscoverInstances' ``Instances`` as a comparable value; instances meshplane cannot use
    (no valid IP, bad port) are left out and described in the second value."""
    kept: dict[str, tuple[tuple[str, str], ...]] = {}
    skipped = []
    for item in instances:
        instance_id = str(item.get("InstanceId", ""))
        attributes = {str(k): str(v) for k, v in (item.get("Attributes") or {}).items()}
        try:
            CloudMapInstance(instanceId=instance_id or None, attributes=attributes)
        except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, described and skipped
            skipped.append(f"instance {instance_id or '?'}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        kept[instance_id] = tuple(sorted(attributes.items()))
    return tuple(sorted(kept.items())), skipped


def service_resource(key: ServiceKey, instances: Instances) -> Resource:
    """The ``CloudMapService`` resource a document listing ``instances`` would load as."""
    spec = CloudMapServiceSpec(instances=[{"instanceId": i or None, "attributes": dict(a)} for i, a in instances])
    digest = hashlib.blake2b(json.dumps([key, instances]).encode(), digest_size=16).hexdigest()
    return Resource(kind="CloudMapService", name=key[1], namespaceName=key[0], spec=spec, file=LIVE_FILE,
                    digest="live:" + digest)


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclasses.dataclass
class ServiceState:
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failing_since: float | None = None  # set during an outage (logged once)

    def as_dict(self, instances: int | None) -> dict:
        return {
            "lastSuccess": _iso(self.last_success),
            "instances": instances,
            "lastError": self.last_error,
            "lastErrorAt": _iso(self.last_error_at),
            "healthy": self.failing_since is None and self.last_success is not None,
        }


def make_client(endpoint_url: str | None = None):
    """A ``servicediscovery`` client: region and credentials the usual AWS way (environment,
    shared config and credentials files, container and instance roles). botocore's (a
    dependency already); boto3's client is the same one."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    if not session.get_config_variable("region"):
        raise ValueError("--cloudmap needs an AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or region in ~/.aws/config)")
    # DiscoverInstances goes to ``data-servicediscovery...``: a given endpoint URL is used as it is
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"},
                    inject_host_prefix=endpoint_url is None)
    return session.create_client("servicediscovery", endpoint_url=endpoint_url, config=config)


class CloudMapPoller:
    """The live Cloud Map answers, the model overlay made of them, and the loop that polls."""

    def __init__(self, client: Any, *, interval: float = 5.0, endpoint_url: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.client = client
        self.interval = interval
        self.endpoint_url = endpoint_url
        self.clock = clock
        self._lock = threading.Lock()  # polls and overlays run in worker threads
        self.wanted: dict[ServiceKey, frozenset[Filter]] = {}
        self.documented: frozenset[ServiceKey] = frozenset()
        self.results: dict[ServiceKey, Instances] = {}  # last good answer per service
        self.states: dict[ServiceKey, ServiceState] = {}
        self._resources: dict[ServiceKey, Resource] = {}  # unchanged answers give the same object
        self.polls = 0

    # -- the model overlay (ControlPlane's ``overlay``; runs in the reload's worker thread)
    def overlay(self, model: MeshModel) -> MeshModel:
        """``model`` with a ``CloudMapService`` per live service its nodes use (documents win)."""
        wanted = wanted_services(model)
        with self._lock:
            self.wanted = wanted
            self.documented = frozenset(model.cloud_map)
            live = {}
            for key in wanted:
                if key in model.cloud_map or key not in self.results:
                    continue
                resource = self._resources.get(key)
                if resource is None:
                    resource = self._resources[key] = service_resource(key, self.results[key])
                live[key] = resource
        if not live:
            return model
        return dataclasses.replace(model, cloud_map=frozen_map({**model.cloud_map, **live}))

    def targets(self) -> dict[ServiceKey, frozenset[Filter]]:
        """The services to ask Cloud Map for: used by a node, not covered by a document."""
        with self._lock:
            return {key: filters for key, filters in self.wanted.items() if key not in self.documented}

    # -- one round of DiscoverInstances
    def discover(self, key: ServiceKey, filters: frozenset[Filter]) -> tuple[Instances, list[str]]:
        """One service's healthy instances matching any of its nodes' filters (blocking)."""
        queries = [()] if () in filters or not filters else sorted(filters)
        found: dict[str, Mapping[str, Any]] = {}
        for query in queries:
            params: dict[str, Any] = {"NamespaceName": key[0], "ServiceName": key[1], "HealthStatus": HEALTH_STATUS,
                                      "MaxResults": MAX_RESULTS}
            if query:
                params["QueryParameters"] = dict(query)
            answer = self.client.discover_instances(**params)
            instances = answer.get("Instances") or []
            if len(instances) >= MAX_RESULTS:
                log.warning("Cloud Map %s/%s: %d instances, DiscoverInstances' maximum; more are not seen", *key, MAX_RESULTS)
            for item in instances:
                found.setdefault(str(item.get("InstanceId", "")), item)
        return canonical(found.values())

    def poll_once(self) -> bool:
        """Ask Cloud Map for every target service (blocking); True when any answer changed
        the instances the overlay gives. A failed service keeps its last good answer."""
        targets = self.targets()
        changed = False
        for key, filters in targets.items():
            try:
                instances, skipped = self.discover(key, filters)
            except Exception as exc:  # noqa: BLE001 - unreachable, throttled, not found, no credentials ...
                self._failed(key, exc)
                continue
            with self._lock:
                state = self.states.setdefault(key, ServiceState())
                now = self.clock()
                if state.failing_since is not None:
                    log.info("Cloud Map %s/%s answers again after %.0fs: %d instance(s)", *key,
                             now - state.failing_since, len(instances))
                    state.failing_since = None
                state.last_success = now
                if self.results.get(key) != instances:
                    if key in self.results or instances:
                        log.info("Cloud Map %s/%s: %d instance(s)%s", *key, len(instances),
                                 f" ({len(skipped)} unusable: {'; '.join(skipped[:3])})" if skipped else "")
                    self.results[key] = instances
                    self._resources.pop(key, None)
                    changed = True
        with self._lock:
            for key in [k for k in self.results if k not in targets]:  # no node uses it any more (or a document covers it)
                del self.results[key]
                self._resources.pop(key, None)
                self.states.pop(key, None)
                changed = True
            for key in [k for k in self.states if k not in targets]:
                del self.states[key]
            self.polls += 1
        return changed

    def _failed(self, key: ServiceKey, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        with self._lock:
            state = self.states.setdefault(key, ServiceState())
            now = self.clock()
            state.last_error, state.last_error_at = message, now
            if state.failing_since is None:
                state.failing_since = now
                kept = self.results.get(key)
                log.warning("Cloud Map %s/%s unreachable (%s); %s until it answers", *key, message,
                            f"keeping its last good {len(kept)} instance(s)" if kept is not None else "it has no endpoints")

    # -- the loop
    async def run(self, on_change: Callable[[], Awaitable[object]]) -> None:
        """Forever (until cancelled): poll, and ``on_change()`` when instances changed."""
        while True:
            try:
                if await asyncio.to_thread(self.poll_once):
                    await on_change()
            except Exception:  # a bug must not stop discovery: keep the last answers, retry
                log.exception("Cloud Map poll failed; retrying in %.0fs", self.interval)
            await asyncio.sleep(self.interval)

    def status(self) -> dict:
        with self._lock:
            services = {
                f"{key[0]}/{key[1]}": self.states.get(key, ServiceState()).as_dict(
                    len(self.results[key]) if key in self.results else None)
                for key in sorted(self.wanted) if key not in self.documented
            }
            documented = sorted(f"{k[0]}/{k[1]}" for k in self.wanted if k in self.documented)
        return {"endpointUrl": self.endpoint_url, "interval": self.interval, "healthStatus": HEALTH_STATUS,
                "polls": self.polls, "services": services, "fromDocuments": documented}
