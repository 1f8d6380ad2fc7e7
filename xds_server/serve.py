"""`meshplane serve`: the ADS server, the status endpoint and the file watcher in one process."""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from pathlib import Path

import grpc

from mesh_model.load.formats import watched_paths
from mesh_model.render import split_host_port
from mesh_model.node_id import NodeRef

from xds_server import fairness
from xds_server.server import servicer as ads
from xds_server.server import csds
from xds_server.server.callbacks import CallbackFanout
from xds_server.observability import metrics
from xds_server.admission.auth import Authenticator, load_token_file
from xds_server.ca.authority import MeshCA, format_duration
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane
from xds_server.http import HttpLimits, load_metrics_token, start_http
from xds_server.admission.stream_limits import StreamLimiter
from xds_server.ca.mesh_secrets import SecretManager, spiffe_id, trust_acked
from xds_server.observability.status import StatusRegistry
from xds_server.controlplane.watch import watch
from xds_server.controlplane import cloudmap as cloudmap_module
from xds_server import serve_wiring
from xds_server.config import ServeConfig

log = logging.getLogger("meshplane.serve")


class ResolveWhenReady:
    """The ADS resolver while the control plane starts. The servicer waits for ``ready``
    before it reads a stream's first request; ``resolve`` also waits, for any other caller."""

    def __init__(self) -> None:
        self._resolve = None
        self.ready = asyncio.Event()

    def open(self, resolve) -> None:
        self._resolve = resolve
        self.ready.set()

    def resolve(self, node):
        if self._resolve is not None:  # the common case: no coroutine, no await
            return self._resolve(node)
        return self._after_start(node)

    async def _after_start(self, node):
        await self.ready.wait()
        key = self._resolve(node)
        return await key if inspect.isawaitable(key) else key


# Envoy holds its ADS stream open for hours: keepalive finds dead peers, and a generous
# message size fits large route tables (500 routes x 10 targets is well under 16 MiB).
# A reconnect storm (a fleet of Envoys after a restart) opens thousands of streams within
# seconds, faster than the event loop takes them: grpc core keeps the ones not yet taken
# ("pending") and by default refuses more than 1,000-3,000 of them (random early detection;
# RESOURCE_EXHAUSTED "Too many pending requests", which a client still writing its requests
# sees as INTERNAL or CANCELLED), and cancels those waiting longer than 30 s (the last of
# 10,000 Envoys wait longer than that while the first are compiled, and come back only to
# wait again). Room for a whole fleet instead, for up to 5 minutes: the admission limits
# (--max-streams, --max-new-streams-per-second) decide once a stream is taken.
MAX_PENDING_STREAMS = 20_000
MAX_PENDING_SECONDS = 300
GRPC_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.server.max_pending_requests", MAX_PENDING_STREAMS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_STREAMS),
    ("grpc.server_max_unrequested_time_in_server", MAX_PENDING_SECONDS),
]


SWITCH_INTERVAL_S = 0.0005


