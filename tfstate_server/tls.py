"""TLS: the server's certificate and key (re-read on SIGHUP), and optional client certificates.

A new pair is loaded into a scratch context first: only a pair that loads and matches
replaces the live one, so a bad file on SIGHUP leaves the server serving the old pair.
Both files are read once into memory (memfd) and loaded from there, so the pair that was
checked is the pair that is served. Connections already open keep their session; new
handshakes get the new certificate.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("tfstate_server")


class TLSError(Exception):
    """A certificate, key or CA that cannot be used: one line, no traceback."""


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None


def _no_passphrase() -> bytes:
    raise TLSError("--tls-key: the key is encrypted with a passphrase; give an unencrypted PEM key")


class _MemFile:
    """Bytes behind a path that only this process can open (no copy on disk)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.write(self.fd, data)

    @property
    def path(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        os.close(self.fd)


def _load_pair(context: ssl.SSLContext, cert: bytes, key: bytes, files: TLSFiles) -> None:
    if b"-----BEGIN" not in cert or b"CERTIFICATE-----" not in cert:
        raise TLSError(f"--tls-cert {files.cert}: no PEM certificate in it")
    if b"-----BEGIN" not in key or b"PRIVATE KEY-----" not in key:
        raise TLSError(f"--tls-key {files.key}: no PEM private key in it")
    cert_file, key_file = _MemFile("tls-cert", cert), _MemFile("tls-key", key)
    try:
        context.load_cert_chain(cert_file.path, key_file.path, password=_no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH" or "mismatch" in str(exc).lower():
            raise TLSError(
                f"--tls-key {files.key} does not match the certificate in --tls-cert {files.cert}"
            ) from None
        raise TLSError(
            f"--tls-cert {files.cert} / --tls-key {files.key}: not a usable PEM certificate "
            f"and key ({exc.reason or exc})"
        ) from None
    finally:
        cert_file.close()
        key_file.close()


def _new_context(files: TLSFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    if files.client_ca is not None:
        ca = _read(files.client_ca, "--tls-client-ca")
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            raise TLSError(f"--tls-client-ca {files.client_ca}: no PEM certificate in it")
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise TLSError(f"--tls-client-ca {files.client_ca}: not a usable PEM CA ({exc})") from None
        # OPTIONAL: a certificate shown is verified in the handshake (one of another CA
        # ends it); a connection without one is answered 403 with a reason by the app,
        # which a client shows, where a refused handshake would only be an EOF to it
        # (the alert is not flushed before the connection closes).
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def expiry_warning(cert_pem: bytes, now: datetime.datetime | None = None) -> str | None:
    """A warning when the (first) certificate is expired or not valid yet."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return None  # load_cert_chain has accepted it; nothing more to say
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        return f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_before_utc > now:
        return f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


class ServerTLS:
    """The live SSL context; reload() swaps in a re-read pair or keeps the old one."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.context = _new_context(files)
        self.warning = self._load(self.context)

    def _load(self, context: ssl.SSLContext) -> str | None:
        cert = _read(self.files.cert, "--tls-cert")
        key = _read(self.files.key, "--tls-key")
        _load_pair(context, cert, key, self.files)
        return expiry_warning(cert)

    def reload(self) -> bool:
        """Re-read the pair (SIGHUP). On any problem the old pair stays and it says why."""
        cert = key = b""
        try:
            cert = _read(self.files.cert, "--tls-cert")
            key = _read(self.files.key, "--tls-key")
            _load_pair(_new_context(self.files), cert, key, self.files)  # a scratch check
            _load_pair(self.context, cert, key, self.files)
        except TLSError as exc:
            log.error("SIGHUP: keeping the current certificate: %s", exc)
            return False
        warning = expiry_warning(cert)
        if warning:
            log.warning("--tls-cert %s: %s", self.files.cert, warning)
        log.info("SIGHUP: certificate and key re-read from %s and %s", self.files.cert, self.files.key)
        return True
