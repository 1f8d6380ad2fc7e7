"""The mesh CA (xds_server/ca.py) and its secrets (xds_server/secrets.py), without Envoy.

CA directory and permissions, leaf contents and chain, the renewal schedule, the root
rotation state machine (trust before sign), the control plane's SDS-only republishing,
and that no private key leaks into /status, /config_dump or CSDS.
"""
from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from envoy.config.core.v3 import base_pb2

from mesh_model import load_paths
from xds_server.server import csds
from xds_server.ca.authority import (
    ACTIVE, PENDING, RETIRED, RETIRING, CAError, Identity, Leaf, MeshCA, format_duration, parse_duration,
)
from xds_server.cache.snapshot_cache import SnapshotCache
from xds_server.controlplane.control_plane import ControlPlane
from xds_server.ca.mesh_secrets import (
    IDENTITY_SECRET, TRUST_SECRET, SecretManager, due_for_renewal, mesh_ca_warnings, next_renewal, node_identity,
    renew_at, rotation_due, spiffe_id, trust_acked,
)
from xds_server.cache.snapshot import TYPE_CLUSTER, TYPE_LISTENER, TYPE_ROUTE, TYPE_SECRET
from xds_server.observability.status import StatusRegistry
from xds_server.server.callbacks import StreamInfo
from mesh_model.node_id import NodeRef
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from tests.paths import GOLDEN

RETAIL = GOLDEN / "retail" / "model"


