"""LockInfo: the JSON body clients send with LOCK/UNLOCK and expect back on a conflict."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

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
        return orjson.dumps(self.fields)


def now_rfc3339() -> str:
    # Go's time.Time unmarshals RFC 3339 with any number of fractional digits.
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# RFC 3339 as Go's time.Time reads it: ASCII digits only, "T", "Z" or a +hh:mm offset.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _parse_created(value: str) -> None:
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise InvalidLockInfo("lock field Created is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(match.group(n)) for n in range(1, 7))
    offset_hours = int(match.group(9) or 0)
    offset_minutes = int(match.group(10) or 0)
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise InvalidLockInfo("lock field Created is not a valid date and time") from None
    if offset_hours > 23 or offset_minutes > 59:
        raise InvalidLockInfo("lock field Created has an invalid UTC offset")


def parse(body: bytes, *, require_id: bool = True) -> LockInfo:
    """Parse a LockInfo body; fills in Created when the client left it out."""
    if len(body) > MAX_LOCK_BODY:
        raise InvalidLockInfo("lock body too large")
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidLockInfo("lock body is not UTF-8 JSON") from None
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
    data = orjson.loads(raw)
    return LockInfo({key: str(data.get(key, "")) for key in FIELDS})
