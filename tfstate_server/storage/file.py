"""State in one directory: atomic, fsync'd writes and flock-guarded locks.

Layout, per state: <root>/<user>/<name>/
    v0000000042.s17.l<lineage>.<who>
                   version 42 (serial 17), the body as received; the newest version is
                   the current state. Its name carries what the history check and the
                   versions list need, so no write or read has to parse a stored state.
                   (A lineage that is not [A-Za-z0-9-]{1,64} is named by its hash, "h...")
    lock.json      the LockInfo of the holder, if locked
    .mutex         flock(2) target guarding check-and-set of the lock and of writes
    .tmp-*         a write in progress (unlinked on failure; stale ones are pruned)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

from tfstate_server.faults import StoreFault, StoreMissing
from tfstate_server.locking import lockinfo
from tfstate_server.locking.locker import LockHeld, may_lock, may_unlock, may_write
from tfstate_server.locking.lockinfo import LockInfo
from tfstate_server.locking.waiters import LockWaiters
from tfstate_server.names import StateKey
from tfstate_server.offload import alone, in_thread
from tfstate_server.statebody import StateMeta, check_md5, parse_state
from tfstate_server.storage import Store
from tfstate_server.storage.state_store import HistoryCheck, VersionInfo, WriteRequest
from tfstate_server.storage.writeback import start_writeback

LOCK = "lock.json"
MUTEX = ".mutex"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600
# Recently read states, served without I/O while still current (see peek_state).
CACHE_ENTRIES = 64
CACHE_MAX_BYTES = 8 << 20
READ_ATTEMPTS = 10  # a reader can lose its file to pruning only after that many writes
_VERSION = re.compile(r"v(\d{10})\.s(\d{1,20})\.([lh][A-Za-z0-9-]{1,64})\.(.+)")
_PLAIN_LINEAGE = re.compile(r"[A-Za-z0-9-]{1,64}")
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
P = ParamSpec("P")
R = TypeVar("R")


def _store_io(method: Callable[P, R]) -> Callable[P, R]:
    """OSErrors of the store become StoreFaults: 507 when full, else 503 (the path goes
    to the log, not to the client)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            detail = f"file store {method.__name__}: {exc}"
            if exc.errno in _FULL:
                raise StoreFault(507, "the store is full (no space left on its device)", detail) from None
            raise StoreFault(503, f"the store cannot be used: {exc.strerror or exc}", detail) from None

    return wrapper


