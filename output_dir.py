"""The output directory is replaced whole or not at all.

Synthesis writes into a new directory beside the output (same filesystem, so renames are
atomic); on success whatever the previous output holds that synthesis does not write
(tofu's `.terraform/` and lock file, the saved plan, the workflow's stamps, other stacks)
is moved into it and the two directories are exchanged. On any failure the new directory
is removed and the previous output stays byte for byte.

One synthesis at a time writes an output directory: two runs at once (two `task synth`,
or `task synth` beside `task infra:plan`) take turns on an flock of the directory that
holds the output, so the second waits for the first instead of racing its swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STAGING_PREFIX = ".cdktf-new-"
NODE_ERRNO = re.compile(r"(Error: )?E[A-Z]+: ")  # short: an output name near the length limit still fits
_RENAME_EXCHANGE = 2  # linux/fs.h


class OutputDirError(Exception):
    """The output directory cannot be written: one line for the operator, exit 2."""


def output_error(display: Path, exc: BaseException) -> OutputDirError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(str(exc))
    reason = reason.removeprefix("Error: ")  # node's errors, as jsii passes them on
    return OutputDirError(f"{display}: cannot write the output directory ({reason})")


def is_node_file_error(exc: BaseException) -> bool:
    """A file system error of node's, as jsii passes it on: `Error: ENOSPC: no space...`."""
    return NODE_ERRNO.match(str(exc)) is not None


@contextlib.contextmanager
def staged_output(outdir: Path) -> Iterator[Path]:
    """Yield an empty directory to synthesize into; swap it in for `outdir` when the block
    succeeds. Failures while preparing or swapping raise OutputDirError; an exception in
    the block propagates. Either way nothing is left behind and `outdir` is unchanged."""
    target = Path(os.path.realpath(outdir))  # a symlinked output: replace what it points at
    # Named before it exists, so that the clean-up below covers a Ctrl-C at any moment;
    # the pid lets a later run remove what a killed one (SIGKILL, power loss) left.
    staging = target.parent / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
    swapped = False
    with output_lock(outdir):
        try:
            try:
                _prepare(target, staging)
            except OSError as exc:
                raise output_error(outdir, exc) from exc
            yield staging
            # A Ctrl-C while the new output goes in comes too late to undo it: the work is
            # done, and so it is while the previous output (now in staging) is removed.
            with _sigint_deferred():
                _swap_in(staging, target, outdir)
                swapped = True
        finally:
            # Interrupted half way, the clean-up would leave part of the directory behind.
            with _sigint_deferred() as pending:
                _remove(staging)
            if pending() and not swapped:
                raise KeyboardInterrupt


def _remove(staging: Path, tries: int = 100) -> None:
    """Remove the staging directory. On Ctrl-C, node (jsii) gets the signal too and may
    still be writing into it for a moment, so a file can appear behind rmtree: try again."""
    for _ in range(tries):
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.lexists(staging):
            return
        time.sleep(0.02)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[Callable[[], bool]]:
    """SIGINT is noted instead of raised inside the block; the block gets a function that
    says whether one came. Only the main thread can set handlers: elsewhere, no change."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield lambda: bool(caught)
    finally:
        signal.signal(signal.SIGINT, previous)


# The locks this process holds: directory -> (its descriptor, how many nested holders).
_held: dict[str, tuple[int, int]] = {}
_held_guard = threading.RLock()


@contextlib.contextmanager
def output_lock(outdir: Path) -> Iterator[None]:
    """Hold `outdir`'s lock: an exclusive flock of the directory that holds it (no lock
    file to clean up or ignore; outputs side by side take turns too). Another process
    holding it: say so on stderr and wait. Nested holds in one process share the lock.
    Where the filesystem cannot lock, go on unlocked rather than fail the run. The
    parent directory cannot be made: OutputDirError."""
    target = Path(os.path.realpath(outdir))
    try:
        _make_parent(target)
    except OSError as exc:
        raise output_error(outdir, exc) from exc
    key = str(target.parent)
    with _held_guard:  # threads of one process take turns too
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
        else:
            _held[key] = (_lock(target.parent, outdir), 1)
        try:
            yield
        finally:
            fd, depth = _held.pop(key)
            if depth > 1:
                _held[key] = (fd, depth - 1)
            elif fd >= 0:
                os.close(fd)  # releases the flock


def _lock(directory: Path, display: Path) -> int:
    """An exclusive flock of `directory`: its descriptor, or -1 where it cannot be locked."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return -1
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{display}: waiting for another synthesis to finish", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # no locks on this filesystem (ENOLCK, EBADF on some NFS mounts)
        os.close(fd)
        return -1
    except BaseException:  # Ctrl-C while waiting: nothing was written
        os.close(fd)
        raise
    return fd


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a directory should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None


def _prepare(target: Path, staging: Path) -> None:
    _make_parent(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    staging.mkdir()  # the usual mode (umask), unlike mkdtemp's 0700
    _remove_abandoned(target.parent)


def _remove_abandoned(parent: Path) -> None:
    """Staging directories of runs that no longer exist (a concurrent run's stays)."""
    for entry in parent.glob(f"{STAGING_PREFIX}*"):
        pid = entry.name.removeprefix(STAGING_PREFIX).split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _swap_in(staging: Path, target: Path, display: Path) -> None:
    """Exchange `staging` (the new output) with `target`; afterwards `staging` holds the
    previous output, minus what was carried over, for the caller to remove."""
    if not target.exists():
        try:
            os.rename(staging, target)
        except OSError as exc:
            raise output_error(display, exc) from exc
        return
    moved: list[tuple[Path, Path]] = []
    try:
        for old, new in _carried(target, staging):
            os.rename(old, new)
            moved.append((old, new))
        _exchange(staging, target)
    except BaseException as exc:  # Ctrl-C included: what was carried over goes back
        for old, new in reversed(moved):
            with contextlib.suppress(OSError):
                os.rename(new, old)
        if isinstance(exc, OSError):
            raise output_error(display, exc) from exc
        raise


def _carried(old_dir: Path, new_dir: Path) -> Iterator[tuple[Path, Path]]:
    """What the previous output holds that synthesis did not write (moved, not copied:
    `.terraform/` can be large). Where both have the same file, the new one wins."""
    for entry in sorted(os.listdir(old_dir)):
        old, new = old_dir / entry, new_dir / entry
        if not os.path.lexists(new):
            yield old, new
        elif old.is_dir() and not old.is_symlink() and new.is_dir() and not new.is_symlink():
            yield from _carried(old, new)


def _exchange(a: Path, b: Path) -> None:
    """Atomically exchange two directories (renameat2 RENAME_EXCHANGE); where the system
    or filesystem lacks it, two renames with the old output restored on failure."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd = -100
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(b))
    aside = b.with_name(f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except OSError:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
