"""How the operator started this run: which `task` (Taskfile.yaml sets WORKFLOW_TASK), so
that messages name the command to type again, and the raw `NAME=value` task variables."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

TASK_ENV = "WORKFLOW_TASK"


def task_name() -> str | None:
    return os.environ.get(TASK_ENV) or None


def with_yes(command: str) -> str:
    """The command line that confirms `command` without a terminal."""
    return with_flag(command, "--yes")


def with_flag(command: str, flag: str) -> str:
    """The command line that runs `command` again with `flag`."""
    task = task_name()
    lock = " LOCK_ID=<id>" if command == "force-unlock" else ""
    if task:
        return f"task {task}{lock} -- {flag}"
    return f"python -m workflow {command}{' <id>' if lock else ''} {flag}"


def raw_task_var(name: str) -> str | None:
    """`NAME=value` exactly as typed on the command line of the `task` that started us.
    go-task expands `{{...}}` in command-line variables before the Taskfile sees them,
    and a state lock ID may hold any bytes; its own command line still has them."""
    if not task_name():
        return None
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if not argv or not Path(os.fsdecode(argv[0])).name.startswith("task"):
        return None
    args = argv[1 : argv.index(b"--")] if b"--" in argv else argv[1:]
    prefix = os.fsencode(f"{name}=")
    values = [arg[len(prefix) :] for arg in args if arg.startswith(prefix)]
    return os.fsdecode(values[-1]) if values else None


TASKS = {"configure": "configure", "synth": "synth", "demo": "demo"}  # the rest are infra:<command>


def task_line(command: str, *args: str) -> str:
    """How the operator runs `command` with `args`: through task when they use task."""
    quoted = " ".join(shlex.quote(a) for a in args)
    if task_name():
        task = TASKS.get(command, f"infra:{command}")
        return f"task {task}" + (f" -- {quoted}" if args else "")
    return f"python -m workflow {command}" + (f" {quoted}" if args else "")
