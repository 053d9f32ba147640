"""The storage interface the HTTP layer uses. Methods block; the app runs them in threads."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tfstate_server.lockinfo import LockInfo
from tfstate_server.statebody import StateMeta

_COUNT_LOCK = threading.Lock()


class LockHeld(Exception):
    """Another lock holds the state (423 with the holder's LockInfo)."""

    def __init__(self, holder: LockInfo) -> None:
        super().__init__(holder.id)
        self.holder = holder


class StoreFault(Exception):
    """The store cannot do what was asked, through no fault of the client: 507 when it is
    full, else 503. Nothing was changed (or the change was rolled back)."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason  # for the client
        self.detail = detail  # for the log only (paths, endpoints)


class StoreMissing(StoreFault):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(503, reason, detail)


class WouldBlock(Exception):
    """A call with wait=False would have to wait for another holder of the store's mutex."""


class LockNotHeld(Exception):
    """A write named a lock that nobody holds any more (e.g. force-unlocked): 409."""


def may_lock(holder: LockInfo, info: LockInfo) -> None:
    """A held lock: fine again for the same ID (a retried LOCK whose answer was lost),
    LockHeld for anyone else. Both stores decide with this, inside their own atomicity."""
    if holder.id != info.id:
        raise LockHeld(holder)


def may_unlock(holder: LockInfo, lock_id: str | None) -> None:
    """A held lock may be released by its ID, or by no ID at all (a force-unlock)."""
    if lock_id is not None and holder.id != lock_id:
        raise LockHeld(holder)


def may_write(holder: LockInfo | None, lock_id: str | None) -> None:
    """A write's ?ID must be the holder's when locked (LockHeld), and absent when not
    (LockNotHeld: it names a lock that was force-unlocked)."""
    if holder is not None and holder.id != lock_id:
        raise LockHeld(holder)
    if holder is None and lock_id is not None:
        raise LockNotHeld(lock_id)


@dataclass(frozen=True)
class StateKey:
    namespace: str  # the user name, as in the tfstate-worker
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


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
    who: str
    created: str


# Called with the stored state's meta (None when there is none) under the store's
# per-state mutual exclusion; raises StateConflict to refuse the write.
HistoryCheck = Callable[[StateMeta | None], None]


class Staged(abc.ABC):
    """A write prepared outside the per-state critical section, while the body is still
    being validated (e.g. a temp file being written and synced)."""

    request: WriteRequest

    @abc.abstractmethod
    def discard(self) -> None: ...


class Store(abc.ABC):
    url: str
    # True if lock() and unlock() are quick local I/O that may run on the event loop
    # when called with wait=False (they raise WouldBlock rather than wait).
    quick_locks: bool = False
    # True if lock() and unlock() are local I/O (an fsync at worst, no network): they
    # may run on the event loop, with wait=False, while no other request is in flight.
    local_locks: bool = False
    versions_pruned: int = 0  # kept versions deleted so far (a metric)

    def count_pruned(self, count: int) -> None:
        """Stores call this after deleting versions beyond keep_versions."""
        if count:
            with _COUNT_LOCK:
                self.versions_pruned += count

    @abc.abstractmethod
    def read_state(self, key: StateKey) -> bytes | None: ...

    def peek_state(self, key: StateKey) -> bytes | None:
        """The current state if it can be had without blocking (e.g. from memory), else
        None (also when there is no state): the caller then uses read_state."""
        return None

    @abc.abstractmethod
    def stage(self, request: WriteRequest, verify: Callable[[], None] = lambda: None) -> Staged:
        """Prepare the write; verify() (the body's checks that need no store) runs while
        the store's I/O is under way: when it raises, nothing is left behind."""

    @abc.abstractmethod
    def commit(self, staged: Staged, meta: StateMeta, lock_id: str | None, check: HistoryCheck) -> int:
        """Store the staged write as the new state and a new version; returns the version.

        lock_id is the ?ID of the request: if the state is locked it must be the holder's
        (else LockHeld); if the state is unlocked it must be None (else LockNotHeld)."""

    @abc.abstractmethod
    def read_lock(self, key: StateKey) -> LockInfo | None: ...

    def peek_lock(self, key: StateKey) -> LockInfo | None:
        """The holder if it can be had without blocking and without the store's mutual
        exclusion, else None (also when unlocked). Only ever used to refuse a LOCK: a
        holder seen here held the lock at that instant, so a 423 is right."""
        return None

    @abc.abstractmethod
    def lock(self, key: StateKey, info: LockInfo, wait: bool = True) -> None:
        """Take the lock, or succeed if info.id already holds it; else LockHeld."""

    @abc.abstractmethod
    def unlock(self, key: StateKey, lock_id: str | None, wait: bool = True) -> None:
        """Release the lock if lock_id holds it, or any lock if lock_id is None (force);
        LockHeld if another ID holds it. Unlocking an unlocked state succeeds."""

    @abc.abstractmethod
    def list_versions(self, key: StateKey) -> list[VersionInfo]:
        """Newest first."""

    @abc.abstractmethod
    def read_version(self, key: StateKey, serial: int) -> bytes | None:
        """The newest kept version with this serial."""

    def check_ready(self) -> None:  # noqa: B027 - optional hook
        """Raise OSError-like errors at startup if the store cannot be used."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