class Clock:
    """A settable clock starting now (certificates need plausible dates)."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(leaf_or_pem) -> x509.Certificate:
    pem = leaf_or_pem.cert_pem if isinstance(leaf_or_pem, Leaf) else leaf_or_pem
    return x509.load_pem_x509_certificate(pem)


# ---------------------------------------------------------------------------------------- directory


def test_ca_directory_is_created_private_on_first_start(tmp_path):
    ca = MeshCA.open(tmp_path / "ca")
    root = ca.active
    assert _mode(ca.dir) == 0o700
    assert _mode(ca.dir / "roots") == 0o700
    assert _mode(ca.key_path(root.id)) == 0o600
    assert _mode(ca.cert_path(root.id)) == 0o644
    assert ca.roots == (root,) and root.state == ACTIVE
    state = ca.state_path.read_text()
    assert "PRIVATE" not in state and json.loads(state)["roots"][0]["id"] == root.id
    cert = ca.certificate(root.id)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc.year - cert.not_valid_before_utc.year >= 9


def test_reopening_the_directory_gives_the_same_root(tmp_path):
    first = MeshCA.open(tmp_path / "ca")
    again = MeshCA.open(tmp_path / "ca")
    assert again.active.id == first.active.id
    assert again.bundle_pem() == first.bundle_pem()
    # a leaf from the reopened CA chains to the original root
    leaf = again.issue(Identity("spiffe://m/virtualNode/a"), 60)
    _cert(leaf).verify_directly_issued_by(first.certificate(first.active.id))
    assert MeshCA.load(tmp_path / "ca").active.id == first.active.id


def test_foreign_or_missing_directory_is_refused(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    with pytest.raises(CAError, match="not a meshplane CA"):
        MeshCA.open(tmp_path / "other")
    with pytest.raises(CAError, match="no mesh CA"):
        MeshCA.load(tmp_path / "missing")


# ---------------------------------------------------------------------------------------- leaves


def test_leaf_san_validity_and_chain(tmp_path):
    clock = Clock()
    ca = MeshCA.open(tmp_path / "ca", clock=clock)
    identity = Identity("spiffe://shop/virtualNode/front", dns=("front.shop.local",), ips=("10.0.0.7",))
    leaf = ca.issue(identity, 30)
    cert = _cert(leaf)
    cert.verify_directly_issued_by(ca.certificate(ca.active.id))
    assert leaf.root_id == ca.active.id and leaf.serial == cert.serial_number
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # empty subject (SPIFFE X.509-SVID): the SAN carries the identity
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://shop/virtualNode/front"]
    assert san.value.get_values_for_type(x509.DNSName) == ["front.shop.local"]
    assert [str(i) for i in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert len(cert.subject) == 0
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    # valid for the lifetime from now (backdated by at most 60 s for clock skew)
    assert cert.not_valid_after_utc.timestamp() == clock.t + 30
    assert clock.t - 30 <= cert.not_valid_before_utc.timestamp() <= clock.t
    assert leaf.not_after == clock.t + 30 and leaf.issued_at == clock.t
    # the key is EC P-256 and matches the certificate; it never shows in repr()
    key = serialization.load_pem_private_key(leaf.key_pem, password=None)
    assert key.curve.name == "secp256r1"
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert "PRIVATE" not in repr(leaf) and "BEGIN" not in repr(leaf)
    # nothing of the leaf key is on disk
    for path in ca.dir.rglob("*"):
        if path.is_file():
            assert leaf.key_pem not in path.read_bytes()


def test_node_identity_from_the_model():
    model = load_paths([RETAIL])
    front = NodeRef("retail", "virtualNode", "front")
    identity = node_identity(model, front)
    assert identity.uri == "spiffe://retail/virtualNode/front"
    sd = model.meshes["retail"].virtual_nodes["front"].spec.serviceDiscovery
    if sd is not None and sd.dns is not None:
        assert identity.dns == (sd.dns.hostname,) or identity.ips == (sd.dns.hostname,)
    assert spiffe_id(front, "example.org") == "spiffe://example.org/mesh/retail/virtualNode/front"


def test_durations():
    assert parse_duration("30s") == 30 and parse_duration("10m") == 600 and parse_duration("24h") == 86400
    assert parse_duration("2d") == 172800 and parse_duration("45") == 45 and parse_duration("500ms") == 0.5
    for bad in ("", "0s", "10x", "-1s", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(86400) == "1d" and format_duration(7200) == "2h" and format_duration(8) == "8s"


# ---------------------------------------------------------------------------------------- schedules


def _leaf(issued: float, lifetime: float, root: str = "r1") -> Leaf:
    return Leaf(Identity("spiffe://m/virtualNode/x"), root, 1, issued, issued - 10, issued + lifetime, b"", b"")


def test_renewal_schedule_is_two_thirds_of_the_lifetime():
    leaves = {"a": _leaf(1000, 30), "b": _leaf(1010, 30), "c": _leaf(1000, 90)}
    assert renew_at(leaves["a"]) == 1020
    assert due_for_renewal(leaves, 1019.9) == []
    assert due_for_renewal(leaves, 1020) == ["a"]
    assert due_for_renewal(leaves, 1030) == ["a", "b"]
    assert due_for_renewal(leaves, 1060) == ["a", "b", "c"]
    assert next_renewal(leaves.values()) == 1020 and next_renewal([]) is None
    # a leaf of a root that no longer signs is due at once
    assert due_for_renewal(leaves, 1000, active_root="r2") == ["a", "b", "c"]
    assert due_for_renewal(leaves, 1000, active_root="r1") == []


def test_rotation_waits_for_acks_or_grace():
    assert not rotation_due(100, 100, 60, acked=False, noticed_at_start=False)
    assert rotation_due(101, 100, 60, acked=True, noticed_at_start=False)
    assert rotation_due(160, 100, 60, acked=False, noticed_at_start=False)
    # pending at start-up: Envoys may not have reconnected, ACKs of those present prove nothing
    assert not rotation_due(101, 100, 60, acked=True, noticed_at_start=True)
    assert rotation_due(160, 100, 60, acked=True, noticed_at_start=True)


# ---------------------------------------------------------------------------------------- rotation


def test_rotation_trusts_a_new_root_before_it_signs(tmp_path):
    clock = Clock()
    ca = MeshCA.open(tmp_path / "ca", clock=clock)
    old = ca.active.id
    ident = Identity("spiffe://m/virtualNode/a")
    before = ca.issue(ident, 100)

    new = ca.begin_rotation()
    assert new.state == PENDING
    assert ca.bundle_ids() == (old, new.id), "the new root is trusted at once"
    assert ca.issue(ident, 100).root_id == old, "but it signs nothing while pending"
    with pytest.raises(CAError, match="already in progress"):
        ca.begin_rotation()

    clock.advance(5)
    active, retiring = ca.activate_pending()
    assert (active.id, active.state, retiring.id, retiring.state) == (new.id, ACTIVE, old, RETIRING)
    assert retiring.retire_after >= before.not_after + 5, "the old root outlives every leaf it signed"
    leaf = ca.issue(ident, 100)
    assert leaf.root_id == new.id
    _cert(leaf).verify_directly_issued_by(ca.certificate(new.id))
    assert ca.bundle_ids() == (old, new.id), "the old root stays trusted while its leaves live"

    clock.t = retiring.retire_after - 1
    assert ca.retire_expired() == []
    clock.t = retiring.retire_after
    retired = ca.retire_expired()
    assert [r.id for r in retired] == [old] and retired[0].state == RETIRED
    assert ca.bundle_ids() == (new.id,)
    assert not ca.key_path(old).exists() and ca.cert_path(old).exists()
    # the state survives a restart
    assert [(r.id, r.state) for r in MeshCA.load(ca.dir).roots] == [(old, RETIRED), (new.id, ACTIVE)]


def test_a_rotation_started_by_another_process_is_noticed(tmp_path):
    ca = MeshCA.open(tmp_path / "ca")
    other = MeshCA.load(tmp_path / "ca")  # `meshplane ca rotate` in another process
    assert not ca.reload_if_changed()
    time.sleep(0.01)
    new = other.begin_rotation()
    assert ca.reload_if_changed()
    assert ca.pending is not None and ca.pending.id == new.id


def test_secret_manager_renews_and_rotates(tmp_path):
    clock = Clock()
    ca = MeshCA.open(tmp_path / "ca", clock=clock)
    manager = SecretManager(ca, lifetime=30, rotation_grace=60, clock=clock)
    ident = Identity("spiffe://m/virtualNode/a")
    first = manager.resources("k1", ident)
    assert set(first) == {IDENTITY_SECRET, TRUST_SECRET}
    assert manager.resources("k1", ident)[IDENTITY_SECRET] is first[IDENTITY_SECRET], "no re-issue without a reason"
    leaf1 = manager.leaves["k1"]

    clock.advance(19)
    assert not manager.refresh().any
    clock.advance(1)  # 2/3 of 30 s
    result = manager.refresh()
    assert result.renewed == {"k1"} and not result.bundle_changed
    assert manager.leaves["k1"].serial != leaf1.serial

    old = ca.active.id
    new = MeshCA.load(ca.dir).begin_rotation()
    result = manager.refresh(acked=lambda: True)
    assert result.bundle_changed and result.activated is None, "first the bundle is pushed"
    assert manager.bundle_ids == (old, new.id)
    trust = secret_pb2.Secret.FromString(manager.resources("k1", ident)[TRUST_SECRET].value)
    assert trust.validation_context.trusted_ca.inline_bytes.count(b"BEGIN CERTIFICATE") == 2

    clock.advance(1)
    result = manager.refresh(acked=lambda: False)
    assert result.activated is None and not result.renewed, "not every node has ACKed the bundle"
    clock.advance(1)
    result = manager.refresh(acked=lambda: True)
    assert result.activated == new.id and result.renewed == {"k1"}
    assert manager.leaves["k1"].root_id == new.id
    assert manager.bundle_ids == (old, new.id)

    clock.t = ca.root(old).retire_after
    result = manager.refresh()
    assert result.retired == [old] and result.bundle_changed and manager.bundle_ids == (new.id,)


def test_rotation_grace_switches_without_acks(tmp_path):
    clock = Clock()
    ca = MeshCA.open(tmp_path / "ca", clock=clock)
    manager = SecretManager(ca, lifetime=3600, rotation_grace=10, clock=clock)
    manager.resources("k", Identity("spiffe://m/virtualNode/a"))
    new = ca.begin_rotation()
    assert manager.refresh(acked=lambda: False).bundle_changed
    clock.advance(9)
    assert manager.refresh(acked=lambda: False).activated is None
    clock.advance(1)
    assert manager.refresh(acked=lambda: False).activated == new.id


# ---------------------------------------------------------------------------------------- control plane


def _node(name: str) -> base_pb2.Node:
    return base_pb2.Node(id=f"mesh/retail/virtualNode/{name}")


def _plane(tmp_path, clock, lifetime=30):
    model_dir = tmp_path / "model"
    shutil.copytree(RETAIL, model_dir)
    cache = SnapshotCache()
    manager = SecretManager(MeshCA.open(tmp_path / "ca", clock=clock), lifetime=lifetime, clock=clock)
    return ControlPlane([str(model_dir)], cache, secrets=manager), cache


def test_renewal_republishes_only_the_secret_type(tmp_path):
    clock = Clock()
    control, cache = _plane(tmp_path, clock)
    key = control.resolve(_node("front"))
    snap = cache.get(key)
    secrets = snap.get(TYPE_SECRET)
    assert set(secrets.resources) == {IDENTITY_SECRET, TRUST_SECRET}
    identity = secret_pb2.Secret.FromString(secrets.resources[IDENTITY_SECRET].value)
    cert = _cert(identity.tls_certificate.certificate_chain.inline_bytes)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://retail/virtualNode/front"]

    generation = cache.generation(key)
    clock.advance(20)
    control.refresh_secrets()
    renewed = cache.get(key)
    assert cache.generation(key) == generation + 1
    for type_url in (TYPE_CLUSTER, TYPE_LISTENER, TYPE_ROUTE):
        assert renewed.get(type_url) is snap.get(type_url), "nothing but SDS is rebuilt"
    new_secrets = renewed.get(TYPE_SECRET)
    assert new_secrets.version != secrets.version
    assert new_secrets.resource_versions[TRUST_SECRET] == secrets.resource_versions[TRUST_SECRET]
    assert new_secrets.resource_versions[IDENTITY_SECRET] != secrets.resource_versions[IDENTITY_SECRET]
    # without a CA, snapshots stay deterministic and carry no secrets
    plain = ControlPlane([str(tmp_path / "model")], SnapshotCache())
    plain_key = plain.resolve(_node("front"))
    assert plain.cache.get(plain_key).get(TYPE_SECRET).resources == {}
    assert plain.cache.get(plain_key).get(TYPE_CLUSTER).version == snap.get(TYPE_CLUSTER).version


def test_trust_acked_follows_streams(tmp_path):
    clock = Clock()
    control, cache = _plane(tmp_path, clock)
    key = control.resolve(_node("front"))
    registry = StatusRegistry(cache=cache)
    assert trust_acked(registry, cache), "no streams: nothing to wait for"
    stream = StreamInfo(1, "mesh/retail/virtualNode/front", key, "peer")
    registry.on_stream_open(stream)
    assert trust_acked(registry, cache), "a stream that never asked for SDS does not use the trust"
    version = cache.get(key).get(TYPE_SECRET).version
    registry.on_response_sent(stream, TYPE_SECRET, version, {})
    assert not trust_acked(registry, cache)
    registry.on_ack(stream, TYPE_SECRET, version)
    assert trust_acked(registry, cache)
    # a new bundle: the ACK of the old one no longer counts
    MeshCA.load(tmp_path / "ca").begin_rotation()
    assert control.refresh_secrets(acked=lambda: trust_acked(registry, cache)).bundle_changed
    assert not trust_acked(registry, cache)
    result = control.refresh_secrets(acked=lambda: trust_acked(registry, cache))
    assert result.activated is None
    version = cache.get(key).get(TYPE_SECRET).version
    registry.on_response_sent(stream, TYPE_SECRET, version, {})
    registry.on_ack(stream, TYPE_SECRET, version)
    assert control.refresh_secrets(acked=lambda: trust_acked(registry, cache)).activated is not None


def test_private_keys_never_reach_status_config_dump_or_csds(tmp_path):
    clock = Clock()
    control, cache = _plane(tmp_path, clock)
    key = control.resolve(_node("front"))
    registry = StatusRegistry(cache=cache)
    registry.on_stream_open(StreamInfo(1, "mesh/retail/virtualNode/front", key, "peer"))
    dump = csds.cache_config_dump(registry, cache)("mesh/retail/virtualNode/front")
    text = json.dumps(dump)
    assert "[redacted]" in text and "PRIVATE KEY" not in text
    assert "BEGIN CERTIFICATE" in text or "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS" in text  # the certificate itself is shown
    for packed in cache.get(key).get(TYPE_SECRET).resources.values():
        assert b"PRIVATE KEY" not in csds.redacted_any(packed).value
    assert "PRIVATE" not in json.dumps(control.status())
    assert json.dumps(control.status())  # the CA status is JSON-able


# ---------------------------------------------------------------------------------------- model checks


def _model(tmp_path, certificate: str, trust: str):
    (tmp_path / "m.yaml").write_text(textwrap.dedent(f"""
        kind: Mesh
        name: m
        ---
        kind: VirtualNode
        mesh: m
        name: api
        spec:
          listeners:
            - portMapping: {{port: 8080, protocol: http}}
              tls:
                mode: STRICT
                certificate: {{sds: {{secretName: "{certificate}"}}}}
                validation: {{trust: {{sds: {{secretName: "{trust}"}}}}}}
          serviceDiscovery: {{dns: {{hostname: api.m.local}}}}
        """))
    return load_paths([tmp_path])


def test_mesh_ca_names_without_a_ca_are_warned_about(tmp_path):
    model = _model(tmp_path, "meshplane:identity", "meshplane:trust")
    assert mesh_ca_warnings(model, ca_enabled=True) == []
    warnings = mesh_ca_warnings(model, ca_enabled=False)
    assert len(warnings) == 1 and "mesh/m/virtualNode/api" in warnings[0] and "--ca-dir" in warnings[0]


def test_mesh_ca_names_in_the_wrong_place_are_warned_about(tmp_path):
    model = _model(tmp_path, "meshplane:trust", "meshplane:nope")
    warnings = mesh_ca_warnings(model, ca_enabled=True)
    assert any("certificate" in w and "meshplane:trust is not a certificate" in w for w in warnings), warnings
    assert any("unknown mesh CA secret 'meshplane:nope'" in w for w in warnings), warnings


# ---------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xds_server.cli", *args], capture_output=True, text=True, timeout=30)


def test_cli_ca_show_and_rotate(tmp_path):
    missing = _cli("ca", "show", "--ca-dir", str(tmp_path / "ca"))
    assert missing.returncode == 1 and "no mesh CA" in missing.stderr
    ca = MeshCA.open(tmp_path / "ca")
    rotate = _cli("ca", "rotate", "--ca-dir", str(ca.dir))
    assert rotate.returncode == 0, rotate.stderr
    new_id = rotate.stdout.strip()
    assert _cli("ca", "rotate", "--ca-dir", str(ca.dir)).returncode == 1, "one rotation at a time"
    shown = _cli("ca", "show", "--ca-dir", str(ca.dir), "--json")
    roots = {r["id"]: r for r in json.loads(shown.stdout)["roots"]}
    assert roots[ca.active.id]["state"] == ACTIVE and roots[new_id]["state"] == PENDING
    assert roots[new_id]["inBundle"] and not roots[new_id]["signs"]
    text = _cli("ca", "show", "--ca-dir", str(ca.dir)).stdout
    assert new_id in text and "pending" in text and "PRIVATE" not in text and "PRIVATE" not in shown.stdout


def test_control_plane_warns_at_start_without_a_ca(tmp_path, caplog):
    _model(tmp_path, "meshplane:identity", "meshplane:trust")
    with caplog.at_level("WARNING", logger="meshplane.control"):
        ControlPlane([str(tmp_path)], SnapshotCache())
    assert any("mesh/m/virtualNode/api" in r.getMessage() and "--ca-dir" in r.getMessage() for r in caplog.records), caplog.text
