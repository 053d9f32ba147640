"""A move to another host through the rolling apply, on three hosts whose ISO datastore is
each host's own: Proxmox refuses to migrate a VM with a local ISO in its CD-ROM drive (the
fake refuses as Proxmox does; tests/e2e/test_multi_host.py shows plain tofu failing), so
the rollout ejects it first, says so, and the move passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import TofuWorkspace, example_nodes
from e2e.conftest import HOSTS, WorkspaceFactory

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def rolling_apply(ws: TofuWorkspace) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflow", "apply-auto", "--yes", "--node-timeout", "60"],
        cwd=ROOT,
        env=ws.workflow_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_rollout_ejects_a_local_iso_before_a_move(
    make_workspace: WorkspaceFactory, cluster_pve: FakePveServer
) -> None:
    nodes = example_nodes()
    ws = make_workspace(cluster_pve)
    ws.write(nodes).synth()  # one host: everything on pve1, each CD-ROM holding a local ISO
    ws.init()
    ws.apply()
    vmids = cluster_pve.call(lambda p: {vm.name: vm.vmid for vm in p.vms})
    cdroms = cluster_pve.call(lambda p: {vm.name: vm.config.get("ide2") for vm in p.vms})
    assert all(str(v).startswith("local:iso/") for v in cdroms.values()), cdroms

    ws.write(nodes, proxmox_nodes=HOSTS).synth()  # four VMs move to pve2 and pve3
    proc = rolling_apply(ws)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    moved = cluster_pve.call(lambda p: {vm.name: vm.node for vm in p.vms})
    moving = sorted(n for n, h in moved.items() if h != "pve1")
    assert moving == ["k8s-ctrl-1", "k8s-ctrl-2", "k8s-work-1", "k8s-work-2"]
    for name in moving:
        said = [
            ln for ln in proc.stdout.splitlines() if ln.startswith(f"rollout: {name}: ejecting local:iso/")
        ]
        assert len(said) == 1, proc.stdout
        assert said[0].endswith(
            f" from ide2 before the move from pve1 to {moved[name]} "
            "(the ISO datastore is each host's own; Talos boots from its disk)"
        ), said
    assert "migration aborted" not in proc.stdout + proc.stderr
    assert cluster_pve.call(lambda p: {vm.name: vm.vmid for vm in p.vms}) == vmids  # moved, not replaced
    after = cluster_pve.call(lambda p: {vm.name: vm.config.get("ide2") for vm in p.vms})
    assert {n: after[n] for n in moving} == {n: "none,media=cdrom" for n in moving}
    assert all(str(after[n]).startswith("local:iso/") for n in after if n not in moving)  # untouched
    migrations = cluster_pve.call(lambda p: sorted(t["id"] for t in p.tasklog if t["type"] == "qmigrate"))
    assert migrations == sorted(str(vmids[n]) for n in moving)
    assert ws.plan(name="settled.bin").exitcode == 0  # outputs up to date; the eject shows in no plan
    assert ws.outputs()["node_hosts"] == moved
