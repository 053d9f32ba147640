"""A broken environment is one line; Ctrl-C at any moment of main.py is `interrupted`.

Node.js missing, not runnable or too old (the real node, made "too old" by raising the
minimum the preload checks): one line saying which Node.js is needed, exit 2. SIGINT to
the process group while modules load, once jsii's node runs, while synthesizing and just
before the swap: `interrupted`, exit 130, nothing else on stderr (no traceback, no node
stack), the previous output byte for byte, no temp directories left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import ROOT, ConfigDir, child_pids, node_pids
from tests.test_output_swap import leftovers, tree

NEEDED = "cdktf needs Node.js 20.9 or newer"


@pytest.fixture
def previous(example_dir: ConfigDir) -> ConfigDir:
    assert example_dir.run_main().returncode == 0
    example_dir.nodes.write_text(
        example_dir.nodes.read_text().replace("vm_memory: 12288", "vm_memory: 16384")
    )
    return example_dir


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize(
    ("case", "env", "expected"),
    [
        ("no node on PATH", {"PATH": "{empty}"}, f"Node.js (node) not found on PATH: {NEEDED}"),
        (
            "JSII_NODE missing",
            {"JSII_NODE": "/nonexistent/node"},
            f"Node.js (/nonexistent/node) not found: {NEEDED}",
        ),
        (
            "not a Node.js",
            {"JSII_NODE": "/bin/false"},
            f"Node.js (/bin/false) does not run (`/bin/false --version` failed): {NEEDED}",
        ),
        (
            "too old",
            {"TALOS_CDKTF_NODE_MIN": "99.0"},
            "Node.js {version} ({node}) is too old: cdktf needs Node.js 99.0 or newer",
        ),
        (
            "too old by a minor version",
            {"TALOS_CDKTF_NODE_MIN": "{major}.99"},
            "Node.js {version} ({node}) is too old: cdktf needs Node.js {major}.99 or newer",
        ),
    ],
)
def test_node_problems_are_one_line(previous: ConfigDir, tmp_path: Path, case, env, expected) -> None:
    version = node_version()
    fill = {"empty": tmp_path / "empty-bin", "version": version, "node": shutil.which("node")}
    fill["major"] = version.lstrip("v").split(".")[0]
    (tmp_path / "empty-bin").mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = tree(previous.outdir)
    run_env = {**previous.env(), "TMPDIR": str(scratch), **{k: v.format(**fill) for k, v in env.items()}}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], env=run_env, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", expected.format(**fill) + "\n"), case
    assert tree(previous.outdir) == before
    assert leftovers(previous.root) == [] and list(scratch.iterdir()) == []


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


# When to send SIGINT, as a condition on the running main.py (pid, output's parent).
MOMENTS: dict[str, Callable[[int, Path], bool]] = {
    # pydantic's compiled core is mapped: `from config import ...` is under way
    "loading modules": lambda pid, _root: "pydantic_core" in _maps(pid),
    "jsii's node running": lambda pid, _root: bool(child_pids(pid)),
    "synthesizing": lambda _pid, root: any(root.glob(".cdktf-new-*/")),
    "written, before the swap": lambda _pid, root: any(root.glob(".cdktf-new-*/stacks/proxmox/cdk.tf.json")),
}


def interrupt_at(moment: str, d: ConfigDir, scratch: Path, delay: float = 0.0) -> tuple[int, str, str] | None:
    """Run main.py, send SIGINT to its process group `delay` seconds after the moment;
    None if main.py finished before the moment came (a window of milliseconds may be
    missed). Finished before the signal: exit code 0."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py")],
        env={**d.env(), "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C hits
    )
    try:
        deadline = time.monotonic() + 60
        while not MOMENTS[moment](proc.pid, d.root) and proc.poll() is None:
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.0005)
        if proc.poll() is not None:
            proc.communicate()
            return None
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_at_any_moment(previous: ConfigDir, tmp_path: Path, moment: str) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = tree(previous.outdir)
    backup = tmp_path / "backup"
    shutil.copytree(previous.outdir, backup, symlinks=True)
    for _attempt in range(10):
        result = interrupt_at(moment, previous, scratch)
        if result is not None:
            break
        shutil.rmtree(previous.outdir)  # missed: the new output is in place; again
        shutil.copytree(backup, previous.outdir, symlinks=True)
    assert result is not None, "never caught the moment in 10 runs"
    code, out, err = result
    after = tree(previous.outdir)
    if code == 0:
        # The signal came after the swap: the work was done, the new output is whole.
        assert moment == "written, before the swap", err
        assert b"16384" in after["stacks/proxmox/cdk.tf.json"] and err == ""
    else:
        assert (code, out, err) == (130, "", "interrupted\n")
        assert after == before
    assert leftovers(previous.root) == [] and list(scratch.iterdir()) == []


# Issue 21: SIGINT 0.1-0.5 s after jsii's node started printed node's `Error on jsii API
# channel to child process: Error: read ECONNRESET` and its stack in some tries (node got
# the signal too, from the process group). 20 moments spread over that window.
NODE_DELAYS = [round(0.1 + 0.4 * i / 19, 3) for i in range(20)]


def test_ctrl_c_while_node_starts_and_runs(previous: ConfigDir, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    before = tree(previous.outdir)
    backup = tmp_path / "backup"
    shutil.copytree(previous.outdir, backup, symlinks=True)
    interrupted = 0
    for delay in NODE_DELAYS:
        result = interrupt_at("jsii's node running", previous, scratch, delay)
        assert result is not None, f"{delay} s: main.py finished before its node started"
        code, out, err = result
        if code == 0:  # finished before the signal: the new output is whole
            assert b"16384" in tree(previous.outdir)["stacks/proxmox/cdk.tf.json"] and err == "", delay
            shutil.rmtree(previous.outdir)
            shutil.copytree(backup, previous.outdir, symlinks=True)
        else:
            interrupted += 1
            assert (code, out, err) == (130, "", "interrupted\n"), f"SIGINT {delay} s after node started"
            assert tree(previous.outdir) == before, delay
        assert leftovers(previous.root) == [] and list(scratch.iterdir()) == [], delay
    assert interrupted >= len(NODE_DELAYS) // 4, f"only {interrupted} runs were still going at the signal"


def test_node_runs_in_a_process_group_of_its_own(example_dir: ConfigDir) -> None:
    """Why Ctrl-C is Python's alone: jsii's node is outside the group a terminal signals
    (cdktf_runtime/node_group.py). Fails if jsii starts node some other way."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py")],
        env=example_dir.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (nodes := node_pids(child_pids(proc.pid))) and proc.poll() is None:
            assert time.monotonic() < deadline, "jsii's node never started"
            time.sleep(0.0005)
        groups = {}
        for child in nodes:  # exec'd: its group was set between fork and exec
            with contextlib.suppress(ProcessLookupError):
                groups[child] = os.getpgid(child)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert groups, "main.py finished before its node could be seen"
    assert all(group == pid != proc.pid for pid, group in groups.items()), (
        f"jsii's node (pid: group {groups}) is not in a process group of its own (main.py: "
        f"{proc.pid}): Ctrl-C would reach it. Has jsii changed how it starts node "
        "(cdktf_runtime/node_group.py replaces its provider's subprocess.Popen)?"
    )
