"""State in one directory: atomic, fsync'd writes and flock-guarded locks.

Layout, per state: <root>/<user>/<name>/
    state          the current state: one JSON header line, then the body as received
    v0000000042    version 42: a hard link to what `state` was after that write
    lock.json      the LockInfo of the holder, if locked
    .mutex         flock(2) target guarding check-and-set of the lock and of writes
    .tmp-*         a write in progress (unlinked on failure; stale ones are pruned)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tfstate_server import lockinfo
from tfstate_server.lockinfo import LockInfo
from tfstate_server.statebody import meta_of
from tfstate_server.storage.base import (
    HistoryCheck,
    LockHeld,
    LockNotHeld,
    Staged,
    StateKey,
    Store,
    VersionInfo,
    WriteRequest,
)

STATE = "state"
LOCK = "lock.json"
MUTEX = ".mutex"
TMP_PREFIX = ".tmp-"
VERSION_PREFIX = "v"
STALE_TMP_SECONDS = 3600


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, chunks: list[bytes], sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _split(record: bytes) -> tuple[dict[str, object], bytes]:
    newline = record.index(b"\n")
    return json.loads(record[:newline]), record[newline + 1 :]


def _read_header(path: Path) -> dict[str, object] | None:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.readline())
    except FileNotFoundError:
        return None


class FileStaged(Staged):
    def __init__(self, request: WriteRequest, directory: Path, tmp: Path) -> None:
        self.request = request
        self.directory = directory
        self.tmp = tmp

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class FileStore(Store):
    def __init__(
        self, root: Path, *, keep_versions: int, sync_state: bool = True, sync_locks: bool = True
    ) -> None:
        self.url = root.as_uri()
        self.root = root
        self.keep_versions = keep_versions
        self.sync_state = sync_state
        self.sync_locks = sync_locks

    # -- helpers ---------------------------------------------------------------------

    def _dir(self, key: StateKey) -> Path:
        return self.root / key.namespace / key.name

    def _ensure_dir(self, key: StateKey) -> Path:
        directory = self._dir(key)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            if self.sync_state:
                # Make the new directory entries durable, up to the root.
                for path in (directory.parent, self.root, self.root.parent):
                    _fsync_dir(path)
        return directory

    @contextlib.contextmanager
    def _mutex(self, directory: Path) -> Iterator[None]:
        # flock on our own open file description: excludes other threads of this
        # process and other server processes using the same directory.
        fd = os.open(directory / MUTEX, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read_lock_in(self, directory: Path) -> LockInfo | None:
        try:
            return lockinfo.from_stored((directory / LOCK).read_bytes())
        except FileNotFoundError:
            return None

    def _versions(self, directory: Path) -> list[int]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        return sorted(int(n[1:]) for n in names if n.startswith(VERSION_PREFIX) and n[1:].isdigit())

    def _prune(self, directory: Path, versions: list[int]) -> None:
        for number in versions[: max(0, len(versions) - self.keep_versions)]:
            with contextlib.suppress(FileNotFoundError):
                (directory / f"{VERSION_PREFIX}{number:010d}").unlink()
        # Temp files of writes killed mid-way (another live process's are young).
        cutoff = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(directory):
            if entry.name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    # -- state -----------------------------------------------------------------------

    def read_state(self, key: StateKey) -> bytes | None:
        try:
            record = (self._dir(key) / STATE).read_bytes()
        except FileNotFoundError:
            return None
        return record[record.index(b"\n") + 1 :]

    def stage(self, request: WriteRequest) -> FileStaged:
        directory = self._ensure_dir(request.key)
        header = {
            "serial": request.meta.serial,
            "lineage": request.meta.lineage,
            "size": len(request.body),
            "created": request.created,
            "who": request.who,
        }
        tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        line = json.dumps(header, separators=(",", ":")).encode() + b"\n"
        try:
            _write_file(tmp, [line, request.body], self.sync_state)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return FileStaged(request, directory, tmp)

    def commit(self, staged: Staged, lock_id: str | None, check: HistoryCheck) -> int:
        assert isinstance(staged, FileStaged)
        directory = staged.directory
        with self._mutex(directory):
            holder = self._read_lock_in(directory)
            if holder is not None and holder.id != lock_id:
                raise LockHeld(holder)
            if holder is None and lock_id is not None:
                raise LockNotHeld(lock_id)
            header = _read_header(directory / STATE)
            current = None if header is None else meta_of(header)
            check(current)
            versions = self._versions(directory)
            number = (versions[-1] if versions else 0) + 1
            os.link(staged.tmp, directory / f"{VERSION_PREFIX}{number:010d}")
            # rename(2) is atomic: readers see the old or the new file, never a mix.
            os.replace(staged.tmp, directory / STATE)
            if self.sync_state:
                _fsync_dir(directory)
            self._prune(directory, [*versions, number])
        return number

    def list_versions(self, key: StateKey) -> list[VersionInfo]:
        directory = self._dir(key)
        result = []
        for number in reversed(self._versions(directory)):
            header = _read_header(directory / f"{VERSION_PREFIX}{number:010d}")
            if header is None:
                continue  # pruned meanwhile
            result.append(
                VersionInfo(
                    version=number,
                    serial=int(header["serial"]),  # type: ignore[call-overload]
                    lineage=str(header["lineage"]),
                    size=int(header["size"]),  # type: ignore[call-overload]
                    created=str(header["created"]),
                    who=str(header["who"]),
                )
            )
        return result

    def read_version(self, key: StateKey, serial: int) -> bytes | None:
        directory = self._dir(key)
        for number in reversed(self._versions(directory)):
            try:
                header, body = _split((directory / f"{VERSION_PREFIX}{number:010d}").read_bytes())
            except FileNotFoundError:
                continue
            if header["serial"] == serial:
                return body
        return None

    # -- locks -----------------------------------------------------------------------

    def read_lock(self, key: StateKey) -> LockInfo | None:
        return self._read_lock_in(self._dir(key))

    def lock(self, key: StateKey, info: LockInfo) -> None:
        directory = self._ensure_dir(key)
        with self._mutex(directory):
            holder = self._read_lock_in(directory)
            if holder is not None:
                if holder.id == info.id:
                    return  # a retried LOCK whose answer was lost
                raise LockHeld(holder)
            tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}"
            _write_file(tmp, [info.to_json()], self.sync_locks)
            os.replace(tmp, directory / LOCK)
            if self.sync_locks:
                _fsync_dir(directory)

    def unlock(self, key: StateKey, lock_id: str | None) -> None:
        directory = self._dir(key)
        if not directory.is_dir():
            return
        with self._mutex(directory):
            holder = self._read_lock_in(directory)
            if holder is None:
                return
            if lock_id is not None and holder.id != lock_id:
                raise LockHeld(holder)
            (directory / LOCK).unlink()
            if self.sync_locks:
                _fsync_dir(directory)

    def check_ready(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        _write_file(probe, [b""], False)
        probe.unlink()
