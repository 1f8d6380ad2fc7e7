"""Mesh-CA secrets for nodes: SDS ``Secret`` protos, the renewal schedule, root-rotation steps.

Every node snapshot of a server running the mesh CA (``meshplane serve --ca-dir``) holds two
SDS secrets besides what the model compiles to (reserved names, ``mesh_model.compiler.tls``):

* ``meshplane:identity`` -- ``tls_certificate``: the node's own leaf (URI SAN
  ``spiffe://<mesh>/virtualNode/<name>``, or ``spiffe://<trust-domain>/mesh/<mesh>/virtualNode/<name>``
  with ``--trust-domain``; plus the node's service-discovery name as a DNS or IP SAN so that a
  client policy without SANs -- App Mesh's default check of that name -- works) and its key;
* ``meshplane:trust`` -- ``validation_context.trusted_ca``: every root in the trust bundle.

Envoy only asks for the names its listeners and clusters reference, so a node that does not
use them never receives them. Leaves are per snapshot key (node id + placement).

Secret versions are *not* deterministic: a new leaf (new key, new serial) is a new version,
so "same model -> same versions" holds for every type but SDS when the CA is on.

Renewal: a leaf is renewed at ``RENEW_FRACTION`` (2/3) of its lifetime, or at once when it
was signed by a root that no longer signs. Root rotation (``meshplane ca rotate``) is driven
by ``SecretManager.refresh``: the pending root is pushed in the bundle first; it starts
signing once every connected stream has ACKed a bundle holding it (``trust_acked``), or
after the rotation grace; then every leaf is re-issued; the old root leaves the bundle once
the last leaf it signed has expired. The decisions (``due_for_renewal``, ``rotation_due``)
are pure functions of their inputs.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2

from mesh_model import pacing
from mesh_model.compiler.tls import MESH_CA_IDENTITY, MESH_CA_PREFIX, MESH_CA_TRUST, service_discovery_name
from mesh_model.node_id import NodeRef

from xds_server.config import DEFAULT_CERT_LIFETIME, DEFAULT_ROTATION_GRACE
from xds_server.ca.authority import Identity, Leaf, MeshCA, format_duration
from xds_server.cache.snapshot import TYPE_SECRET

if TYPE_CHECKING:  # pragma: no cover
    from mesh_model.compiler import CompileCache
    from mesh_model.spec.model import Mesh, MeshModel, Resource

    from xds_server.cache.snapshot_cache import SnapshotCache
    from xds_server.observability.status import StatusRegistry

log = logging.getLogger("meshplane.secrets")

IDENTITY_SECRET = MESH_CA_IDENTITY
TRUST_SECRET = MESH_CA_TRUST
RENEW_FRACTION = 2 / 3
_SECRET_TYPE_PREFIX = "type.googleapis.com/"
_DNS_NAME = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


# ---------------------------------------------------------------------------------------
# Identities and secrets (pure)
# ---------------------------------------------------------------------------------------

def spiffe_id(node: NodeRef, trust_domain: str | None = None) -> str:
    """``spiffe://<mesh>/<kind>/<name>``; with a trust domain ``spiffe://<td>/mesh/<mesh>/<kind>/<name>``."""
    if trust_domain:
        return f"spiffe://{trust_domain}/mesh/{node.mesh}/{node.kind}/{node.name}"
    return f"spiffe://{node.mesh}/{node.kind}/{node.name}"


def node_identity(model: "MeshModel", node: NodeRef, trust_domain: str | None = None) -> Identity:
    """The SANs of a node's leaf: its SPIFFE id, and its service-discovery name if it has one."""
    uri = spiffe_id(node, trust_domain)
    mesh = model.meshes.get(node.mesh)
    resource = mesh.virtual_nodes.get(node.name) if mesh is not None and node.kind == "virtualNode" else None
    name = service_discovery_name(resource) if resource is not None else None
    if not name:
        return Identity(uri)
    try:
        return Identity(uri, ips=(str(ipaddress.ip_address(name)),))
    except ValueError:
        pass
    return Identity(uri, dns=(name.rstrip("."),)) if _DNS_NAME.match(name) else Identity(uri)


def identity_secret(leaf: Leaf) -> secret_pb2.Secret:
    secret = secret_pb2.Secret(name=IDENTITY_SECRET)
    secret.tls_certificate.certificate_chain.inline_bytes = leaf.cert_pem
    secret.tls_certificate.private_key.inline_bytes = leaf.key_pem
    return secret


