"""jsii's node runs in a process group of its own, so that Ctrl-C is Python's alone.

A terminal's Ctrl-C (and go-task's, and a test's `killpg`) sends SIGINT to the whole
foreground process group. jsii starts node in Python's group, so node got it too: its
relay process then killed the kernel process and closed the channel between them, while
Python was still using it, and printed `Error on jsii API channel to child process:
Error: read ECONNRESET` with a stack; in node's first milliseconds (before any handler of
ours can run: node resets every signal disposition and the signal mask when it starts)
the signal killed node outright. In a group of its own node never sees the signal:
Python handles it, and jsii's exit hook stops node through its channel as on any exit
(node also exits when Python's end of the channel closes, e.g. on SIGKILL).

jsii has no option for this. It starts node with `subprocess.Popen` from its process
provider, so that module's `subprocess` is replaced by one whose Popen asks for a new
process group (Python 3.11's `process_group=0`). tests/test_broken_environment.py checks
that node really runs in its own group and fails with a message if jsii starts it
another way.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import types
from typing import Any

JSII_PROVIDER = "jsii._kernel.providers.process"


# The node processes started through this (jsii starts one per interpreter).
_started: list[subprocess.Popen] = []


class _OwnGroupSubprocess(types.ModuleType):
    """`subprocess`, except that Popen starts the process in a new process group."""

    def __init__(self) -> None:
        super().__init__("subprocess")

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen:  # subprocess.Popen, in a new group
        kwargs.setdefault("process_group", 0)
        proc = subprocess.Popen(*args, **kwargs)
        _started.append(proc)
        return proc


def stop_node(timeout: float = 5.0) -> None:
    """End jsii's node now rather than at exit, and wait for it: after a Ctrl-C, node
    (which no longer gets the signal) would go on with the request Python stopped
    waiting for, e.g. writing the synthesized files. Its input is closed, as jsii's exit
    hook does (which then finds it closed): node finishes what it is doing and exits."""
    for proc in _started:
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):  # node gone already: a broken pipe
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def own_process_group_for_node() -> bool:
    """To be called before jsii starts node (before `import cdktf`). False when jsii's
    process provider is not where this expects it (then node gets Ctrl-C as before)."""
    try:
        provider = importlib.import_module(JSII_PROVIDER)
    except ImportError:
        return False
    current = getattr(provider, "subprocess", None)
    if isinstance(current, _OwnGroupSubprocess):
        return True
    if current is not subprocess:
        return False
    setattr(provider, "subprocess", _OwnGroupSubprocess())  # noqa: B010 (a module's global)
    return True
