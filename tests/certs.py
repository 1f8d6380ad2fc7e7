"""Test certificates: a CA and leaf certificates with URI / DNS / IP SANs, written as PEM files.

EC P-256 keys (generated in microseconds, unlike RSA). Leaves carry both serverAuth and
clientAuth, so one leaf can serve as a listener certificate or a client certificate.

    ca = CertificateAuthority("mesh-ca")
    leaf = ca.issue(tmp_path / "echo", uris=["spiffe://meshplane/echo"], dns=["echo.local"])
    leaf.cert, leaf.key, ca.write(tmp_path / "ca.pem")

``python -m tests.certs DIR`` regenerates the long-lived, test-only certificates of the
``tests/golden/mtls`` case (their paths are part of the golden model).
"""
from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Leaf:
    cert: Path  # PEM certificate chain (leaf only; the CA is the trust anchor)
    key: Path  # PEM PKCS#8 private key


class CertificateAuthority:
    def __init__(self, name: str = "meshplane test CA", *, days: int = 2):
        self.name = name
        self.days = days
        self.key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return _cert_pem(self.cert)

    def write(self, path: Path | str) -> Path:
        """The CA certificate (trust anchor) as PEM."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.pem)
        return path

    def issue(self, prefix: Path | str, *, uris: Iterable[str] = (), dns: Iterable[str] = (), ips: Iterable[str] = (),
              common_name: str | None = None) -> Leaf:
        """A leaf signed by this CA, written to ``<prefix>.pem`` and ``<prefix>.key``."""
        prefix = Path(prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        key = _key()
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or prefix.name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        leaf = Leaf(prefix.with_name(prefix.name + ".pem"), prefix.with_name(prefix.name + ".key"))
        leaf.cert.write_bytes(_cert_pem(cert))
        leaf.key.write_bytes(_key_pem(key))
        return leaf


def write_golden_certs(directory: Path | str) -> None:
    """The fixed files of tests/golden/mtls (valid 100 years; test-only keys, never use elsewhere)."""
    directory = Path(directory)
    ca = CertificateAuthority("meshplane golden CA", days=36500)
    ca.write(directory / "ca.pem")
    ca.issue(directory / "server", uris=["spiffe://secure/server"], dns=["server.secure.local"])
    ca.issue(directory / "client", uris=["spiffe://secure/client"])


if __name__ == "__main__":  # pragma: no cover
    write_golden_certs(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent / "golden" / "mtls" / "certs")
