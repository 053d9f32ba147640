"""Ctrl-C during a task: `interrupted`, exit 130, and the state lock tofu held is released.

SIGINT goes to the process group of `task` (as a terminal's Ctrl-C does) while the task
re-synthesizes and while tofu holds the state lock against our state server (fakepve
answers slowly, so the moment lasts). tofu stops on its own and unlocks; the workflow
waits for it instead of killing it. go-task reports our exit status (`exit status 130`)
and exits with its own code for a failed command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import HttpState
from tests.support import ROOT
from tests.tasks.taskrun import ANSI, VENV_BIN, TaskWorkspace, held_lock

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(live: TaskWorkspace) -> TaskWorkspace:
    """The shared workspace (tests/tasks/conftest.py), configured."""
    proc = live.task("configure")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return live


def staging(ws: TaskWorkspace) -> bool:
    return any(ws.root.glob(".cdktf-new-*/"))


# (task, what to change first, when to send SIGINT)
MOMENTS: dict[str, tuple[tuple[str, ...], bool, Callable[[TaskWorkspace, HttpState], bool]]] = {
    "plan, re-synthesizing": (("infra:plan",), True, lambda ws, _s: staging(ws)),
    "plan, tofu holds the lock": (("infra:plan",), False, lambda _ws, s: held_lock(s) is not None),
    "apply-auto, tofu holds the lock": (
        ("infra:apply-auto", "--", "--yes"),
        False,
        lambda _ws, s: held_lock(s) is not None,
    ),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_during_a_task(live: TaskWorkspace, pve: FakePveServer, state: HttpState, moment: str) -> None:
    args, change, when = MOMENTS[moment]
    stack = live.stack_dir / "cdk.tf.json"
    before = stack.read_bytes()
    if change:
        live.nodes.write_text(live.nodes.read_text().replace("12288", "16384"))
    pve.call(lambda p: p.slow_network(0.3))  # every Proxmox API call takes 0.3 s
    proc = subprocess.Popen(
        [str(VENV_BIN / "task"), "--dir", str(ROOT), *args],
        env=live.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not when(live, state) and proc.poll() is None:
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.01)
        assert proc.poll() is None, "the task finished before the moment"
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        pve.call(lambda p: p.slow_network(0.0))
    out, err = ANSI.sub("", out), ANSI.sub("", err)
    assert proc.returncode != 0
    ours = [line for line in err.splitlines() if not line.startswith(("task: ", "setup-tools: "))]
    assert ours and ours[-1] == "interrupted", err[-3000:]
    assert f'task: Failed to run task "{args[0]}": exit status 130' in err
    for noise in ("Traceback", "KeyboardInterrupt", "ECONNRESET", "Exception ignored", "    at "):
        assert noise not in out + err, noise
    assert held_lock(state) is None, "tofu's lock is released"
    assert not staging(live)
    if change:
        assert stack.read_bytes() == before  # the interrupted synthesis changed nothing
    # and the next run works: nothing is left locked or half-written
    again = live.task("infra:plan")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
