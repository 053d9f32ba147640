"""State in an S3-compatible bucket (Cloudflare R2 in production).

Keys under the prefix, per state:
    <user>/<name>.tfstate                  the current state, as received (the same key
                                           the tfstate-worker uses, so its bucket can be
                                           served as is); metadata: version, serial, ...
    <user>/<name>.history/<10 digits>      one object per accepted write
    <user>/<name>.lock                     the holder's LockInfo, if locked

Earlier releases kept the versions under `<user>/<name>.versions/`. SeaweedFS keeps its
own object versions under `<key>.versions/` and leaves every such folder out of its
listings, so there the history was stored but never listed nor pruned. Versions under the
old prefix are still listed, read and pruned with the new ones (where the server lists
them), and `python -m tfstate_server.storage.s3 migrate-versions s3://bucket/prefix`
moves them to the new layout, also on a server that does not list them.

Several replicas may share a bucket: the lock is taken with a conditional create
(If-None-Match: *) and released with a conditional delete (If-Match), and the state is
replaced with If-Match on the ETag that was checked, so serial/lineage checks and lock
checks hold across replicas. check_ready refuses a bucket that ignores conditional writes.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, ParamSpec, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from tfstate_server.faults import StoreFault
from tfstate_server.locking import lockinfo
from tfstate_server.locking.locker import may_lock, may_unlock, may_write
from tfstate_server.locking.lockinfo import LockInfo
from tfstate_server.names import StateKey
from tfstate_server.statebody import StateConflict, StateMeta, check_md5, parse_state
from tfstate_server.storage import Store
from tfstate_server.storage.state_store import HistoryCheck, VersionInfo, WriteRequest

# Conditional requests lose to a concurrent writer: re-read and retry a few times.
MAX_ATTEMPTS = 10
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"}
_PRECONDITION_CODES = {"PreconditionFailed", "412"}
_UNSUPPORTED_CODES = {"NotImplemented", "501"}
HISTORY_SUFFIX = ".history/"
LEGACY_SUFFIX = ".versions/"  # the layout of earlier releases, see the module docstring
# The probe object of check_ready: "~" is in no user name, so no state key can be this.
PROBE_NAME = "~tfstate-server-probe-"

log = logging.getLogger(__name__)


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


class ConditionalWritesIgnored(RuntimeError):
    """The bucket accepted a write whose condition does not hold: locks would not be safe."""


def _version_number(tail: str) -> int | None:
    return int(tail) if len(tail) == 10 and tail.isascii() and tail.isdigit() else None


@dataclass(frozen=True)
class _Current:
    etag: str
    meta: StateMeta
    version: int
    head: dict[str, Any]


class S3Store(Store):
    """States, versions and locks in a bucket (see the module docstring)."""

    def __init__(self, bucket: str, prefix: str, *, keep_versions: int, client: Any | None = None) -> None:
        self.url = f"s3://{bucket}/{prefix}"
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.keep_versions = keep_versions
        # States whose old-layout prefix was seen empty: nothing writes there any more.
        self._no_legacy: set[StateKey] = set()
        # Faults that did not fail a request (logged as errors too), by kind.
        self.faults: dict[str, int] = {"prune": 0}
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

    def _history_prefix(self, key: StateKey) -> str:
        return self._base(key) + HISTORY_SUFFIX

    def _legacy_prefix(self, key: StateKey) -> str:
        return self._base(key) + LEGACY_SUFFIX

    # -- low level -------------------------------------------------------------------

    def _get(self, object_key: str) -> tuple[bytes, str, dict[str, str]] | None:
        try:
            reply = self.s3.get_object(Bucket=self.bucket, Key=object_key)
        except botocore.exceptions.ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return reply["Body"].read(), reply["ETag"], reply.get("Metadata", {})

    def _list_numbers(self, prefix: str) -> list[tuple[int, str]]:
        found = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                number = _version_number(item["Key"][len(prefix) :])
                if number is not None:
                    found.append((number, item["Key"]))
        return found

    def _version_numbers(self, key: StateKey) -> list[tuple[int, str]]:
        """(number, object key) of the kept versions, oldest first. A number may appear
        twice (under both layouts, while a migration runs); the new layout's comes last."""
        found = self._list_numbers(self._history_prefix(key))
        if key not in self._no_legacy:
            legacy = self._list_numbers(self._legacy_prefix(key))
            if not legacy:
                self._no_legacy.add(key)
            found += legacy
        history = self._history_prefix(key)
        return sorted(found, key=lambda item: (item[0], item[1].startswith(history)))

    # -- state -----------------------------------------------------------------------

    @_store_io
    def read_state(self, key: StateKey) -> bytes | None:
        got = self._get(self._state_key(key))
        return None if got is None else got[0]

    def _head(self, object_key: str) -> dict[str, Any] | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=object_key)
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
        return f"{self._history_prefix(key)}{number:010d}"

    def write(self, request: WriteRequest, lock_id: str | None, check: HistoryCheck) -> int:
        """put, blocking: the body's MD5 first, then the conditional writes."""
        check_md5(request.body, request.content_md5)
        return self._commit(request, lock_id, check)

    @_store_io
    def _commit(self, request: WriteRequest, lock_id: str | None, check: HistoryCheck) -> int:
        meta = request.meta
        key = request.key
        for _ in range(MAX_ATTEMPTS):
            holder = self.read_lock(key)
            may_write(holder, lock_id)
            current = self._current(key)
            check(None if current is None else current.meta)
            numbers = self._version_numbers(key)
            kept = {n for n, _ in numbers}
            if current is not None and current.version not in kept and not self._keep_current(key, current):
                continue  # the state changed meanwhile: check again against the new one
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
            # Winning the conditional write makes this version number ours. Dying or
            # failing before the put below leaves a current state without its version
            # object (a failure is a 503 for the client, who retries the same body); the
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

    def _keep_current(self, key: StateKey, current: _Current) -> bool:
        """Copy the current state to its missing version object. False if the state was
        replaced meanwhile (another replica's write); any other failure is raised, so
        the write is refused (503) before it could replace an unkept version."""
        if current.version < 1:
            return True
        try:
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=self._version_key(key, current.version),
                CopySource={"Bucket": self.bucket, "Key": self._state_key(key)},
                CopySourceIfMatch=current.etag,
                MetadataDirective="COPY",
            )
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _CONFLICT_CODES:
                return False
            raise
        return True

    def _prune(self, numbers: list[tuple[int, str]]) -> None:
        """Delete all but the newest keep_versions versions. The write is stored by now:
        a failure here is logged and counted, and the next write tries again."""
        distinct = sorted({number for number, _ in numbers})
        doomed = set(distinct[: max(0, len(distinct) - self.keep_versions)])
        old = [object_key for number, object_key in numbers if number in doomed]
        failed: list[str] = []
        kept: set[str] = set()  # keys still there
        for start in range(0, len(old), 1000):
            batch = [{"Key": object_key} for object_key in old[start : start + 1000]]
            try:
                reply = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                failed.append(f"{len(batch)} keys: {exc}")
                kept.update(item["Key"] for item in batch)
                continue
            for error in reply.get("Errors", []):
                failed.append(f"{error.get('Key')}: {error.get('Code')}")
                kept.add(str(error.get("Key")))
        self.count_pruned(len(doomed - {number for number, object_key in numbers if object_key in kept}))
        if failed:
            self.faults["prune"] += 1
            log.error(
                "s3 store: %d old version(s) of %s could not be deleted (retried on the next write): %s",
                len(failed),
                self.bucket,
                "; ".join(failed[:3]),
            )

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
        listed: set[int] = set()
        for number, object_key in reversed(numbers):  # the new layout first for a number
            if number in listed:
                continue
            head = self._head(object_key)
            if head is not None:  # else pruned (or migrated) meanwhile
                listed.add(number)
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
    def lock(self, key: StateKey, info: LockInfo) -> None:
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
    def unlock(self, key: StateKey, lock_id: str | None) -> None:
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
        self.check_conditional_writes()

    def check_conditional_writes(self) -> None:
        """Raise ConditionalWritesIgnored unless the bucket refuses, with 412, a create
        with If-None-Match: * of an object that exists, and a replace with If-Match on an
        ETag it does not have. Locks and the history check rest on both; a bucket that
        ignored them would let two replicas grant one lock twice."""
        probe = f"{self.prefix}{PROBE_NAME}{uuid.uuid4().hex}"
        self.s3.put_object(Bucket=self.bucket, Key=probe, Body=b"probe")
        try:
            for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}):
                header = "If-None-Match: *" if "IfNoneMatch" in condition else "If-Match on another ETag"
                try:
                    self.s3.put_object(Bucket=self.bucket, Key=probe, Body=b"again", **condition)
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) in _PRECONDITION_CODES:
                        continue
                    raise ConditionalWritesIgnored(
                        f"bucket {self.bucket!r} does not support conditional writes "
                        f"({header} answered {_code(exc) or 'an error'}, not 412): "
                        "replicas sharing it could grant one lock twice"
                    ) from None
                raise ConditionalWritesIgnored(
                    f"bucket {self.bucket!r} ignores conditional writes ({header} on an "
                    "existing object was accepted, not refused with 412): replicas sharing "
                    "it could grant one lock twice"
                )
        finally:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=probe)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                log.warning("s3 store: could not delete the probe object %s: %s", probe, exc)

    def close(self) -> None:
        self.s3.close()

    # -- migration from the old layout ---------------------------------------------------

    def _state_keys(self) -> list[StateKey]:
        """Every state under the prefix (keys `<user>/<name>.tfstate`)."""
        found = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                user, slash, rest = item["Key"][len(self.prefix) :].partition("/")
                if slash and "/" not in rest and rest.endswith(".tfstate") and len(rest) > len(".tfstate"):
                    found.append(StateKey(user, rest.removesuffix(".tfstate")))
        return found

    def _delete_keys(self, object_keys: list[str]) -> int:
        """Delete the keys (missing ones included); the number of keys it could not delete."""
        failed = 0
        for start in range(0, len(object_keys), 1000):
            batch = [{"Key": object_key} for object_key in object_keys[start : start + 1000]]
            reply = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            for error in reply.get("Errors", []):
                if error.get("Code") not in {"NoSuchKey", "404"}:
                    failed += 1
                    log.error("s3 store: could not delete %s: %s", error.get("Key"), error.get("Code"))
        return failed

    def migrate_versions(self, say: Callable[[str], None] = lambda line: None) -> MigrationReport:
        """Move the versions kept under `<name>.versions/` (earlier releases) to
        `<name>.history/`. Safe while servers run and safe to run again. On a server that
        leaves `*.versions/` folders out of its listings (SeaweedFS), the newest
        keep_versions numbers are looked up one by one, and older ones, which such a
        server never let the store prune, are deleted."""
        report = MigrationReport()
        for key in self._state_keys():
            report.states += 1
            current = self._current(key)
            if current is None:
                continue
            prefix = self._legacy_prefix(key)
            legacy = dict(self._list_numbers(prefix))
            listed = bool(legacy)
            for number in range(max(1, current.version - self.keep_versions + 1), current.version + 1):
                if number not in legacy and self._head(f"{prefix}{number:010d}") is not None:
                    legacy[number] = f"{prefix}{number:010d}"
            if not legacy:
                continue
            have = {number for number, _ in self._list_numbers(self._history_prefix(key))}
            moved = 0
            for number, object_key in sorted(legacy.items()):
                if number in have:
                    continue
                try:
                    self.s3.copy_object(
                        Bucket=self.bucket,
                        Key=self._version_key(key, number),
                        CopySource={"Bucket": self.bucket, "Key": object_key},
                        MetadataDirective="COPY",
                    )
                except botocore.exceptions.ClientError as exc:
                    if _is_missing(exc):
                        continue  # pruned by a server meanwhile
                    raise
                moved += 1
            doomed = sorted(legacy.values())
            if not listed:  # hidden from listings: older numbers may be there too
                doomed = [f"{prefix}{number:010d}" for number in range(1, current.version + 1)]
            failed = self._delete_keys(doomed)
            if failed:
                raise StoreFault(503, f"{failed} old-layout version(s) of {key} could not be deleted")
            self._no_legacy.discard(key)
            self._prune(self._version_numbers(key))
            report.states_moved += 1
            report.versions_moved += moved
            say(f"{key}: {moved} version(s) moved to {self._history_prefix(key)}")
        return report


