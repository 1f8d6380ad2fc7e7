"""meshplane's built-in mesh CA: roots on disk, short-lived leaves in memory, root rotation.

``meshplane serve --ca-dir DIR`` runs it; ``meshplane ca rotate|show --ca-dir DIR`` work on
the same directory (from another process: every change is made under ``flock(DIR/lock)``
and written with an atomic rename, and the server notices it by polling ``state.json``).

Directory layout (created on first start, mode 0700)::

    DIR/
      lock                 flock(2) target for every change (empty)
      state.json           the roots and their states (no key material), 0644
      roots/               0700
        <root-id>.pem      root certificate (PEM), 0644
        <root-id>.key      root private key (PEM PKCS#8, EC P-256), 0600; deleted when retired

Roots (EC P-256, self-signed, ``pathLen 0``, 10 years) go through these states::

    pending --(every connected node ACKed the bundle holding it, or the grace passed)--> active
    active  --(a pending root became active)--> retiring
    retiring --(the last leaf it signed has expired)--> retired

* ``pending``: in the trust bundle, signs nothing (trust before sign).
* ``active``: exactly one; signs every new leaf; in the bundle.
* ``retiring``: signs nothing; stays in the bundle until ``retireAfter`` (the latest expiry
  of any leaf it signed, recorded in ``signedUntil`` as leaves are issued).
* ``retired``: out of the bundle; its private key is deleted, its certificate kept.

Leaves (EC P-256, serverAuth + clientAuth, a critical URI SAN naming the node, empty
subject as in SPIFFE X.509-SVIDs) exist only in memory and on the ADS stream: their keys
are never written anywhere. Nothing here logs key material, and ``Leaf``'s repr omits it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("meshplane.ca")

PENDING, ACTIVE, RETIRING, RETIRED = "pending", "active", "retiring", "retired"
TRUSTED_STATES = (PENDING, ACTIVE, RETIRING)  # in the trust bundle
STATE_FORMAT = 1
ROOT_LIFETIME = 10 * 365 * 86400.0
MAX_BACKDATE = 60.0  # leaves are valid from (issue - min(60 s, lifetime)): tolerates clock skew


class CAError(ValueError):
    """The CA directory is missing, foreign or inconsistent, or a rotation step is not allowed."""


# ---------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``24h``, ``7d``, ``500ms`` or plain seconds -> seconds (> 0)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"invalid duration {text!r} (e.g. 30s, 10m, 24h, 7d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text: str | None) -> float | None:
    if text is None:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class RootInfo:
    """One root as recorded in ``state.json`` (no key material)."""

    id: str
    state: str
    created: float
    not_after: float
    activated: float | None = None
    retire_after: float | None = None  # retiring: when it leaves the bundle
    retired: float | None = None
    signed_until: float = 0.0  # upper bound of the expiry of every leaf it signed

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "state": self.state,
            "created": _iso(self.created),
            "notAfter": _iso(self.not_after),
            "activated": _iso(self.activated),
            "retireAfter": _iso(self.retire_after),
            "retired": _iso(self.retired),
            "signedUntil": _iso(self.signed_until) if self.signed_until else None,
        }

    @classmethod
    def from_json(cls, data: dict) -> "RootInfo":
        state = data["state"]
        if state not in (PENDING, ACTIVE, RETIRING, RETIRED):
            raise CAError(f"root {data.get('id')}: unknown state {state!r}")
        return cls(
            id=str(data["id"]),
            state=state,
            created=_parse_iso(data["created"]),
            not_after=_parse_iso(data["notAfter"]),
            activated=_parse_iso(data.get("activated")),
            retire_after=_parse_iso(data.get("retireAfter")),
            retired=_parse_iso(data.get("retired")),
            signed_until=_parse_iso(data.get("signedUntil")) or 0.0,
        )


@dataclass(frozen=True)
class Identity:
    """What a leaf says about its holder: the URI SAN, plus DNS/IP SANs (may be empty)."""

    uri: str
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Leaf:
    """An issued leaf certificate and its key (PEM). The key never appears in repr()."""

    identity: Identity
    root_id: str
    serial: int
    issued_at: float
    not_before: float
    not_after: float
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)

    @property
    def lifetime(self) -> float:
        return self.not_after - self.issued_at


# ---------------------------------------------------------------------------------------
# X.509
# ---------------------------------------------------------------------------------------

def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_root(root_id: str, now: float, lifetime: float = ROOT_LIFETIME) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshplane"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"meshplane mesh CA {root_id}"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(math.floor(now) - 3600))
        .not_valid_after(_utc(math.floor(now + lifetime)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _sans(identity: Identity) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    names += [x509.DNSName(d) for d in identity.dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in identity.ips]
    return names


def sign_leaf(root_cert: x509.Certificate, root_key, identity: Identity, not_before: float,
              not_after: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))  # SPIFFE X.509-SVID: the identity is the (critical) URI SAN
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(math.floor(not_before)))
        .not_valid_after(_utc(math.floor(not_after)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_sans(identity)), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return cert, key


def cert_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the DER certificate (what ``openssl x509 -fingerprint -sha256`` shows)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# ---------------------------------------------------------------------------------------
# The CA
# ---------------------------------------------------------------------------------------

def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class MeshCA:
    """The CA directory: its roots and their states. Leaves are signed by the active root.

    Read-only use (``ca show``): ``MeshCA.load(dir)``. The server: ``MeshCA.open(dir)``
    (creates the directory and a first root when there is none) and then
    ``reload_if_changed()`` now and then to see a ``ca rotate`` made by another process.
    ``clock`` (seconds since the epoch) is injectable for tests.
    """

    def __init__(self, directory: Path | str, *, clock: Callable[[], float] = time.time):
        self.dir = Path(directory)
        self.clock = clock
        self.roots: tuple[RootInfo, ...] = ()
        self._certs: dict[str, x509.Certificate] = {}
        self._keys: dict[str, object] = {}
        self._stamp: tuple | None = None

    # -- paths
    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    def cert_path(self, root_id: str) -> Path:
        return self.dir / "roots" / f"{root_id}.pem"

    def key_path(self, root_id: str) -> Path:
        return self.dir / "roots" / f"{root_id}.key"

    # -- opening
    @classmethod
    def open(cls, directory: Path | str, *, clock: Callable[[], float] = time.time) -> "MeshCA":
        """Open the CA in ``directory``, creating it (and a first active root) on first use."""
        ca = cls(directory, clock=clock)
        if not ca.dir.exists():
            ca.dir.mkdir(mode=0o700, parents=True)
            os.chmod(ca.dir, 0o700)
        elif not ca.dir.is_dir():
            raise CAError(f"{ca.dir} is not a directory")
        with ca._locked():
            if not ca.state_path.exists():
                ca._initialise()
            ca._read()
        ca._check_permissions()
        return ca

    @classmethod
    def load(cls, directory: Path | str, *, clock: Callable[[], float] = time.time) -> "MeshCA":
        """Open an existing CA directory (``CAError`` if there is none)."""
        ca = cls(directory, clock=clock)
        if not ca.state_path.exists():
            raise CAError(f"no mesh CA in {ca.dir} (`meshplane serve --ca-dir {ca.dir}` creates one)")
        with ca._locked():
            ca._read()
        return ca

    def _initialise(self) -> None:
        leftovers = [p.name for p in self.dir.iterdir() if p.name not in ("lock", "roots")]
        if leftovers:
            raise CAError(f"{self.dir} holds {', '.join(sorted(leftovers))} but no state.json: not a meshplane CA directory")
        roots = self.dir / "roots"
        roots.mkdir(mode=0o700, exist_ok=True)
        os.chmod(roots, 0o700)
        now = self.clock()
        root = self._create_root(now, ACTIVE)
        root = replace(root, activated=now)
        self._write_state((root,))
        log.info("mesh CA created in %s: root %s", self.dir, root.id)

    def _check_permissions(self) -> None:
        for root in self.roots:
            path = self.key_path(root.id)
            if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                log.warning("%s is readable by group/others (mode %o): chmod 600 it", path, stat.S_IMODE(path.stat().st_mode))

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- state file
    def _file_stamp(self) -> tuple | None:
        try:
            st = self.state_path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self) -> None:
        stamp = self._file_stamp()
        data = json.loads(self.state_path.read_text())
        if data.get("format") != STATE_FORMAT:
            raise CAError(f"{self.state_path}: unsupported format {data.get('format')!r}")
        roots = tuple(RootInfo.from_json(r) for r in data["roots"])
        active = [r for r in roots if r.state == ACTIVE]
        if len(active) != 1:
            raise CAError(f"{self.state_path}: {len(active)} active roots (exactly one expected)")
        if sum(1 for r in roots if r.state == PENDING) > 1:
            raise CAError(f"{self.state_path}: more than one pending root")
        for root in roots:
            if root.id not in self._certs:
                self._certs[root.id] = x509.load_pem_x509_certificate(self.cert_path(root.id).read_bytes())
            if root.state == RETIRED:
                self._keys.pop(root.id, None)
        self.roots = roots
        self._stamp = stamp

    def _write_state(self, roots: Sequence[RootInfo]) -> None:
        data = {"format": STATE_FORMAT, "roots": [r.to_json() for r in roots]}
        _write_atomic(self.state_path, (json.dumps(data, indent=2) + "\n").encode())
        self.roots = tuple(roots)
        self._stamp = self._file_stamp()

    def reload_if_changed(self) -> bool:
        """Re-read ``state.json`` if another process changed it; True if it did."""
        if self._file_stamp() == self._stamp:
            return False
        with self._locked():
            before = self.roots
            self._read()
        return self.roots != before

    def _create_root(self, now: float, state: str) -> RootInfo:
        stamp = dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        root_id = f"{stamp}-{secrets.token_hex(3)}"
        cert, key = make_root(root_id, now)
        # key first (0600), then the certificate: a root is never in state.json without its key
        _write_private(self.key_path(root_id), _key_pem(key))
        _write_atomic(self.cert_path(root_id), _cert_pem(cert))
        self._certs[root_id] = cert
        self._keys[root_id] = key
        return RootInfo(id=root_id, state=state, created=now, not_after=cert.not_valid_after_utc.timestamp())

    # -- reading
    def root(self, root_id: str) -> RootInfo:
        for root in self.roots:
            if root.id == root_id:
                return root
        raise KeyError(root_id)

    @property
    def active(self) -> RootInfo:
        return next(r for r in self.roots if r.state == ACTIVE)

    @property
    def pending(self) -> RootInfo | None:
        return next((r for r in self.roots if r.state == PENDING), None)

    def certificate(self, root_id: str) -> x509.Certificate:
        return self._certs[root_id]

    def trusted(self) -> tuple[RootInfo, ...]:
        """The roots in the trust bundle (pending, active, retiring), oldest first (``state.json`` order)."""
        return tuple(r for r in self.roots if r.state in TRUSTED_STATES)

    def bundle_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.trusted())

    def bundle_pem(self) -> bytes:
        return b"".join(_cert_pem(self._certs[r.id]) for r in self.trusted())

    def describe(self) -> list[dict]:
        """Every root with its state and certificate facts (for ``ca show``; no key material)."""
        out = []
        for root in self.roots:
            cert = self._certs[root.id]
            out.append({
                **root.to_json(),
                "inBundle": root.state in TRUSTED_STATES,
                "signs": root.state == ACTIVE,
                "subject": cert.subject.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "sha256": cert_sha256(cert),
                "certificate": str(self.cert_path(root.id)),
                "keyPresent": self.key_path(root.id).exists(),
            })
        return out

    # -- signing
    def _root_key(self, root_id: str):
        key = self._keys.get(root_id)
        if key is None:
            key = serialization.load_pem_private_key(self.key_path(root_id).read_bytes(), password=None)
            self._keys[root_id] = key
        return key

    def issue(self, identity: Identity, lifetime: float, *, now: float | None = None) -> Leaf:
        """A new leaf for ``identity`` signed by the active root, valid ``lifetime`` seconds from now."""
        if lifetime <= 0:
            raise ValueError("leaf lifetime must be positive")
        now = self.clock() if now is None else now
        root = self.active
        root_cert = self._certs[root.id]
        not_before = now - min(MAX_BACKDATE, lifetime)
        not_after = min(now + lifetime, root.not_after)
        if not_after < now + lifetime:
            log.warning("root %s expires before a %s leaf would: rotate the mesh CA root", root.id, format_duration(lifetime))
        cert, key = sign_leaf(root_cert, self._root_key(root.id), identity, not_before, math.ceil(not_after))
        not_after = cert.not_valid_after_utc.timestamp()
        if not_after > root.signed_until:
            # recorded with a quarter lifetime of slack: one write per lifetime/4, not per leaf
            self._record_signed(root.id, not_after + lifetime / 4)
        return Leaf(
            identity=identity, root_id=root.id, serial=cert.serial_number, issued_at=now,
            not_before=cert.not_valid_before_utc.timestamp(), not_after=not_after,
            cert_pem=_cert_pem(cert), key_pem=_key_pem(key),
        )

    def _record_signed(self, root_id: str, until: float) -> None:
        with self._locked():
            self._read()
            roots = [replace(r, signed_until=math.ceil(max(r.signed_until, until))) if r.id == root_id else r for r in self.roots]
            self._write_state(roots)

    # -- rotation
    def begin_rotation(self, *, now: float | None = None) -> RootInfo:
        """Add a new root to the trust bundle, *pending*: it signs nothing until ``activate_pending``."""
        with self._locked():
            self._read()
            if self.pending is not None:
                raise CAError(f"a rotation is already in progress: root {self.pending.id} is pending")
            now = self.clock() if now is None else now
            root = self._create_root(now, PENDING)
            self._write_state((*self.roots, root))
        log.info("root rotation started: new root %s is trusted, not signing yet", root.id)
        return root

    def activate_pending(self, *, now: float | None = None) -> tuple[RootInfo, RootInfo]:
        """The pending root signs from now on; the active one retires once its last leaf expired.

        Returns ``(new active, retiring)``.
        """
        with self._locked():
            self._read()
            pending = self.pending
            if pending is None:
                raise CAError("no pending root to activate (start a rotation with `meshplane ca rotate`)")
            now = self.clock() if now is None else now
            old = self.active
            self._root_key(pending.id)  # fails here, before the switch, if the key is unreadable
            new_active = replace(pending, state=ACTIVE, activated=now)
            retiring = replace(old, state=RETIRING, retire_after=max(old.signed_until, now))
            roots = [new_active if r.id == pending.id else retiring if r.id == old.id else r for r in self.roots]
            self._write_state(roots)
        log.info("root %s signs from now on; root %s stays trusted until %s", new_active.id, retiring.id, _iso(retiring.retire_after))
        return new_active, retiring

    def retire_expired(self, *, now: float | None = None) -> list[RootInfo]:
        """Drop from the bundle every retiring root whose last leaf has expired (key deleted)."""
        now = self.clock() if now is None else now
        if not any(r.state == RETIRING and (r.retire_after or 0) <= now for r in self.roots):
            return []
        with self._locked():
            self._read()
            done = [r for r in self.roots if r.state == RETIRING and (r.retire_after or 0) <= now]
            roots = [replace(r, state=RETIRED, retired=now) if r in done else r for r in self.roots]
            self._write_state(roots)
            for root in done:
                self._keys.pop(root.id, None)
                with contextlib.suppress(FileNotFoundError):
                    self.key_path(root.id).unlink()
        for root in done:
            log.info("root %s retired: its last leaf has expired; removed from the trust bundle", root.id)
        return [self.root(r.id) for r in done]


__all__ = [
    "ACTIVE", "CAError", "Identity", "Leaf", "MeshCA", "PENDING", "RETIRED", "RETIRING", "RootInfo",
    "cert_sha256", "format_duration", "parse_duration",
]