async def serve(config: ServeConfig) -> None:
    """Run until SIGTERM/SIGINT."""
    http_exposed = check_http_exposure(config)  # a non-loopback --http without credentials: refused
    if config.http:  # memory of large request bodies goes back to the system once they are done
        from xds_server.api.http_hook import keep_large_allocations_returnable

        keep_large_allocations_returnable()
    # Threads that mostly wait (the API, the event loop answering xDS) get the interpreter back
    # from a CPU-bound one (a reload of a big mesh) only every switch interval, Python's 5 ms by
    # default: each small API write waits that long several times (bench tenants measures it).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    fairness.install()
    credentials, authenticator = _xds_security(config)
    api_auth = serve_wiring.authenticator(config) if config.http else None  # fails early on a bad credentials file
    metrics_token = load_metrics_token(config.metrics_token_file) if config.metrics_token_file else None
    cache = SnapshotCache()
    secrets = None
    if config.ca_dir:
        # the mesh CA: created on first start; its root keys never leave the directory
        ca = MeshCA.open(config.ca_dir)
        secrets = SecretManager(
            ca, lifetime=config.cert_lifetime, trust_domain=config.trust_domain, rotation_grace=config.rotation_grace,
        )
    # the process-wide metric set: ControlPlane reports compilations to it via metrics.observe_*
    registry = StatusRegistry(cache=cache)
    stream_events = CallbackFanout(registry, metrics.StreamMetrics(metrics.DEFAULT, cache))
    limiter = StreamLimiter(
        registry, max_proxies_per_node=config.max_proxies_per_node, max_streams=config.max_streams,
        max_new_streams_per_second=config.max_new_streams_per_second, metrics=metrics.DEFAULT,
    )
    # xDS listens before the model is loaded: Envoys reconnecting after a restart are taken
    # and wait for their config instead of being refused and backing off (up to 30 s each);
    # their first requests are read only once the model is loaded, so they cost no CPU meanwhile
    gate = ResolveWhenReady()
    server = grpc.aio.server(options=GRPC_OPTIONS)
    authorize = authenticator.authorize if authenticator.enabled else None
    servicer = ads.AggregatedDiscoveryServicer(
        cache, limiter.wrap(gate.resolve), stream_events, authorize=authorize, ready=gate.ready)
    ads.add_to_server(server, servicer)
    require_admin = authenticator.require_admin if authenticator.enabled else None
    csds.add_to_server(server, csds.ClientStatusServicer(registry, cache, require_admin=require_admin))
    host, port = split_host_port(config.xds, "--xds")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_secure_port(address, credentials) if credentials is not None else server.add_insecure_port(address)
    await server.start()
    source = cloudmap = None
    try:
        source = serve_wiring.model_source(config)  # --store: the model comes from the store, else from config.paths
        cloudmap = _cloudmap(config)  # --cloudmap: live instances over the model's CloudMapService part
        # loaded on a worker thread, so that the event loop meanwhile takes the streams that arrive
        control = await asyncio.to_thread(
            ControlPlane, config.paths, cache, secrets=secrets, keys_in_use=registry.keys_in_use, source=source,
            load_options=config.load_options, overlay=cloudmap.overlay if cloudmap is not None else None,
            freeze_heap=True)  # this process is the control plane: keep the GC off its model
        if cloudmap is not None:  # the first answers before any Envoy gets config
            if await asyncio.to_thread(cloudmap.poll_once):
                await control.reload()
    except BaseException:  # an invalid model at start-up is fatal: nothing was served
        await server.stop(grace=0)
        serve_wiring.close(source)
        raise
    gate.open(control.resolve)
    http_server = None
    http_desc = "off"
    if config.http:
        http_host, http_port = split_host_port(config.http, "--http")
        http_server = await start_http(
            http_host, http_port, registry, control.status, metrics=metrics.DEFAULT, cache=cache,
            config_dump_provider=_config_dump(csds.cache_config_dump(registry, cache), control),
            api=serve_wiring.api_service(config, control, source, authenticator=api_auth),
            sections={"cloudmap": cloudmap.status} if cloudmap is not None else None,
            admin_auth=api_auth if config.api_credentials else None, metrics_token=metrics_token,
            limits=HttpLimits(
                max_connections=config.http_max_connections,
                max_connections_per_client=config.http_max_connections_per_client,
                api_max_body=config.api_max_body, apply_max_body=config.apply_max_body,
                max_buffered_bytes=config.http_max_buffered),
        )
        http_desc = "%s:%d" % http_server.sockets[0].getsockname()[:2]
    watcher = asyncio.create_task(source.watch(control.reload) if source is not None
                                  # a TEMPLATE@Key=Value instance is watched as its template file
                                  else watch(watched_paths(control.paths), control.reload))
    tasks = [watcher, asyncio.create_task(_forget_unused_periodically(control))]
    if cloudmap is not None:
        tasks.append(asyncio.create_task(cloudmap.run(control.reload)))
    if secrets is not None:
        tasks.append(asyncio.create_task(control.run_secrets(lambda: trust_acked(registry, cache))))
    if config.ready_message:
        log.info("serving xDS (ADS, CSDS) on %s:%d, HTTP status and App Mesh API on %s, model %s", host, bound, http_desc,
                 source.description if source is not None else ", ".join(control.paths))
        if config.http and http_exposed and not config.api_credentials:
            log.warning("HTTP on %s without --api-credentials (--insecure-http): /status, /config_dump%s are open to "
                        "every client that reaches it (every mesh's nodes, their addresses and config)",
                        http_desc, "" if metrics_token else " and /metrics")
        if config.http and config.api_credentials:
            log.info("HTTP admin endpoints: /status and /config_dump take SigV4-signed requests and show the meshes "
                     "the key may read; /metrics %s; /healthz and /readyz are open",
                     "takes the --metrics-token-file bearer token (or SigV4)" if metrics_token
                     else "takes SigV4-signed requests (Prometheus cannot sign: use --metrics-token-file)")
        if not authenticator.enabled:
            log.warning("xDS is unauthenticated: any client that reaches %s:%d gets any node's config "
                        "(use --xds-token-file or --xds-tls-cert/--xds-tls-key/--xds-client-ca)", host, bound)
        else:
            log.info("xDS authentication: %s; a stream gets only the config of the node it proved",
                     " and ".join(filter(None, ["mTLS client certificates" if authenticator.mtls else "",
                                                "bearer tokens" if authenticator.tokens else ""])))
        log.info(
            "limits: %s Envoys per node id, %s streams in total",
            config.max_proxies_per_node or "unlimited", config.max_streams or "unlimited",
        )
        if cloudmap is not None:
            log.info("Cloud Map: DiscoverInstances (%s) every %gs at %s for %d service(s)", cloudmap_module.HEALTH_STATUS,
                     config.cloudmap_interval, config.cloudmap_endpoint_url or "the region's endpoint", len(cloudmap.targets()))
        if secrets is not None:
            log.info(
                "mesh CA %s: bundle %s, active root %s, certificates valid %s (renewed at 2/3), SPIFFE ids %s",
                secrets.ca.dir, ", ".join(secrets.bundle_ids), secrets.ca.active.id, format_duration(config.cert_lifetime),
                spiffe_id(NodeRef("<mesh>", "virtualNode", "<name>"), config.trust_domain),
            )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    servicer.stopping = True
    log.info("shutting down: closing %d stream(s) (Envoys keep their config and reconnect elsewhere)", registry.count())
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if http_server is not None:
        http_server.close()
        await http_server.wait_closed()
    # Envoy never ends its ADS stream, so a graceful stop would always wait the full grace.
    await server.stop(grace=0.5)
    serve_wiring.close(source)
    log.info("stopped")