def trust_secret(bundle_pem: bytes) -> secret_pb2.Secret:
    secret = secret_pb2.Secret(name=TRUST_SECRET)
    secret.validation_context.trusted_ca.inline_bytes = bundle_pem
    return secret


def pack(secret: secret_pb2.Secret) -> any_pb2.Any:
    return any_pb2.Any(
        type_url=_SECRET_TYPE_PREFIX + secret.DESCRIPTOR.full_name,
        value=secret.SerializeToString(deterministic=True),
    )


# ---------------------------------------------------------------------------------------
# Schedules (pure)
# ---------------------------------------------------------------------------------------

def renew_at(leaf: Leaf, fraction: float = RENEW_FRACTION) -> float:
    """When a leaf is due: ``fraction`` of the way from its issue to its expiry."""
    return leaf.issued_at + fraction * (leaf.not_after - leaf.issued_at)


def due_for_renewal(leaves: Mapping[str, Leaf], now: float, active_root: str | None = None) -> list[str]:
    """Keys whose leaf needs a new one at ``now``: past its renewal time, or signed by a root that no longer signs."""
    return sorted(
        key for key, leaf in leaves.items()
        if now >= renew_at(leaf) or (active_root is not None and leaf.root_id != active_root)
    )


def next_renewal(leaves: Iterable[Leaf]) -> float | None:
    """The earliest renewal time of ``leaves`` (None when there is none)."""
    return min((renew_at(leaf) for leaf in leaves), default=None)


def rotation_due(now: float, noticed_at: float, grace: float, *, acked: bool, noticed_at_start: bool) -> bool:
    """May a pending root (pushed in the bundle since ``noticed_at``) start signing at ``now``?

    Yes once every connected stream has ACKed the bundle holding it, or once ``grace`` has
    passed. A rotation found pending when the server started waits the whole grace: Envoys
    that held only the old bundle may not have reconnected yet.
    """
    if now - noticed_at >= grace:
        return True
    return acked and not noticed_at_start


def trust_acked(registry: "StatusRegistry", cache: "SnapshotCache") -> bool:
    """Has every connected stream that uses ``meshplane:trust`` ACKed its current bundle?

    A stream that was never sent SDS, or whose SDS responses do not carry the trust secret,
    does not use it. Otherwise it must have ACKed either the current SDS version of its
    snapshot or a version in which the trust secret already had its current content.
    """
    for stream in registry.streams():
        snapshot = cache.get(stream.key)
        if snapshot is None:
            continue
        tsnap = snapshot.get(TYPE_SECRET)
        current = tsnap.resource_versions.get(TRUST_SECRET)
        if current is None:
            continue
        t = stream.types.get(TYPE_SECRET)
        if t is None or t.sent is None:
            continue
        if t.sent_resources is not None and TRUST_SECRET not in t.sent_resources:
            continue
        if t.acked == tsnap.version:
            continue
        if t.acked_resources is not None and t.acked_resources.get(TRUST_SECRET) == current:
            continue
        return False
    return True


# ---------------------------------------------------------------------------------------
# Model checks
# ---------------------------------------------------------------------------------------

def mesh_ca_secret_uses(node: "Resource") -> list[tuple[str, str, str]]:
    """Where a virtual node uses a ``meshplane:`` secret: ``(where, role, name)`` in spec order.

    ``role`` is ``certificate`` or ``trust``, the place the name stands in; the mesh CA
    serves ``meshplane:identity`` as a certificate and ``meshplane:trust`` as a trust only.
    """
    uses: list[tuple[str, str, str]] = []
    spec = node.spec

    def tls_uses(where: str, tls) -> None:
        if tls is None:
            return
        cert = tls.certificate
        if cert is not None and cert.sds is not None and cert.sds.secretName.startswith(MESH_CA_PREFIX):
            uses.append((f"{where}.certificate", "certificate", cert.sds.secretName))
        validation = tls.validation
        if validation is not None and validation.trust.sds is not None and validation.trust.sds.secretName.startswith(MESH_CA_PREFIX):
            uses.append((f"{where}.validation.trust", "trust", validation.trust.sds.secretName))

    for i, listener in enumerate(spec.listeners or ()):
        tls_uses(f"spec.listeners[{i}].tls", listener.tls)
    if spec.backendDefaults is not None and spec.backendDefaults.clientPolicy is not None:
        tls_uses("spec.backendDefaults.clientPolicy.tls", spec.backendDefaults.clientPolicy.tls)
    for i, backend in enumerate(spec.backends or ()):
        vs = backend.virtualService
        if vs is not None and vs.clientPolicy is not None:
            tls_uses(f"spec.backends[{i}].virtualService.clientPolicy.tls", vs.clientPolicy.tls)
    return uses


