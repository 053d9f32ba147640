"""Checks on a state body before it is stored: Content-MD5, JSON, serial and lineage."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

# The clients read serial as a Go integer; past this no client can have written it.
MAX_SERIAL = (1 << 63) - 1


class InvalidState(ValueError):
    """The body is not a state this server accepts (400)."""


class StateConflict(ValueError):
    """The body would go back in history or replace another lineage (409)."""


@dataclass(frozen=True)
class StateMeta:
    serial: int
    lineage: str


def check_md5(body: bytes, header: str | None) -> None:
    if header is None:
        return
    try:
        expected = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidState("Content-MD5 is not base64") from exc
    if hashlib.md5(body).digest() != expected:
        raise InvalidState("Content-MD5 does not match the body")


def parse_state(body: bytes) -> StateMeta:
    """Validate the JSON and return its serial and lineage (kept top-level even when
    OpenTofu encrypts the state).

    orjson is strict where a client reading the state back would fail: it refuses
    bytes that are not UTF-8 (so UTF-16, with or without a BOM, and a UTF-8 BOM),
    NaN/Infinity, lone surrogates, and numbers beyond a float64, which Go's
    encoding/json cannot read."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidState(f"body is not JSON a client can read back: {_reason(exc)}") from None
    return meta_of(data)


def _reason(exc: orjson.JSONDecodeError) -> str:
    # One line, bounded: the message quotes no body bytes, only positions.
    return " ".join(str(exc).split())[:160]


def meta_of(data: Any) -> StateMeta:
    if not isinstance(data, dict):
        raise InvalidState("state is not a JSON object")
    serial = data.get("serial")
    lineage = data.get("lineage")
    # bool is an int subclass; a state never has serial true.
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        # orjson reads integers beyond 64 bits as floats: those land here too.
        raise InvalidState("state has no non-negative integer serial (at most 2^63-1)")
    if serial > MAX_SERIAL:
        raise InvalidState(f"serial {serial} is beyond 2^63-1")
    if not isinstance(lineage, str):
        raise InvalidState("state has no string lineage")
    return StateMeta(serial=serial, lineage=lineage)


@dataclass(frozen=True)
class HistoryPolicy:
    allow_serial_rollback: bool = False
    allow_lineage_change: bool = False

    def check(self, current: StateMeta | None, new: StateMeta) -> None:
        """Refuse a write that would lose history; the same serial again is allowed
        because clients resend a write whose answer was lost."""
        if current is None:
            return
        if current.lineage != new.lineage:
            if not self.allow_lineage_change:
                raise StateConflict(
                    f"lineage {new.lineage!r} differs from the stored state's {current.lineage!r}"
                )
            return
        if new.serial < current.serial and not self.allow_serial_rollback:
            raise StateConflict(f"serial {new.serial} is lower than the stored serial {current.serial}")
