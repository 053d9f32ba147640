"""Basic Auth against users from the environment and/or a credentials file."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from tfstate_server.names import is_valid_name

REALM_HEADER = 'Basic realm="tfstate"'


class CredentialsError(ValueError):
    pass


def _digest(secret: str) -> bytes:
    # Comparing fixed-length digests keeps compare_digest from leaking lengths.
    return hashlib.sha256(secret.encode()).digest()


VALID_CACHE_ENTRIES = 64


@dataclass
class Credentials:
    _users: dict[str, bytes] = field(default_factory=dict)
    # Authorization headers already found valid, so a keep-alive client's requests skip
    # the digests. Only valid headers are kept: a miss takes the constant-time path.
    _valid: dict[str, str] = field(default_factory=dict)

    def add(self, username: str, password: str, source: str) -> None:
        # The user name becomes a directory / key prefix, like in the tfstate-worker.
        if not is_valid_name(username):
            raise CredentialsError(f"{source}: user name must be one of [A-Za-z0-9._-]")
        if not password:
            raise CredentialsError(f"{source}: empty password for user {username!r}")
        self._users[username] = _digest(password)

    def __bool__(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> str | None:
        """The user name if the Authorization header is valid, else None."""
        if not header or header[:6].lower() != "basic ":
            return None
        known = self._valid.get(header)
        if known is not None:
            return known
        username = self._check(header)
        if username is not None:
            if len(self._valid) >= VALID_CACHE_ENTRIES:
                self._valid.clear()
            self._valid[header] = username
        return username

    def _check(self, header: str) -> str | None:
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        given = _digest(password)
        ok = False
        # Look at every user so timing does not tell which names exist.
        for name, digest in self._users.items():
            match = hmac.compare_digest(_digest(name), _digest(username))
            ok |= match & hmac.compare_digest(digest, given)
        return username if ok else None


def load(env_username: str | None, env_password: str | None, file: Path | None) -> Credentials:
    creds = Credentials()
    if env_username or env_password:
        if not (env_username and env_password):
            raise CredentialsError("set both TFSTATE_USERNAME and TFSTATE_PASSWORD, or neither")
        creds.add(env_username, env_password, "TFSTATE_USERNAME")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CredentialsError(f"cannot read credentials file {file}: {reason}") from None
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            username, sep, password = line.partition(":")
            if not sep:
                # Never echo the line: it may hold a password.
                raise CredentialsError(f"{file}:{number}: expected 'username:password'")
            creds.add(username, password, f"{file}:{number}")
    return creds