def mesh_ca_misuse(where: str, role: str, name: str) -> str | None:
    """Why a ``meshplane:`` name cannot work where it stands, or ``None`` when it can."""
    expected = {"certificate": MESH_CA_IDENTITY, "trust": MESH_CA_TRUST}[role]
    if name == expected:
        return None
    if name in (MESH_CA_IDENTITY, MESH_CA_TRUST):
        return f"{where}: {name} is not a {role} (use sds secretName {expected})"
    return f"{where}: unknown mesh CA secret {name!r} (reserved names: {MESH_CA_IDENTITY}, {MESH_CA_TRUST})"


def mesh_ca_warnings(model: "MeshModel", ca_enabled: bool, cache: "CompileCache | None" = None) -> list[str]:
    """Problems with ``meshplane:`` secret names in a model (logged at start and on reload).

    Without a CA (no ``--ca-dir``), every node using them is named: those secrets will never
    arrive, so the listeners/clusters that reference them stay warming. With the model's
    compile ``cache``, a reload looks again only at the nodes that changed.
    """
    findings = [mesh_ca_findings(mesh, cache) for mesh in model.meshes.values()]
    return ca_warnings_of(findings, ca_enabled)


def mesh_ca_findings(mesh: "Mesh", cache: "CompileCache | None" = None) -> tuple[list[str], list[str]]:
    """``(nodes using mesh CA secrets, misuses)`` of one mesh: a function of that mesh alone."""
    users: list[str] = []
    warnings: list[str] = []
    for name, node in pacing.paced(mesh.virtual_nodes.items()):
        if cache is None:
            uses = mesh_ca_secret_uses(node)
        else:
            uses = cache.get(("mesh-ca-uses", mesh.name, name), lambda: mesh_ca_secret_uses(node),
                             {("VirtualNode", mesh.name, name)})
        if uses:
            users.append(f"mesh/{mesh.name}/virtualNode/{name}")
        for where, role, secret in uses:
            problem = mesh_ca_misuse(where, role, secret)
            if problem:
                warnings.append(f"mesh/{mesh.name}/virtualNode/{name}: {problem}")
    return users, warnings


def ca_warnings_of(findings: "Sequence[tuple[list[str], list[str]]]", ca_enabled: bool) -> list[str]:
    """``mesh_ca_warnings`` from each mesh's ``mesh_ca_findings``, in mesh order."""
    users = [user for found, _ in findings for user in found]
    warnings = [warning for _, misuses in findings for warning in misuses]
    if users and not ca_enabled:
        warnings.insert(0, (
            f"{len(users)} node(s) use mesh CA secrets (meshplane:identity / meshplane:trust) but the mesh CA "
            f"is off (no --ca-dir): their TLS listeners/clusters will stay warming: {', '.join(users)}"
        ))
    return warnings


# ---------------------------------------------------------------------------------------
# Per-key state
# ---------------------------------------------------------------------------------------

@dataclass
class RefreshResult:
    bundle_changed: bool = False  # every key needs the new trust secret
    renewed: set[str] = field(default_factory=set)  # keys with a new leaf
    activated: str | None = None  # root that started signing
    retired: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return self.bundle_changed or bool(self.renewed)


