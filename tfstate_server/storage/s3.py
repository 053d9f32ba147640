"""State in an S3-compatible bucket (Cloudflare R2 in production).

Keys under the prefix, per state:
    <user>/<name>.tfstate                  the current state, as received (the same key
                                           the tfstate-worker uses, so its bucket can be
                                           served as is); metadata: version, serial, ...
    <user>/<name>.versions/<10 digits>     one object per accepted write
    <user>/<name>.lock                     the holder's LockInfo, if locked

Several replicas may share a bucket: the lock is taken with a conditional create
(If-None-Match: *) and released with a conditional delete (If-Match), and the state is
replaced with If-Match on the ETag that was checked, so serial/lineage checks and lock
checks hold across replicas.
"""

from __future__ import annotations

import contextlib
import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from tfstate_server import lockinfo
from tfstate_server.lockinfo import LockInfo
from tfstate_server.statebody import StateConflict, StateMeta, parse_state
from tfstate_server.storage.base import (
    HistoryCheck,
    Staged,
    StateKey,
    Store,
    StoreFault,
    VersionInfo,
    WriteRequest,
    may_lock,
    may_unlock,
    may_write,
)

# Conditional requests lose to a concurrent writer: re-read and retry a few times.
MAX_ATTEMPTS = 10
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"}
_UNSUPPORTED_CODES = {"NotImplemented", "501"}