def lineage_token(lineage: str) -> str:
    if _PLAIN_LINEAGE.fullmatch(lineage):
        return "l" + lineage
    return "h" + hashlib.sha256(lineage.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class _Version:
    number: int
    serial: int
    token: str
    who: str
    filename: str

    @classmethod
    def parse(cls, filename: str) -> _Version | None:
        match = _VERSION.fullmatch(filename)
        if match is None:
            return None
        number, serial, token, who = match.groups()
        return cls(int(number), int(serial), token, who, filename)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(
    path: Path, chunks: list[bytes], sync: bool, meanwhile: Callable[[], None] | None = None
) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if meanwhile is not None:
            if sync:
                start_writeback(fd)  # the disk writes while meanwhile() computes
            meanwhile()
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


class WouldBlock(Exception):
    """A call with wait=False would have to wait for another holder of the state's mutex."""


class FileStaged:
    """A write's temp file, written and synced outside the state's mutex."""

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
        # Without fsync a lock or unlock is a few syscalls: fine on the event loop. An
        # fsync is not: under I/O contention it stalls every other request (measured:
        # grants/s under 50 contenders fell from ~230 to ~120), so with fsync it runs
        # on the loop only while no other request is in flight (see _lock_call).
        self._quick_locks = not sync_locks
        self._waiters = LockWaiters()
        self._cache: dict[StateKey, tuple[str, bytes]] = {}
        self._lock_cache: dict[StateKey, tuple[bytes, LockInfo]] = {}

    # -- helpers ---------------------------------------------------------------------

    def _dir(self, key: StateKey) -> Path:
        return self.root / key.namespace / key.name

    def _check_root(self) -> None:
        """The store directory exists, or StoreMissing: it is created at start only, so
        that a store deleted or unmounted while running is never silently replaced by
        an empty one (the history and the locks would be gone)."""
        try:
            mode = os.stat(self.root).st_mode
        except FileNotFoundError:
            raise StoreMissing("the store directory is missing", str(self.root)) from None
        if not stat.S_ISDIR(mode):
            raise StoreMissing("the store path is not a directory", str(self.root))

    def _ensure_dir(self, key: StateKey) -> Path:
        directory = self._dir(key)
        if not directory.is_dir():
            self._check_root()
            # Never parents=True: that would recreate a deleted store.
            directory.parent.mkdir(exist_ok=True)
            directory.mkdir(exist_ok=True)
            if self.sync_state:
                # Make the new directory entries durable, up to the root.
                for path in (directory.parent, self.root):
                    fsync_dir(path)
        return directory

    @contextlib.contextmanager
    def _mutex(self, directory: Path, wait: bool = True) -> Iterator[None]:
        # flock on our own open file description: excludes other threads of this
        # process and other server processes using the same directory.
        fd = os.open(directory / MUTEX, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WouldBlock from None
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read_lock_in(self, directory: Path) -> LockInfo | None:
        try:
            return lockinfo.from_stored((directory / LOCK).read_bytes())
        except FileNotFoundError:
            if not directory.is_dir():
                self._check_root()  # no state yet, or no store any more
            return None

    def _versions(self, directory: Path) -> list[_Version]:
        """Oldest first."""
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            self._check_root()  # no state yet, or no store any more
            return []
        found = [_Version.parse(name) for name in names if name.startswith("v")]
        return sorted((v for v in found if v is not None), key=lambda v: v.number)

    def _prune(self, directory: Path, versions: list[_Version]) -> None:
        pruned = 0
        for version in versions[: max(0, len(versions) - self.keep_versions)]:
            with contextlib.suppress(FileNotFoundError):
                (directory / version.filename).unlink()
                pruned += 1
        self.count_pruned(pruned)
        # Temp files of writes killed mid-way (another live process's are young).
        cutoff = time.time() - STALE_TMP_SECONDS
        for entry in os.scandir(directory):
            if entry.name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    def _read_newest(self, directory: Path, pick: int | None = None) -> tuple[_Version, bytes] | None:
        """The newest version (matching `pick`, a serial, if given) and its body."""
        for _ in range(READ_ATTEMPTS):
            versions = self._versions(directory)
            if pick is not None:
                versions = [v for v in versions if v.serial == pick]
            if not versions:
                return None
            try:
                return versions[-1], (directory / versions[-1].filename).read_bytes()
            except FileNotFoundError:
                continue  # pruned under us by several newer writes: look again
        raise OSError(f"{directory}: versions keep changing")

    def _meta(self, directory: Path, version: _Version) -> StateMeta:
        if version.token.startswith("l"):
            return StateMeta(version.serial, version.token[1:])
        # A lineage only stored as a hash: read it from the state (unusual lineages only).
        return parse_state((directory / version.filename).read_bytes())

    # -- quicker paths than a thread (see Store) ---------------------------------------

    async def get(self, key: StateKey) -> bytes | None:
        body = self.peek_state(key)
        return body if body is not None else await in_thread(self.read_state, key)

    async def acquire(self, key: StateKey, info: LockInfo) -> None:
        # Under contention most LOCKs meet a held lock: they see it without a thread, a
        # flock or a write, and wait a moment for its release (see locking/waiters).
        holder = self.peek_lock(key)
        waited = holder is not None and holder.id != info.id
        if waited:
            await self._waiters.wait(key)
            holder = self.peek_lock(key)
            if holder is not None and holder.id != info.id:
                self.waits_refused += 1
                raise LockHeld(holder)
        try:
            await self._lock_call(self.lock, key, info)
        except LockHeld:
            self.waits_refused += waited
            raise
        self.waits_granted += waited

    async def release(self, key: StateKey, lock_id: str | None) -> None:
        await self._lock_call(self.unlock, key, lock_id)
        self._waiters.released(key)  # the longest waiter in this process tries next

    async def _lock_call(self, method: Callable[..., None], *args: object) -> None:
        """lock/unlock on the event loop when they are quick (no fsync), or when this is
        the only request in flight (the fsyncs then hold up no other request), unless
        they would wait for another holder of the state's mutex; else in a thread."""
        if self._quick_locks or alone():
            try:
                return method(*args, wait=False)
            except WouldBlock:
                pass
        await in_thread(method, *args)

    # -- state -----------------------------------------------------------------------

    def write(self, write: WriteRequest, lock_id: str | None, check: HistoryCheck) -> int:
        """put, in one thread (each hop costs scheduler waits on a busy machine): the
        temp file is written, its MD5 checked while the disk writes it, synced and
        committed; a mismatch removes the temp file."""
        try:
            staged = self.stage(write)
        except StoreFault:
            check_md5(write.body, write.content_md5)  # a refused body is the client's 400
            raise
        try:
            return self.commit(staged, lock_id, check)
        finally:
            staged.discard()  # a no-op once committed

    @_store_io
    def read_state(self, key: StateKey) -> bytes | None:
        newest = self._read_newest(self._dir(key))
        if newest is None:
            return None
        version, body = newest
        if len(body) <= CACHE_MAX_BYTES:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = (version.filename, body)
        return body

    def peek_state(self, key: StateKey) -> bytes | None:
        # A version file is never rewritten, so its name identifies its content: when the
        # newest name is the cached one, so are the bytes. (listdir of a hot directory is
        # a few microseconds: fine on the event loop.)
        cached = self._cache.get(key)
        if cached is None:
            return None
        try:
            names = os.listdir(self._dir(key))
        except OSError:
            return None
        # Version names start with "v" and ten zero-padded digits: the newest is the
        # greatest such name, and only it needs the full check.
        newest = max((n for n in names if n[:1] == "v"), default=None)
        return cached[1] if newest == cached[0] and _VERSION.fullmatch(newest) else None

    @_store_io
    def stage(self, request: WriteRequest) -> FileStaged:
        """The body in a synced temp file; its MD5 is checked while the disk writes it
        (InvalidState: nothing is left behind)."""
        directory = self._ensure_dir(request.key)
        tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        verify = functools.partial(check_md5, request.body, request.content_md5)
        try:
            write_file(tmp, [request.body], self.sync_state, verify)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return FileStaged(request, directory, tmp)

    @_store_io
    def commit(self, staged: FileStaged, lock_id: str | None, check: HistoryCheck) -> int:
        meta = staged.request.meta
        directory = staged.directory
        with self._mutex(directory):
            holder = self._read_lock_in(directory)
            may_write(holder, lock_id)
            versions = self._versions(directory)
            check(self._meta(directory, versions[-1]) if versions else None)
            number = (versions[-1].number if versions else 0) + 1
            name = f"v{number:010d}.s{meta.serial}.{lineage_token(meta.lineage)}.{staged.request.who}"
            # rename(2) is atomic: readers see the previous newest version or this one.
            os.rename(staged.tmp, directory / name)
            if self.sync_state:
                fsync_dir(directory)
            written = _Version.parse(name)
            assert written is not None
            self._prune(directory, [*versions, written])
        return number

    @_store_io
    def list_versions(self, key: StateKey) -> list[VersionInfo]:
        directory = self._dir(key)
        result = []
        for version in reversed(self._versions(directory)):
            try:
                stat = os.stat(directory / version.filename)
                lineage = self._meta(directory, version).lineage
            except FileNotFoundError:
                continue  # pruned meanwhile
            created = datetime.fromtimestamp(stat.st_mtime, UTC)
            result.append(
                VersionInfo(
                    version=version.number,
                    serial=version.serial,
                    lineage=lineage,
                    size=stat.st_size,
                    created=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    who=version.who,
                )
            )
        return result

    @_store_io
    def read_version(self, key: StateKey, serial: int) -> bytes | None:
        newest = self._read_newest(self._dir(key), serial)
        return None if newest is None else newest[1]

    # -- locks -----------------------------------------------------------------------

    @_store_io
    def read_lock(self, key: StateKey) -> LockInfo | None:
        return self._read_lock_in(self._dir(key))

    @_store_io
    def lock(self, key: StateKey, info: LockInfo, wait: bool = True) -> None:
        directory = self._ensure_dir(key)
        with self._mutex(directory, wait):
            holder = self._read_lock_in(directory)
            if holder is not None:
                may_lock(holder, info)
                return  # already held by this ID
            tmp = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}"
            try:
                write_file(tmp, [info.to_json()], self.sync_locks)
                os.replace(tmp, directory / LOCK)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise
            if self.sync_locks:
                fsync_dir(directory)

    @_store_io
    def unlock(self, key: StateKey, lock_id: str | None, wait: bool = True) -> None:
        directory = self._dir(key)
        if not directory.is_dir():
            self._check_root()
            return
        with self._mutex(directory, wait):
            holder = self._read_lock_in(directory)
            if holder is None:
                return
            may_unlock(holder, lock_id)
            (directory / LOCK).unlink()
            if self.sync_locks:
                fsync_dir(directory)

    def peek_lock(self, key: StateKey) -> LockInfo | None:
        # One open+read, no thread and no flock: a LOCK against a held lock is answered
        # from here. lock.json is only ever replaced whole (rename) or unlinked, so the
        # bytes read are one holder's, who held the lock at that instant.
        try:
            fd = os.open(f"{self.root}/{key.namespace}/{key.name}/{LOCK}", os.O_RDONLY)
        except OSError:
            return None
        try:
            raw = os.read(fd, lockinfo.MAX_LOCK_BODY * 2)
        except OSError:
            return None
        finally:
            os.close(fd)
        cached = self._lock_cache.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            holder = lockinfo.from_stored(raw)
        except ValueError:
            return None
        if len(self._lock_cache) >= CACHE_ENTRIES:
            self._lock_cache.clear()
        self._lock_cache[key] = (raw, holder)
        return holder

    def check_ready(self) -> None:
        # The only place the store directory is created (see _check_root).
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f"{TMP_PREFIX}probe-{uuid.uuid4().hex}"
        write_file(probe, [b""], False)
        probe.unlink()