class SecretManager:
    """The mesh-CA secrets of every snapshot key: issue, renew, follow root rotations.

    ``resources(key, identity)`` gives the packed secrets to merge into a key's snapshot
    (issuing a leaf the first time, or when the identity changed); ``refresh()`` is called
    periodically by the control plane and says which keys need their secrets republished.
    """

    def __init__(
        self,
        ca: MeshCA,
        *,
        lifetime: float = DEFAULT_CERT_LIFETIME,
        trust_domain: str | None = None,
        rotation_grace: float = DEFAULT_ROTATION_GRACE,
        clock: Callable[[], float] | None = None,
    ):
        if lifetime < 1:
            raise ValueError("certificate lifetime must be at least 1s")
        self.ca = ca
        self.lifetime = lifetime
        self.trust_domain = trust_domain
        self.rotation_grace = rotation_grace
        self.clock = clock or ca.clock or time.time
        self.leaves: dict[str, Leaf] = {}
        self._packed_identity: dict[str, any_pb2.Any] = {}
        self.issued = 0
        self._bundle_ids: tuple[str, ...] = ()
        self._packed_trust: any_pb2.Any | None = None
        self._set_bundle()
        now = self.clock()
        pending = ca.pending
        # (root id, when this server first pushed it, found pending at start-up)
        self._pending: tuple[str, float, bool] | None = (pending.id, now, True) if pending else None

    def _set_bundle(self) -> None:
        self._bundle_ids = self.ca.bundle_ids()
        self._packed_trust = pack(trust_secret(self.ca.bundle_pem()))

    @property
    def bundle_ids(self) -> tuple[str, ...]:
        return self._bundle_ids

    def _issue(self, key: str, identity: Identity) -> Leaf:
        leaf = self.ca.issue(identity, self.lifetime, now=self.clock())
        self.leaves[key] = leaf
        self._packed_identity[key] = pack(identity_secret(leaf))
        self.issued += 1
        log.debug("issued leaf %x for %s (root %s, until %s)", leaf.serial, identity.uri, leaf.root_id, leaf.not_after)
        return leaf

    def resources(self, key: str, identity: Identity) -> dict[str, any_pb2.Any]:
        """The packed mesh-CA secrets of ``key`` (name -> Any)."""
        leaf = self.leaves.get(key)
        if leaf is None or leaf.identity != identity:
            self._issue(key, identity)
        return {IDENTITY_SECRET: self._packed_identity[key], TRUST_SECRET: self._packed_trust}

    def forget(self, key: str) -> None:
        self.leaves.pop(key, None)
        self._packed_identity.pop(key, None)

    def next_due(self) -> float | None:
        return next_renewal(self.leaves.values())

    def refresh(self, acked: Callable[[], bool] = lambda: True, *, now: float | None = None) -> RefreshResult:
        """One step: notice a rotation, maybe switch signing, retire roots, renew due leaves.

        ``acked()`` answers "has every connected stream ACKed the bundle served now?"
        (``trust_acked``); it is only asked once a bundle holding the pending root has been
        served (the caller republishes right after a ``bundle_changed`` result).
        """
        now = self.clock() if now is None else now
        result = RefreshResult()
        self.ca.reload_if_changed()
        pending = self.ca.pending
        if pending is None:
            self._pending = None
        else:
            if self._pending is None or self._pending[0] != pending.id:
                self._pending = (pending.id, now, False)
                log.info("root rotation: pushing new root %s in the trust bundle of every node", pending.id)
            _, noticed_at, at_start = self._pending
            if pending.id in self._bundle_ids and rotation_due(
                now, noticed_at, self.rotation_grace, acked=bool(acked()), noticed_at_start=at_start,
            ):
                waited = now - noticed_at
                new_root, old_root = self.ca.activate_pending(now=now)
                why = "every connected node ACKed the new bundle" if waited < self.rotation_grace else f"grace {format_duration(self.rotation_grace)} passed"
                log.info("root rotation: %s after %.1fs; root %s signs now, re-issuing %d leaves", why, waited, new_root.id, len(self.leaves))
                result.activated = new_root.id
                self._pending = None
        result.retired = [r.id for r in self.ca.retire_expired(now=now)]
        if self.ca.bundle_ids() != self._bundle_ids:
            self._set_bundle()
            result.bundle_changed = True
        active = self.ca.active.id
        for key in due_for_renewal(self.leaves, now, active):
            self._issue(key, self.leaves[key].identity)
            result.renewed.add(key)
        return result

    def status(self) -> dict:
        """For /status: roots and leaf counts (never key material)."""
        leaves = list(self.leaves.values())
        return {
            "dir": str(self.ca.dir),
            "certLifetime": format_duration(self.lifetime),
            "trustDomain": self.trust_domain,
            "bundle": list(self._bundle_ids),
            "active": self.ca.active.id,
            "pending": self.ca.pending.id if self.ca.pending else None,
            "leaves": len(leaves),
            "issued": self.issued,
            "nextRenewalIn": None if not leaves else round(max(0.0, next_renewal(leaves) - self.clock()), 1),
        }
