"""Start cdktf's JavaScript runtime (jsii on Node.js), or say in one line why it cannot.

jsii starts `node` when cdktf is first imported. Without Node.js, with one too old, or
without room for the runtime's files in the temp directory, jsii fails with tracebacks
(and more from its own clean-up at exit). Here: the Node.js check costs nothing on the
happy path (a PATH lookup, and a preload node itself runs on start-up); the version is
only asked for (`node --version`) to explain a failure. Ctrl-C is left to Python: node
runs in a process group of its own (node_group.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from cdktf_runtime.node_flags import add_heap_flags
from cdktf_runtime.node_group import own_process_group_for_node

# cdktf 0.21's minimum ("Minimum required Node version updated to 20.9"). The variable
# exists so that the tests can make the Node.js at hand too old; the guard reads it too.
MIN_ENV = "TALOS_CDKTF_NODE_MIN"
PRELOAD = Path(__file__).resolve().parent / "node_preload.js"
VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


_hooked = False


class RuntimeUnavailable(Exception):
    """cdktf's runtime cannot start: one line for the operator, exit 2."""


def load_cdktf() -> ModuleType:
    """`import cdktf`, with a failure to start its runtime as RuntimeUnavailable."""
    if "cdktf" in sys.modules:
        return sys.modules["cdktf"]
    node = os.environ.get("JSII_NODE", "node")
    os.environ.setdefault(MIN_ENV, "20.9")
    if shutil.which(node) is None:
        where = "" if os.sep in node else " on PATH"
        raise RuntimeUnavailable(f"Node.js ({node}) not found{where}: {needed()}")
    _quiet_jsii_teardown()
    add_heap_flags()
    _add_preload()
    try:
        own_process_group_for_node()  # Ctrl-C is Python's alone (node_group.py)
        import cdktf
    except OSError as exc:
        if exc.filename and Path(str(exc.filename)).name == Path(node).name:
            reason = exc.strerror or exc
            raise RuntimeUnavailable(f"Node.js ({node}) cannot be started ({reason}): {needed()}") from exc
        raise RuntimeUnavailable(
            f"cannot start cdktf's runtime: cannot write its files ({exc.strerror or exc}); "
            "check the free space of the temp directory (TMPDIR)"
        ) from exc
    except (json.JSONDecodeError, BrokenPipeError, AssertionError, RuntimeError) as exc:
        raise RuntimeUnavailable(_diagnose(node, exc)) from exc
    return cdktf


def node_min() -> tuple[int, ...]:
    return tuple(int(part) for part in os.environ.get(MIN_ENV, "20.9").split("."))


def needed() -> str:
    return f"cdktf needs Node.js {'.'.join(map(str, node_min()))} or newer"


def _add_preload() -> None:
    """Node runs the preload before jsii's runtime: a Node.js older than the minimum exits
    at once (and _diagnose says why)."""
    quoted = str(PRELOAD).replace("\\", "\\\\").replace('"', '\\"')  # NODE_OPTIONS' own quoting
    option = f'--require "{quoted}"'
    current = os.environ.get("NODE_OPTIONS", "")
    if option not in current:
        os.environ["NODE_OPTIONS"] = f"{current} {option}".strip()


def _diagnose(node: str, exc: BaseException) -> str:
    """Why node did not start jsii: its version when that is the reason (asked only now)."""
    try:
        env = _without_preload()
        proc = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, env=env)
        found = VERSION_RE.match(proc.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        found = None
    where = shutil.which(node) or node
    if found is None:
        return f"Node.js ({where}) does not run (`{node} --version` failed): {needed()}"
    version = tuple(int(part) for part in found.groups())
    if version[: len(node_min())] < node_min():
        return f"Node.js v{'.'.join(map(str, version))} ({where}) is too old: {needed()}"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot start cdktf's runtime on Node.js v{'.'.join(map(str, version))} ({where}): {detail}"


def _without_preload() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)
    return env


def _quiet_jsii_teardown() -> None:
    """jsii's clean-up (its process object's __del__ and its atexit hook) raises when node
    never started or already exited: Python would print those as
    'Exception ignored' tracebacks at exit. Only those are silenced."""
    default = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        owner = getattr(unraisable.object, "__self__", unraisable.object)
        name = getattr(owner, "__qualname__", type(owner).__qualname__)
        module = getattr(owner, "__module__", type(owner).__module__) or ""
        if module.startswith("jsii.") and "_NodeProcess" in name:
            return
        default(unraisable)

    global _hooked
    if not _hooked:
        sys.unraisablehook, _hooked = hook, True
