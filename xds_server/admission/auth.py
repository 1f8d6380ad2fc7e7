"""Who may ask meshplane for what: authentication and authorization of xDS streams.

The control plane hands out every route and, with the mesh CA, private keys: it must not be
the hole in a zero-trust mesh. A stream proves an identity in one of two ways:

* **mTLS** (``serve --xds-tls-*``): the client certificate's URI SAN names the node, in the
  mesh CA's form ``spiffe://<mesh>/virtualNode/<name>`` (or
  ``spiffe://<trust-domain>/mesh/<mesh>/virtualNode/<name>``);
* **a bearer token** (``serve --xds-token-file``), for environments without certificates:
  Envoy sends ``authorization: Bearer <token>`` as gRPC initial metadata (``meshplane bootstrap
  --xds-token-file`` writes it); the server keeps only SHA-256 hashes of the tokens.

A stream may then only receive the config and secrets of the node it proved: a first
request naming any other node id (another node, another mesh) is refused with
PERMISSION_DENIED before anything is sent, and logged. Secrets are per node snapshot, so the
node check also guards them. CSDS (every node's state) needs an admin identity.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import urlparse

import grpc
import yaml

from mesh_model.node_id import parse_node_id

from xds_server.server.errors import StreamError

log = logging.getLogger("meshplane.auth")

ADMIN = "admin"


@dataclass(frozen=True)
class Caller:
    """Who an xDS call proved to be: a node id (canonical short form) or the admin role."""

    node_id: Optional[str]
    admin: bool
    source: str  # "mtls:<uri>" or "token:<label>", for logs

    def may_serve(self, node_id: str) -> bool:
        return self.node_id == node_id


def node_id_from_uri(uri: str) -> Optional[str]:
    """``spiffe://shop/virtualNode/front`` -> ``mesh/shop/virtualNode/front`` (None if not a node URI)."""
    parsed = urlparse(uri)
    if parsed.scheme != "spiffe":
        return None
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) == 2 and parts[0] in ("virtualNode", "virtualGateway"):
        mesh = parsed.netloc
    elif len(parts) == 4 and parts[0] == "mesh" and parts[2] in ("virtualNode", "virtualGateway"):
        mesh, parts = parts[1], parts[2:]
    else:
        return None
    return f"mesh/{mesh}/{parts[0]}/{parts[1]}"


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_token_file(path: str | Path) -> dict[str, str]:
    """``{sha256(token): node id or "admin"}`` from a YAML file of the form

    .. code-block:: yaml

        tokens:
          - node: mesh/shop/virtualNode/front
            sha256: 5e88...          # or  token: <the token itself>
          - admin: true              # may use CSDS (every node's status, secrets redacted)
            sha256: 9f86...
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a mapping with a 'tokens' list")
    table: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: tokens[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping")
        digest = entry.get("sha256") or (_sha256(str(entry["token"])) if entry.get("token") else None)
        if not digest or len(digest) != 64:
            raise ValueError(f"{where}: needs 'token' or a 64-hex-digit 'sha256'")
        if entry.get("admin") is True:
            owner = ADMIN
        elif entry.get("node"):
            owner = parse_node_id(str(entry["node"])).node_id  # ValueError names a bad id
        else:
            raise ValueError(f"{where}: needs 'node' (a node id) or 'admin: true'")
        table[digest.lower()] = owner
    return table


class Authenticator:
    """Turns a gRPC call's credentials into a ``Caller`` and checks node ids against it."""

    def __init__(self, *, tokens: Mapping[str, str] | None = None, mtls: bool = False, admin_uris: frozenset[str] = frozenset()):
        self.tokens = dict(tokens or {})
        self.mtls = mtls
        self.admin_uris = admin_uris

    @property
    def enabled(self) -> bool:
        return self.mtls or bool(self.tokens)

    def identify(self, context) -> Caller:
        """The caller's identity; ``StreamError(UNAUTHENTICATED)`` when it proved none."""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and value.startswith("Bearer "):
                owner = self._token_owner(value[len("Bearer "):].strip())
                if owner is None:
                    raise StreamError(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
                return Caller(None if owner == ADMIN else owner, owner == ADMIN, f"token:{owner}")
        if self.mtls:
            auth = context.auth_context() or {}
            for raw in auth.get("peer_uri", []) + auth.get("x509_subject_alternative_name", []):
                uri = raw.decode() if isinstance(raw, bytes) else str(raw)
                if uri in self.admin_uris:
                    return Caller(None, True, f"mtls:{uri}")
                node_id = node_id_from_uri(uri)
                if node_id is not None:
                    return Caller(node_id, False, f"mtls:{uri}")
            raise StreamError(grpc.StatusCode.UNAUTHENTICATED, "the client certificate names no virtual node (URI SAN spiffe://<mesh>/virtualNode/<name>)")
        raise StreamError(grpc.StatusCode.UNAUTHENTICATED, "credentials required: a bearer token or a client certificate")

    def _token_owner(self, token: str) -> Optional[str]:
        digest = _sha256(token)
        for known, owner in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return owner
        return None

    def authorize(self, node, context) -> Caller:
        """Allow a stream for ``node`` only if the caller proved exactly that node."""
        if not self.enabled:
            return Caller(None, True, "unauthenticated")
        identity = self.identify(context)
        try:
            wanted = parse_node_id(node.id).node_id
        except ValueError:
            wanted = node.id
        if not identity.may_serve(wanted):
            log.warning("refused %s: asked for node %s (peer %s)", identity.source, node.id, context.peer())
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED, f"{identity.source} may not receive the config of {node.id}")
        return identity

    def require_admin(self, context) -> None:
        """CSDS shows every node: only an admin identity (or an open server) may ask."""
        if not self.enabled:
            return
        identity = self.identify(context)
        if not identity.admin:
            log.warning("refused CSDS to %s (peer %s)", identity.source, context.peer())
            raise StreamError(grpc.StatusCode.PERMISSION_DENIED, "CSDS needs an admin identity")
