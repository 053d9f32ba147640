"""Faults fakepve injects while tofu runs: a locked VM, a slow shutdown, dropped
connections. Each run fails with a clear error or rides it out; the state stays
consistent with Proxmox; a rerun converges to a plan with no changes."""

from __future__ import annotations

import json

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import TofuWorkspace, example_nodes
from e2e.conftest import WorkspaceFactory

pytestmark = pytest.mark.e2e

WORKER_0 = 8020
WORKER_1 = 8021


def applied(make_workspace: WorkspaceFactory, server: FakePveServer) -> TofuWorkspace:
    ws = make_workspace(server)
    ws.write().synth()
    ws.init()
    ws.apply()
    return ws


def assert_state_matches_proxmox(ws: TofuWorkspace, server: FakePveServer) -> None:
    """Every VM in the state (tainted ones included) exists in fakepve and the other way
    round: nothing orphaned on either side."""
    state = json.loads(ws.tofu("show", "-json").stdout).get("values") or {}
    resources = state.get("root_module", {}).get("resources", [])
    in_state = sorted(
        r["values"]["vm_id"] for r in resources if r["type"] == "proxmox_virtual_environment_vm"
    )
    assert in_state == server.call(lambda p: sorted(vm.vmid for vm in p.vms))


def test_locked_vm_fails_clearly_then_converges(
    make_workspace: WorkspaceFactory, server: FakePveServer
) -> None:
    ws = applied(make_workspace, server)
    nodes = example_nodes()
    nodes[3]["vm_memory"] = 20480  # k8s-work-0: an in-place update
    ws.write(nodes).synth()
    server.call(lambda p: p.snapshot_lock(WORKER_0, "backup"))  # a vzdump holds the VM

    failed = ws.apply(ok=(1,))
    assert "VM is locked (backup)" in failed.output
    assert_state_matches_proxmox(ws, server)
    assert server.call(lambda p: str(p.vm(WORKER_0).config["memory"])) == "16384"
    assert ws.plan(name="locked.bin").addresses("update") == [
        "proxmox_virtual_environment_vm.talos_node_k8s_work_0"
    ]

    server.call(lambda p: p.unlock(WORKER_0))  # the backup finished
    ws.apply()
    assert (
        server.call(lambda p: str(p.vm(WORKER_0).pending.get("memory") or p.vm(WORKER_0).config["memory"]))
        == "20480"
    )
    assert ws.plan(name="after.bin").exitcode == 0


def test_slow_shutdown_is_waited_for(make_workspace: WorkspaceFactory, server: FakePveServer) -> None:
    ws = applied(make_workspace, server)
    server.call(lambda p: setattr(p, "time_scale", 0.02))  # 1 PVE second = 20 ms
    # The guest takes 100 PVE seconds (2 s here) to power off after the ACPI request.
    server.call(lambda p: setattr(p.vm(WORKER_1), "shutdown_secs", 100))
    ws.write([n for n in example_nodes() if n["name"] != "k8s-work-1"]).synth()
    result = ws.apply()
    assert result.seconds >= 2.0
    shutdowns = server.call(lambda p: [t for t in p.tasklog if t["type"] == "qmshutdown"])
    assert [(t["id"], t["exitstatus"]) for t in shutdowns] == [(str(WORKER_1), "OK")]
    assert server.call(lambda p: p.vm(WORKER_1)) is None
    assert_state_matches_proxmox(ws, server)
    assert ws.plan(name="after.bin").exitcode == 0


def test_dropped_connections_fail_clearly_or_retry_then_converge(
    make_workspace: WorkspaceFactory, server: FakePveServer
) -> None:
    ws = make_workspace(server)
    ws.write().synth()
    ws.init()
    # A quarter of all requests lose their connection before fakepve handles them.
    server.call(lambda p: p.flaky_network(drop_rate=0.25, seed=3))
    first = ws.apply(ok=(0, 1))
    if first.returncode:
        # The provider names the request that failed and why (the connection closed).
        text = " ".join(first.output.split())  # tofu wraps long lines
        assert "failed to perform HTTP" in text and '": EOF' in text, first.output[-3000:]
    server.call(lambda p: p.flaky_network(drop_rate=0.0))
    assert_state_matches_proxmox(ws, server)
    ws.apply()
    assert_state_matches_proxmox(ws, server)
    assert server.call(lambda p: sorted(vm.vmid for vm in p.vms)) == [8010, 8011, 8012, 8020, 8021, 8022]
    assert ws.plan(name="after.bin").exitcode == 0