P = ParamSpec("P")
R = TypeVar("R")


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _store_io(method: Callable[P, R]) -> Callable[P, R]:
    """Errors of the bucket (gone, access denied, unreachable) become 503 StoreFaults.
    A write fails before its conditional put of the state, or after it (then the state
    is whole and its version object is restored by the next write, see commit)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            reason = {
                "NoSuchBucket": "the store's bucket does not exist",
                "AccessDenied": "access to the store's bucket was denied",
                "403": "access to the store's bucket was denied",
            }.get(code, f"the store answered {code or 'an error'}")
            raise StoreFault(503, reason, f"s3 store {method.__name__}: {exc}") from None
        except botocore.exceptions.BotoCoreError as exc:
            detail = f"s3 store {method.__name__}: {exc}"
            raise StoreFault(503, "the store cannot be reached", detail) from None

    return wrapper


def _is_missing(exc: botocore.exceptions.ClientError) -> bool:
    return _code(exc) in {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class _Current:
    etag: str
    meta: StateMeta
    version: int
    head: dict[str, Any]


class S3Staged(Staged):
    def __init__(self, request: WriteRequest) -> None:
        self.request = request

    def discard(self) -> None:
        pass


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, *, keep_versions: int, client: Any | None = None) -> None:
        self.url = f"s3://{bucket}/{prefix}"
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.keep_versions = keep_versions
        # Endpoint, region, credentials and the checksum settings R2 needs come from the
        # usual AWS_* environment variables / config files.
        self.s3 = client or boto3.client(
            "s3",
            config=botocore.config.Config(
                max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"}
            ),
        )

    # -- keys ------------------------------------------------------------------------

    def _base(self, key: StateKey) -> str:
        return f"{self.prefix}{key.namespace}/{key.name}"

    def _state_key(self, key: StateKey) -> str:
        return self._base(key) + ".tfstate"

    def _lock_key(self, key: StateKey) -> str:
        return self._base(key) + ".lock"

    def _versions_prefix(self, key: StateKey) -> str:
        return self._base(key) + ".versions/"

    # -- low level -------------------------------------------------------------------

    def _get(self, object_key: str) -> tuple[bytes, str, dict[str, str]] | None:
        try:
            reply = self.s3.get_object(Bucket=self.bucket, Key=object_key)
        except botocore.exceptions.ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return reply["Body"].read(), reply["ETag"], reply.get("Metadata", {})

    def _version_numbers(self, key: StateKey) -> list[tuple[int, str]]:
        prefix = self._versions_prefix(key)
        found = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                tail = item["Key"][len(prefix) :]
                if tail.isdigit():
                    found.append((int(tail), item["Key"]))
        return sorted(found)

    # -- state -----------------------------------------------------------------------

    @_store_io
    def read_state(self, key: StateKey) -> bytes | None:
        got = self._get(self._state_key(key))
        return None if got is None else got[0]

    def stage(self, request: WriteRequest, verify: Callable[[], None] = lambda: None) -> S3Staged:
        verify()
        return S3Staged(request)

    def _head(self, object_key: str) -> dict[str, Any] | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=object_key)  # type: ignore[no-any-return]
        except botocore.exceptions.ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def _current(self, key: StateKey) -> _Current | None:
        head = self._head(self._state_key(key))
        if head is None:
            return None
        metadata = head.get("Metadata", {})
        try:
            meta = StateMeta(int(metadata["serial"]), urllib.parse.unquote(metadata["lineage"]))
            return _Current(head["ETag"], meta, int(metadata["version"]), head)
        except (KeyError, ValueError):
            pass
        # Written by the tfstate-worker or another tool: read what we need from the body.
        got = self._get(self._state_key(key))
        if got is None:
            return None
        numbers = self._version_numbers(key)
        return _Current(got[1], parse_state(got[0]), numbers[-1][0] if numbers else 0, head)

    def _version_key(self, key: StateKey, number: int) -> str:
        return f"{self._versions_prefix(key)}{number:010d}"

    @_store_io
    def commit(self, staged: Staged, meta: StateMeta, lock_id: str | None, check: HistoryCheck) -> int:
        request = staged.request
        key = request.key
        for _ in range(MAX_ATTEMPTS):
            holder = self.read_lock(key)
            may_write(holder, lock_id)
            current = self._current(key)
            check(None if current is None else current.meta)
            numbers = self._version_numbers(key)
            if current is not None and current.version not in {n for n, _ in numbers}:
                self._keep_current(key, current)
            version = (current.version if current else 0) + 1
            metadata = {
                "version": str(version),
                "serial": str(meta.serial),
                "lineage": urllib.parse.quote(meta.lineage, safe=""),
                "created": request.created,
                "who": request.who,
            }
            condition = {"IfMatch": current.etag} if current else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self._state_key(key),
                    Body=request.body,
                    ContentType="application/json",
                    Metadata=metadata,
                    **condition,
                )
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _CONFLICT_CODES:
                    continue  # another replica wrote first: check again against its state
                raise
            # Winning the conditional write makes this version number ours. Dying before
            # the copy below leaves a current state without its version object; the
            # next write puts it back (_keep_current), and listings include it meanwhile.
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self._version_key(key, version),
                Body=request.body,
                ContentType="application/json",
                Metadata=metadata,
            )
            self._prune([*numbers, (version, self._version_key(key, version))])
            return version
        raise StateConflict("the state changed repeatedly during the write; try again")

    def _keep_current(self, key: StateKey, current: _Current) -> None:
        if current.version < 1:
            return
        with contextlib.suppress(botocore.exceptions.ClientError):
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=self._version_key(key, current.version),
                CopySource={"Bucket": self.bucket, "Key": self._state_key(key)},
                CopySourceIfMatch=current.etag,
                MetadataDirective="COPY",
            )

    def _prune(self, numbers: list[tuple[int, str]]) -> None:
        old = sorted(numbers)[: max(0, len(numbers) - self.keep_versions)]
        for start in range(0, len(old), 1000):
            batch = [{"Key": object_key} for _, object_key in old[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _version_info(self, number: int, head: dict[str, Any]) -> VersionInfo:
        metadata = head.get("Metadata", {})
        return VersionInfo(
            version=number,
            serial=int(metadata.get("serial", -1)),
            lineage=urllib.parse.unquote(metadata.get("lineage", "")),
            size=int(head["ContentLength"]),
            created=metadata.get("created", ""),
            who=metadata.get("who", ""),
        )

    def _listing(self, key: StateKey) -> list[tuple[VersionInfo, str]]:
        """Versions newest first, with the key to read each from."""
        result = []
        current = self._current(key)
        numbers = self._version_numbers(key)
        if current is not None and current.version not in {n for n, _ in numbers}:
            # The current state's version object is missing (see commit): it is a version.
            info = self._version_info(current.version, current.head)
            result.append((info, self._state_key(key)))
        for number, object_key in reversed(numbers):
            head = self._head(object_key)
            if head is not None:  # else pruned meanwhile
                result.append((self._version_info(number, head), object_key))
        return result

    @_store_io
    def list_versions(self, key: StateKey) -> list[VersionInfo]:
        return [info for info, _ in self._listing(key)]

    @_store_io
    def read_version(self, key: StateKey, serial: int) -> bytes | None:
        for info, object_key in self._listing(key):
            if info.serial == serial:
                got = self._get(object_key)
                if got is not None:
                    return got[0]
        return None

    # -- locks -----------------------------------------------------------------------

    def _read_lock_with_etag(self, key: StateKey) -> tuple[LockInfo, str] | None:
        got = self._get(self._lock_key(key))
        if got is None:
            return None
        return lockinfo.from_stored(got[0]), got[1]

    @_store_io
    def read_lock(self, key: StateKey) -> LockInfo | None:
        got = self._read_lock_with_etag(key)
        return None if got is None else got[0]

    @_store_io
    def lock(self, key: StateKey, info: LockInfo, wait: bool = True) -> None:
        for _ in range(MAX_ATTEMPTS):
            try:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self._lock_key(key),
                    Body=info.to_json(),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
                return
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in _CONFLICT_CODES:
                    raise
            holder = self.read_lock(key)
            if holder is None:
                continue  # released between our attempt and the read
            may_lock(holder, info)
            return  # already held by this ID
        raise StateConflict("the lock changed repeatedly; try again")

    @_store_io
    def unlock(self, key: StateKey, lock_id: str | None, wait: bool = True) -> None:
        for _ in range(MAX_ATTEMPTS):
            got = self._read_lock_with_etag(key)
            if got is None:
                return
            holder, etag = got
            may_unlock(holder, lock_id)
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self._lock_key(key), IfMatch=etag)
                return
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in _UNSUPPORTED_CODES:
                    # A service without conditional deletes: the ID check above is the
                    # best we can do.
                    self.s3.delete_object(Bucket=self.bucket, Key=self._lock_key(key))
                    return
                if _code(exc) not in _CONFLICT_CODES:
                    raise
        raise StateConflict("the lock changed repeatedly; try again")

    def check_ready(self) -> None:
        self.s3.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        self.s3.close()
