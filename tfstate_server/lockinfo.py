"""LockInfo: the JSON body clients send with LOCK/UNLOCK and expect back on a conflict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Fields of the clients' statemgr.LockInfo; all are strings on the wire.
FIELDS = ("ID", "Operation", "Info", "Who", "Version", "Created", "Path")
MAX_LOCK_BODY = 64 * 1024


class InvalidLockInfo(ValueError):
    pass


@dataclass(frozen=True)
class LockInfo:
    fields: dict[str, str]

    @property
    def id(self) -> str:
        return self.fields["ID"]

    def to_json(self) -> bytes:
        return json.dumps(self.fields, separators=(",", ":")).encode()


def now_rfc3339() -> str:
    # Go's time.Time unmarshals RFC 3339 with any number of fractional digits.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_created(value: str) -> None:
    # Go accepts "Z" or an offset; Python's fromisoformat accepts both, but at most 6
    # fractional digits, and Go sends 9: trim them before checking.
    head, dot, rest = value.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        if digits == 0:
            raise InvalidLockInfo("Created has an empty fraction")
        rest = rest[: min(digits, 6)] + rest[digits:]
        value = f"{head}.{rest}"
    if "T" not in value or not (value.endswith("Z") or value[-6] in "+-"):
        raise InvalidLockInfo("Created is not RFC 3339")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidLockInfo("Created is not RFC 3339") from exc


def parse(body: bytes, *, require_id: bool = True) -> LockInfo:
    """Parse a LockInfo body; fills in Created when the client left it out."""
    if len(body) > MAX_LOCK_BODY:
        raise InvalidLockInfo("lock body too large")
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidLockInfo("lock body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidLockInfo("lock body is not a JSON object")
    fields: dict[str, str] = {}
    for key in FIELDS:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise InvalidLockInfo(f"lock field {key} is not a string")
        fields[key] = value
    if require_id and not fields["ID"]:
        raise InvalidLockInfo("lock body has no ID")
    if fields["Created"]:
        _parse_created(fields["Created"])
    else:
        fields["Created"] = now_rfc3339()
    return LockInfo(fields)


def from_stored(raw: bytes) -> LockInfo:
    """Read back a lock this server wrote (trusted, already normalised)."""
    data = json.loads(raw)
    return LockInfo({key: str(data.get(key, "")) for key in FIELDS})
