"""The settings of `meshplane serve`, as one frozen object (``ServeConfig``), and their defaults.

A leaf module: the CLI builds a ``ServeConfig`` from its arguments without loading the
server, and the modules that enforce a setting take their default from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

DEFAULT_XDS_ADDRESS = "0.0.0.0:18000"
DEFAULT_HTTP_ADDRESS = "127.0.0.1:18001"
DEFAULT_MAX_PROXIES_PER_NODE = 500     # App Mesh allowed 50
DEFAULT_MAX_STREAMS = 10_000
DEFAULT_CERT_LIFETIME = 24 * 3600.0    # node certificates, renewed at 2/3 of it
DEFAULT_ROTATION_GRACE = 60.0          # longest wait for every node to ACK a new root
DEFAULT_CLOUDMAP_INTERVAL = 5.0        # seconds between DiscoverInstances rounds (--cloudmap)
# the HTTP port (API and admin endpoints)
DEFAULT_HTTP_MAX_CONNECTIONS = 512
DEFAULT_HTTP_MAX_CONNECTIONS_PER_CLIENT = 64
DEFAULT_API_MAX_BODY = 1024 * 1024             # App Mesh's requests are small
DEFAULT_APPLY_MAX_BODY = 16 * 1024 * 1024      # POST /meshplane/v1/apply: a whole model
DEFAULT_HTTP_MAX_BUFFERED = 64 * 1024 * 1024   # request bodies held at once, all connections


@dataclass(frozen=True)
class ServeConfig:
    """Everything `meshplane serve` needs; 0 means unlimited for the limits."""

    paths: tuple[str, ...]
    # what the files' original formats take from outside them (load_paths' keyword arguments):
    # {"parameters": CloudFormation stack parameters, "variables": Terraform variables, the
    # stack's pseudo parameters and resource attributes, the Kubernetes namespace, ...}
    load_options: Mapping[str, Any] = field(default_factory=dict)
    xds: str = DEFAULT_XDS_ADDRESS
    http: str | None = DEFAULT_HTTP_ADDRESS          # None: no HTTP status endpoint
    ready_message: bool = True                       # log what is served once listening
    # admission limits
    max_proxies_per_node: int = DEFAULT_MAX_PROXIES_PER_NODE
    max_streams: int = DEFAULT_MAX_STREAMS
    max_new_streams_per_second: float = 0
    # mesh CA (off without ca_dir)
    ca_dir: str | None = None
    cert_lifetime: float = DEFAULT_CERT_LIFETIME
    trust_domain: str | None = None
    rotation_grace: float = DEFAULT_ROTATION_GRACE
    # xDS security (off without a certificate or a token file)
    xds_tls_cert: str | None = None
    xds_tls_key: str | None = None
    xds_client_ca: str | None = None
    xds_token_file: str | None = None
    admin_uris: tuple[str, ...] = ()
    # the model in a store instead of files (sqlite:///path.db, postgresql://...); the App Mesh API
    store: str | None = None
    region: str = "us-west-2"                        # the region of the API's ARNs
    api_max_meshes: int = 1000                       # API model limits (LimitExceededException)
    api_max_resources_per_mesh: int = 20_000
    api_credentials: str | None = None               # SigV4 keys (YAML); None: unsigned, loopback peers only
    # the HTTP port: a non-loopback --http needs api_credentials or insecure_http
    insecure_http: bool = False                      # serve the admin endpoints unauthenticated on any address
    metrics_token_file: str | None = None            # /metrics requires this bearer token (first line)
    http_max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS
    http_max_connections_per_client: int = DEFAULT_HTTP_MAX_CONNECTIONS_PER_CLIENT
    api_max_body: int = DEFAULT_API_MAX_BODY
    apply_max_body: int = DEFAULT_APPLY_MAX_BODY
    http_max_buffered: int = DEFAULT_HTTP_MAX_BUFFERED
    # live AWS Cloud Map (off without cloudmap): DiscoverInstances for the services nodes use
    cloudmap: bool = False
    cloudmap_endpoint_url: str | None = None         # None: the usual AWS endpoint of the region
    cloudmap_interval: float = DEFAULT_CLOUDMAP_INTERVAL
