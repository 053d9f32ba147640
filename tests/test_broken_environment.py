"""A broken environment is one line; Ctrl-C at any moment of main.py is `interrupted`.

Node.js missing, not runnable or too old (the real node, made "too old" by raising the
minimum the preload checks): one line saying which Node.js is needed, exit 2. SIGINT to
the process group while modules load, once jsii's node runs, while synthesizing and just
before the swap: `interrupted`, exit 130, nothing else on stderr (no traceback, no node
stack), the previous output byte for byte, no temp directories left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import ROOT, ConfigDir
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


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


# When to send SIGINT, as a condition on the running main.py (pid, output's parent).
MOMENTS: dict[str, Callable[[int, Path], bool]] = {
    # pydantic's compiled core is mapped: `from config import ...` is under way
    "loading modules": lambda pid, _root: "pydantic_core" in _maps(pid),
    "jsii's node running": lambda pid, _root: bool(_children(pid)),
    "synthesizing": lambda _pid, root: any(root.glob(".cdktf-new-*/")),
    "written, before the swap": lambda _pid, root: any(root.glob(".cdktf-new-*/stacks/proxmox/cdk.tf.json")),
}


def interrupt_at(moment: str, d: ConfigDir, scratch: Path) -> tuple[int, str, str] | None:
    """Run main.py, send SIGINT to its process group at the moment; None if main.py
    finished before the moment came (a window of milliseconds may be missed)."""
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
