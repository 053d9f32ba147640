"""The lock interface, and the rules every store applies inside its own atomicity."""

from __future__ import annotations

import abc

from tfstate_server.locking.lockinfo import LockInfo
from tfstate_server.names import StateKey


class LockHeld(Exception):
    """Another lock holds the state (423 with the holder's LockInfo)."""

    def __init__(self, holder: LockInfo) -> None:
        super().__init__(holder.id)
        self.holder = holder


class LockNotHeld(Exception):
    """A write named a lock that nobody holds any more (e.g. force-unlocked): 409."""


class Locker(abc.ABC):
    """One lock per state. A grant is exclusive across every process using the store."""

    # LOCKs that met a held lock and waited a moment for its release (a metric), by
    # outcome; a locker that never waits leaves them at 0.
    waits_granted: int = 0
    waits_refused: int = 0

    @abc.abstractmethod
    async def acquire(self, key: StateKey, info: LockInfo) -> None:
        """Take the lock, or succeed if info.id already holds it; else LockHeld."""

    @abc.abstractmethod
    async def release(self, key: StateKey, lock_id: str | None) -> None:
        """Release the lock if lock_id holds it, or any lock if lock_id is None (force);
        LockHeld if another ID holds it. Releasing an unlocked state succeeds."""

    @abc.abstractmethod
    async def holder(self, key: StateKey) -> LockInfo | None:
        """Who holds the lock, None when unlocked."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def may_lock(holder: LockInfo, info: LockInfo) -> None:
    """A held lock: fine again for the same ID (a retried LOCK whose answer was lost),
    LockHeld for anyone else."""
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
