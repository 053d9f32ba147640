"""Certificates for the state server's TLS tests: a CA and server or client certificates
as PEM files, from the harness's one certificate helper (devenv/pki.py)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from devenv.pki import CertificateAuthority

NOW = datetime.datetime.now(datetime.UTC)
CA_VALIDITY = datetime.timedelta(days=2)
LEAF_VALIDITY = datetime.timedelta(days=1)  # short: well inside the server's expiry warning


@dataclass
class Issued:
    cert: Path
    key: Path

    @property
    def cert_pem(self) -> str:
        return self.cert.read_text()

    @property
    def key_pem(self) -> str:
        return self.key.read_text()


class CA:
    """A CA whose certificate is `<name>.pem` in `directory`; `issue` writes beside it."""

    def __init__(self, directory: Path, name: str = "test ca") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.authority = CertificateAuthority(name, validity=CA_VALIDITY)
        self.certificate = self.authority.certificate
        self.cert = self.authority.write(directory / f"{name.replace(' ', '-')}.pem")

    @property
    def pem(self) -> str:
        return self.cert.read_text()

    def issue(
        self,
        file_stem: str,
        common_name: str = "localhost",
        *,
        client: bool = False,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> Issued:
        """A server certificate for localhost and 127.0.0.1, or a client certificate."""
        pair = self.authority.issue(
            common_name,
            server=not client,
            client=client,
            names=("localhost", "127.0.0.1"),
            not_before=not_before,
            not_after=not_after or NOW + LEAF_VALIDITY,
        )
        cert, key = pair.write(self.directory, file_stem)
        return Issued(cert, key)
