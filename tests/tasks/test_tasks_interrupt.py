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
from tests.support import ROOT, descendant_pids, node_pids
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


NOISE = ("Traceback", "KeyboardInterrupt", "ECONNRESET", "Exception ignored", "    at ")


def interrupt_task(
    ws: TaskWorkspace,
    args: tuple[str, ...],
    when: Callable[[int], bool],
    delay: float = 0.0,
    finished_ok: bool = False,
) -> tuple[int | None, str, str]:
    """Run `task ARGS` in a process group of its own; `delay` seconds after `when(pid)`
    holds, SIGINT to the group (a terminal's Ctrl-C). (exit code, stdout, stderr);
    the code is None when the task finished before the moment came, 0 when it finished
    before the signal (`finished_ok`: else that is an error)."""
    proc = subprocess.Popen(
        [str(VENV_BIN / "task"), "--dir", str(ROOT), *args],
        env=ws.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not when(proc.pid) and proc.poll() is None:
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.002)
        if proc.poll() is not None and not finished_ok:
            proc.communicate()
            return None, "", ""
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return proc.returncode, ANSI.sub("", out), ANSI.sub("", err)


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
    try:
        code, out, err = interrupt_task(live, args, lambda _pid: when(live, state))
    finally:
        pve.call(lambda p: p.slow_network(0.0))
    assert code is not None, "the task finished before the moment"
    assert code != 0
    ours = [line for line in err.splitlines() if not line.startswith(("task: ", "setup-tools: "))]
    assert ours and ours[-1] == "interrupted", err[-3000:]
    assert f'task: Failed to run task "{args[0]}": exit status 130' in err
    for noise in NOISE:
        assert noise not in out + err, noise
    assert held_lock(state) is None, "tofu's lock is released"
    assert not staging(live)
    if change:
        assert stack.read_bytes() == before  # the interrupted synthesis changed nothing
    # and the next run works: nothing is left locked or half-written
    again = live.task("infra:plan")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]


# Issue 21: SIGINT 0.1-0.5 s after jsii's node started printed node's ECONNRESET stack in
# some tries. 20 moments spread over that window, through go-task as an operator runs it.
NODE_DELAYS = [round(0.1 + 0.4 * i / 19, 3) for i in range(20)]


def test_ctrl_c_during_task_synth_while_node_runs(workspace: TaskWorkspace) -> None:
    interrupted = 0
    for delay in NODE_DELAYS:
        code, out, err = interrupt_task(
            workspace, ("synth",), lambda pid: bool(node_pids(descendant_pids(pid))), delay, finished_ok=True
        )
        ours = [line for line in err.splitlines() if not line.startswith("task: ")]
        for noise in NOISE:
            assert noise not in out + err, f"SIGINT {delay} s after node started: {err[-3000:]}"
        assert not staging(workspace), delay
        if code == 0:  # finished before the signal
            assert "interrupted" not in ours and "Synthesized stack 'proxmox'" in err, err
            continue
        interrupted += 1
        assert code == 201, f"{delay} s: go-task's code for a failed command, got {code}"
        assert ours == ["interrupted"], f"SIGINT {delay} s after node started: {err[-3000:]}"
        assert 'task: Failed to run task "synth": exit status 130' in err, err
    assert interrupted >= len(NODE_DELAYS) // 4, f"only {interrupted} runs were still going at the signal"
