"""Opening a store from a --store URL. Both stores keep states and locks together (a
write's lock check is atomic with the lock), so each is a StateStore and a Locker."""

from __future__ import annotations

import abc
import urllib.parse
from pathlib import Path

from tfstate_server.locking.locker import Locker
from tfstate_server.locking.lockinfo import LockInfo
from tfstate_server.names import StateKey
from tfstate_server.offload import in_thread
from tfstate_server.storage.state_store import HistoryCheck, StateStore, VersionInfo, WriteRequest

DEFAULT_STORE = "file:.state/tfstate"


class Store(StateStore, Locker):
    """States and their locks in one place (the file and S3 stores), done by blocking
    methods that the interfaces' coroutines run in a thread; a store overrides a
    coroutine where it has a quicker way."""

    @abc.abstractmethod
    def read_state(self, key: StateKey) -> bytes | None: ...

    @abc.abstractmethod
    def write(self, write: WriteRequest, lock_id: str | None, check: HistoryCheck) -> int: ...

    @abc.abstractmethod
    def list_versions(self, key: StateKey) -> list[VersionInfo]: ...

    @abc.abstractmethod
    def read_version(self, key: StateKey, serial: int) -> bytes | None: ...

    @abc.abstractmethod
    def lock(self, key: StateKey, info: LockInfo) -> None: ...

    @abc.abstractmethod
    def unlock(self, key: StateKey, lock_id: str | None) -> None: ...

    @abc.abstractmethod
    def read_lock(self, key: StateKey) -> LockInfo | None: ...

    async def get(self, key: StateKey) -> bytes | None:
        return await in_thread(self.read_state, key)

    async def put(self, write: WriteRequest, lock_id: str | None, check: HistoryCheck) -> int:
        return await in_thread(self.write, write, lock_id, check)

    async def versions(self, key: StateKey) -> list[VersionInfo]:
        return await in_thread(self.list_versions, key)

    async def version(self, key: StateKey, serial: int) -> bytes | None:
        return await in_thread(self.read_version, key, serial)

    async def acquire(self, key: StateKey, info: LockInfo) -> None:
        await in_thread(self.lock, key, info)

    async def release(self, key: StateKey, lock_id: str | None) -> None:
        await in_thread(self.unlock, key, lock_id)

    async def holder(self, key: StateKey) -> LockInfo | None:
        return await in_thread(self.read_lock, key)


class StoreURLError(ValueError):
    pass


def open_store(url: str, *, keep_versions: int, sync_state: bool = True, sync_locks: bool = True) -> Store:
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment:
        raise StoreURLError(f"--store {url!r}: no query or fragment allowed")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StoreURLError(f"--store {url!r}: use file:///absolute/path or file:relative/path")
        path = urllib.parse.unquote(parts.path)
        if not path:
            raise StoreURLError(f"--store {url!r}: no directory given")
        from tfstate_server.storage.file import FileStore

        return FileStore(
            Path(path).absolute(),
            keep_versions=keep_versions,
            sync_state=sync_state,
            sync_locks=sync_locks,
        )
    if parts.scheme == "s3":
        if not parts.netloc:
            raise StoreURLError(f"--store {url!r}: expected s3://bucket/prefix")
        from tfstate_server.storage.s3 import S3Store

        return S3Store(parts.netloc, parts.path.lstrip("/"), keep_versions=keep_versions)
    raise StoreURLError(f"--store {url!r}: expected a file:// or s3:// URL")