@dataclass
class MigrationReport:
    states: int = 0  # states seen
    states_moved: int = 0  # states that had versions in the old layout
    versions_moved: int = 0


def _fail(message: str) -> NoReturn:
    print(f"tfstate_server.storage.s3: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    """`python -m tfstate_server.storage.s3 migrate-versions s3://bucket/prefix`."""
    parser = argparse.ArgumentParser(
        prog="python -m tfstate_server.storage.s3",
        description="Move the versions an earlier release kept under <name>.versions/ to "
        "<name>.history/. Endpoint and keys come from the AWS_* variables, as for the server.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate-versions", help="move old-layout versions (safe to repeat)")
    migrate.add_argument("store", metavar="s3://BUCKET/PREFIX", help="the server's --store URL")
    migrate.add_argument(
        "--keep-versions", type=int, default=50, metavar="N", help="the server's --keep-versions (50)"
    )
    args = parser.parse_args(argv)
    parts = urllib.parse.urlsplit(args.store)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        _fail(f"{args.store!r}: expected s3://bucket/prefix")
    if args.keep_versions < 1:
        _fail("--keep-versions must be at least 1")
    store = S3Store(parts.netloc, parts.path.lstrip("/"), keep_versions=args.keep_versions)
    try:
        store.s3.head_bucket(Bucket=store.bucket)
        report = store.migrate_versions(print)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, StoreFault) as exc:
        _fail(f"{args.store}: {exc}")
    finally:
        store.close()
    print(
        f"{report.states} state(s), {report.states_moved} with old-layout versions, "
        f"{report.versions_moved} version(s) moved"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