INSECURE_HTTP = (
    "--http {address} is reachable from other hosts, and without --api-credentials its /status and /config_dump "
    "would give any of them every mesh's nodes, their addresses and their whole config: configure "
    "--api-credentials FILE (SigV4, as the App Mesh API), or bind --http to 127.0.0.1, or say --insecure-http "
    "if that is what you want (e.g. behind an authenticating proxy)")


def check_http_exposure(config: ServeConfig) -> bool:
    """Whether ``--http`` is reachable from other hosts; ``ValueError`` if it is, without
    ``--api-credentials`` and without ``--insecure-http``."""
    if not config.http:
        return False
    host = config.http.rpartition(":")[0] or config.http  # port 0 and other checks: split_host_port, later
    exposed = not _is_loopback_host(host)
    if exposed and not config.api_credentials and not config.insecure_http:
        raise ValueError(INSECURE_HTTP.format(address=config.http))
    return exposed


def _is_loopback_host(host: str) -> bool:
    from xds_server.api.local_auth import is_loopback

    host = host.strip("[]")
    return host.lower() == "localhost" or is_loopback(host)


def _cloudmap(config: ServeConfig):
    """``--cloudmap``: the poller of live Cloud Map instances (None when off)."""
    if not config.cloudmap:
        return None
    client = cloudmap_module.make_client(config.cloudmap_endpoint_url)
    return cloudmap_module.CloudMapPoller(client, interval=config.cloudmap_interval, endpoint_url=config.cloudmap_endpoint_url)


def _xds_security(config: ServeConfig):
    """Server credentials for the xDS port and the authenticator that checks each stream."""
    cert, key, client_ca = config.xds_tls_cert, config.xds_tls_key, config.xds_client_ca
    credentials = None
    if cert or key or client_ca:
        if not (cert and key):
            raise ValueError("--xds-tls-cert and --xds-tls-key go together")
        root = Path(client_ca).read_bytes() if client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(Path(key).read_bytes(), Path(cert).read_bytes())], root_certificates=root, require_client_auth=root is not None,
        )
    tokens = load_token_file(config.xds_token_file) if config.xds_token_file else {}
    return credentials, Authenticator(tokens=tokens, mtls=bool(client_ca), admin_uris=frozenset(config.admin_uris))


def _config_dump(connected, control: ControlPlane):
    """``/config_dump?node=``: a connected node's snapshots; for a node of the model that is
    not connected, what it would get with the default (transparent) placement."""

    def provider(node_id: str) -> dict | None:
        found = connected(node_id)
        if found is not None:
            return found
        snapshot = control.preview(node_id)
        if snapshot is None:
            return None
        return {"node": node_id, "streams": 0, "snapshots": [csds.snapshot_to_dict("not connected: default placement", snapshot)]}

    return provider


async def _forget_unused_periodically(control: ControlPlane, interval: float = 60.0) -> None:
    """Every ``interval``: drop snapshots of node placements no Envoy is connected with."""
    while True:
        await asyncio.sleep(interval)
        control.forget_unused()
