"""The state interface: a state's current body, each accepted write as a version.

How a store does its I/O (threads, caches, overlapping a sync with the body's checks) is
its own business: callers only await these methods. Errors: StoreFault (503/507) when
the store cannot be used; LockHeld / LockNotHeld when a write does not match the lock
(see tfstate_server.locking.locker); StateConflict when the history check refuses it;
InvalidState when the body does not match its Content-MD5.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfstate_server.names import StateKey
from tfstate_server.statebody import StateMeta

_COUNT_LOCK = threading.Lock()


@dataclass(frozen=True)
class VersionInfo:
    version: int  # increases by one per accepted write
    serial: int
    lineage: str
    size: int
    created: str
    who: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "serial": self.serial,
            "lineage": self.lineage,
            "size": self.size,
            "created": self.created,
            "who": self.who,
        }


@dataclass(frozen=True)
class WriteRequest:
    key: StateKey
    body: bytes
    meta: StateMeta  # the body's serial and lineage (already parsed and checked as JSON)
    who: str
    created: str
    content_md5: str | None = None  # the Content-MD5 header: checked before anything is stored


# Called with the stored state's meta (None when there is none) inside the store's
# per-state atomicity; raises StateConflict to refuse the write.
HistoryCheck = Callable[[StateMeta | None], None]


class StateStore(abc.ABC):
    url: str
    versions_pruned: int = 0  # kept versions deleted so far (a metric)

    @abc.abstractmethod
    async def get(self, key: StateKey) -> bytes | None:
        """The current state, None when there is none."""

    @abc.abstractmethod
    async def put(self, write: WriteRequest, lock_id: str | None, check: HistoryCheck) -> int:
        """Store the body as the new state and a new version; returns the version.

        Nothing is stored if the body does not match write.content_md5 (InvalidState),
        if check refuses it, or if lock_id is not the holder's when the state is locked
        (LockHeld) or is given when it is unlocked (LockNotHeld). A write is atomic:
        after a crash the state is the old body or the new one, never a mix."""

    @abc.abstractmethod
    async def versions(self, key: StateKey) -> list[VersionInfo]:
        """The kept versions, newest first."""

    @abc.abstractmethod
    async def version(self, key: StateKey, serial: int) -> bytes | None:
        """The newest kept version with this serial."""

    def count_pruned(self, count: int) -> None:
        """Stores call this after deleting versions beyond their keep_versions."""
        if count:
            with _COUNT_LOCK:
                self.versions_pruned += count

    def check_ready(self) -> None:  # noqa: B027 - optional hook
        """Raise OSError-like errors at startup if the store cannot be used."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
