"""Certificates for loopback servers and their clients: a CA that issues P-256 keys and
certificates (`cryptography`), PEM in memory, written to files on request.

    ca = CertificateAuthority("kubernetes")
    serving = ca.issue("kube-apiserver", server=True)          # SANs: 127.0.0.1, localhost
    admin = ca.issue("admin", organization="system:masters", client=True)
    admin.write(directory, "admin")                             # admin.crt, admin.key (0600)

One mechanism for every certificate the harness makes: the Kubernetes control plane's
(devenv/kube/control_plane.py), the state server's TLS tests (tests/server/tls_certs.py) and any
other loopback TLS server a test runs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ("127.0.0.1", "localhost")
VALIDITY = dt.timedelta(days=30)
BACKDATE = dt.timedelta(hours=1)  # a clock a little behind still accepts a fresh certificate


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM."""

    cert: bytes
    key: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """<stem>.crt and <stem>.key (both 0600) in directory."""
        return _write(directory / f"{stem}.crt", self.cert), _write(directory / f"{stem}.key", self.key)


class CertificateAuthority:
    """A self-signed CA (P-256, SHA-256) issuing server and client certificates."""

    def __init__(
        self, common_name: str, *, now: dt.datetime | None = None, validity: dt.timedelta = VALIDITY
    ) -> None:
        self.now = now or dt.datetime.now(dt.UTC)
        self.key = new_key()
        subject = _name(common_name, None)
        start = self.now - BACKDATE
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        server: bool = False,
        client: bool = False,
        names: Sequence[str] = LOOPBACK_NAMES,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> KeyPair:
        """A leaf certificate for a new key. server: serverAuth and the SANs `names`
        (IP addresses or DNS names); client: clientAuth. Kubernetes reads a client
        certificate's CN as the user and its O as the group."""
        key = new_key()
        start = not_before or self.now - BACKDATE
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(not_after or start + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(_san(names), critical=False)
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        return KeyPair(
            builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), pem_key(key)
        )

    def write(self, path: Path) -> Path:
        """The CA certificate as a PEM file (0600)."""
        return _write(path, self.pem)
