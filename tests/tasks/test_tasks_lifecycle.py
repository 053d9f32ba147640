"""Every task end to end, non-interactively, against fakepve and the tfstate server.

configure -> plan -> apply -> output -> state-list -> destroy through `task`, a force-unlock
of a lock left by a killed run, the demo, and no secret in any file or output.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from devenv.fakepve import FakePveServer
from devenv.scan import find_secrets
from devenv.workspace import HttpState
from tests.support import ROOT
from tests.tasks.taskrun import VENV_BIN, TaskWorkspace, lock_info

pytestmark = pytest.mark.e2e


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def assert_no_secrets(ws: TaskWorkspace, secrets: list[str]) -> None:
    """Not in any file of the repository or the workspace (plan files' zip members
    included), nor in any task's output. The operator's own cluster.yaml is the input."""
    skip = (".venv", "node_modules", ".git")
    paths = [
        path
        for base in (ROOT, ws.root)
        for path in base.rglob("*")
        if not any(part in skip for part in path.parts) and path != ws.cluster
    ]
    hits = find_secrets(paths, secrets)
    hits += [f"task output: {s[:6]}..." for s in secrets for out in ws.log if s in out]
    assert not hits, hits


def test_configure_plan_apply_output_state_list_destroy(live: TaskWorkspace, pve: FakePveServer) -> None:
    ok(live.task("configure"))
    assert (live.stack_dir / ".terraform").is_dir(), "configure runs infra:init with state credentials"
    ok(live.task("infra:init"))  # again, explicitly: idempotent against the same backend
    ok(live.task("infra:validate"))
    plan = ok(live.task("infra:plan"))
    assert "Plan: 8 to add, 0 to change, 0 to destroy." in plan.stdout
    ok(live.task("infra:apply"))
    assert pve.call(lambda p: sorted(vm.vmid for vm in p.vms)) == [8010, 8011, 8012, 8020, 8021, 8022]

    outputs = json.loads(ok(live.task("infra:output", "--", "-json")).stdout)
    assert outputs["node_vm_ids"]["value"]["k8s-ctrl-0"] == 8010
    assert "Total nodes:     6" in outputs["cluster_summary"]["value"]
    listed = ok(live.task("infra:state-list")).stdout.split()
    assert "proxmox_virtual_environment_vm.talos_node_k8s_work_2" in listed and len(listed) == 8

    again = live.task("infra:plan", "--", "-detailed-exitcode")
    assert again.returncode == 0, again.stdout[-2000:]  # nothing to change
    ok(live.task("infra:apply"))  # the no-op plan applies cleanly

    refused = live.task("infra:destroy")
    assert refused.returncode != 0 and "without confirmation" in refused.stderr
    assert pve.call(lambda p: len(p.vms)) == 6
    ok(live.task("infra:destroy", "--", "--yes"))
    assert pve.call(lambda p: len(p.vms)) == 0
    assert zipfile.is_zipfile(live.stack_dir / "tfplan")  # scanned member by member below
    assert_no_secrets(live, live.secrets)  # type: ignore[attr-defined]


def test_force_unlock_of_a_lock_left_by_a_killed_run(
    live: TaskWorkspace, pve: FakePveServer, state: HttpState
) -> None:
    ok(live.task("configure"))
    pve.call(lambda p: p.slow_network(0.3))  # every API call takes 0.3 s: apply holds the lock
    proc = subprocess.Popen(
        [str(VENV_BIN / "task"), "--dir", str(ROOT), "infra:apply-auto", "--", "--yes"],
        env=live.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        info = None
        deadline = time.monotonic() + 120
        while info is None and time.monotonic() < deadline and proc.poll() is None:
            info = lock_info(state)
            time.sleep(0.05)
        assert info is not None, "apply never took the lock"
        os.killpg(proc.pid, signal.SIGKILL)  # task, python and tofu: no chance to unlock
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    pve.call(lambda p: p.slow_network(0.0))
    assert lock_info(state) == info, "the killed run's lock is still held"

    blocked = live.task("infra:plan")
    assert blocked.returncode != 0 and "Error acquiring the state lock" in blocked.stdout + blocked.stderr
    refused = live.task("infra:force-unlock", f"LOCK_ID={info['ID']}")
    assert refused.returncode != 0 and "without confirmation" in refused.stderr
    ok(live.task("infra:force-unlock", f"LOCK_ID={info['ID']}", "--", "--yes"))
    assert lock_info(state) is None
    ok(live.task("infra:apply-auto", "--", "--yes"))  # the rerun converges
    assert pve.call(lambda p: len(p.vms)) == 6
    assert_no_secrets(live, live.secrets)  # type: ignore[attr-defined]


def test_demo_runs_the_whole_flow_and_stops_what_it_started(tmp_path: Path) -> None:
    ws = TaskWorkspace(tmp_path)
    scratch = tmp_path / "tmp"  # the demo's TMPDIR: must be empty again afterwards
    scratch.mkdir()
    proc = ok(ws.task("demo", env={"TMPDIR": str(scratch)}))
    assert "Apply complete! Resources: 8 added, 0 changed, 0 destroyed." in proc.stdout
    assert "Total nodes:     6" in proc.stdout and "k8s-work-2   8022" in proc.stdout
    urls = {
        name: line.split(f"{name}: ")[1].split()[0]
        for line in proc.stderr.splitlines()
        for name in ("Proxmox VE API", "state server")
        if f"{name}: " in line
    }
    assert set(urls) == {"Proxmox VE API", "state server"}, proc.stderr
    for url in urls.values():  # both services are gone
        host, port = url.split("://")[1].split(":")
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
            pass
    # Nothing of the demo's is left. The bpg provider keeps one machine-wide lock file for
    # its VM id generator in the temp dir on purpose (shared by all its runs): not ours.
    left = [p.name for p in scratch.iterdir() if p.name != "terraform-provider-proxmox-id-gen.lock"]
    assert left == []


def test_secrets_edit_rotation_is_used_by_the_next_task(
    live: TaskWorkspace, state: HttpState, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ok(live.task("configure"))
    ok(live.task("infra:plan"))
    # An "editor" that rewrites tfstate_password in the file sops hands it; the new value
    # comes from the environment, never from a command line.
    editor = tmp_path_factory.mktemp("editor") / "rotate"
    editor.write_text(
        "#!/usr/bin/env python3\n"
        "import os, re, sys\n"
        "path = sys.argv[1]\n"
        "text = open(path).read()\n"
        "text = re.sub(r'(?m)^tfstate_password:.*$', 'tfstate_password: ' + os.environ['NEW_PW'], text)\n"
        "open(path, 'w').write(text)\n"
    )
    editor.chmod(0o755)
    rotated = f"rotated-{secrets.token_hex(8)}"  # random: the test source must not hold it
    ok(live.task("infra:secrets-edit", env={"EDITOR": str(editor), "NEW_PW": rotated}))
    # the server still has the old password: the next task now authenticates with the new one
    denied = live.task("infra:plan")
    assert denied.returncode != 0 and "HTTP remote state endpoint requires auth" in denied.stderr
    ok(live.task("infra:secrets-edit", env={"EDITOR": str(editor), "NEW_PW": state.password}))
    ok(live.task("infra:plan"))
    assert_no_secrets(live, [*live.secrets, rotated])  # type: ignore[attr-defined]
