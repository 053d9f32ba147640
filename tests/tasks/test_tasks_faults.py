"""Proxmox faults when the rolling apply reaches a VM, through the real `task`: a backup
holding the VM's lock, its host going offline, the cluster losing quorum, 5xx answers and
a dropped connection. Each stops at a safe point with one line naming the VM and the
cause, never leaves a second VM down, and a rerun completes once the fault is gone.

Faults start when the first worker comes back from its restart (a listener on fakepve's
power changes), so they meet the rollout between two VMs, or inside a step (an injected
500 on one VM's start)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import LOOPBACK_NET, HttpState
from tests.tasks.rollout_cluster import (
    CONTROLLERS,
    WORKERS,
    Cluster,
    most_down_at_once,
    ok,
    rollout_pve,
    stopped_intervals,
)
from workflow.rollout.resume import FILE

pytestmark = pytest.mark.e2e

ALL = (*WORKERS, *CONTROLLERS)
NEW_MEMORY = {n: 10240 for n in CONTROLLERS} | {n: 18432 for n in WORKERS}
FAST = ("--node-timeout", "20")


@pytest.fixture
def pve() -> Iterator[FakePveServer]:
    yield from rollout_pve()


@pytest.fixture
def cluster(tmp_path: Path, pve: FakePveServer, state: HttpState) -> Cluster:
    return Cluster(tmp_path, pve, state)


def when_back(pve: FakePveServer, name: str, fault: Callable[[Any], None]) -> None:
    """Run `fault(pve)` on the fake's loop when `name` is running again after a restart."""
    seen: list[str] = []

    def listener(vm: str, status: str) -> None:
        if vm != name:
            return
        seen.append(status)
        if status == "running" and "stopped" in seen and len(seen) == 2:
            fault(listener.pve)  # type: ignore[attr-defined]

    def add(p: Any) -> None:
        listener.pve = p  # type: ignore[attr-defined]
        p.power_listeners.append(listener)

    pve.call(add)


def at_request(pve: FakePveServer, method: str, path: str, count: int, fault: Callable[[Any], None]) -> None:
    """Run `fault(pve)` just before the `count`-th `method path` request is answered."""
    seen = [0]

    def add(p: Any) -> None:
        def listener(m: str, got: str) -> None:
            if m == method and got.endswith(path):
                seen[0] += 1
                if seen[0] == count:
                    fault(p)

        p.request_listeners.append(listener)

    pve.call(add)


def stop_line(proc: Any) -> str:
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


def apply(cluster: Cluster, *extra: str) -> Any:
    return cluster.ws.task("infra:apply", "--", *FAST, *extra)


def one_down_at_a_time(cluster: Cluster) -> None:
    assert most_down_at_once(stopped_intervals(cluster.power_log()), ALL) <= 1, cluster.power_log()


def test_a_backup_holding_the_next_vm_is_waited_out(cluster: Cluster, pve: FakePveServer) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    when_back(pve, "k8s-work-0", lambda p: asyncio.ensure_future(p.backup(8021, secs=12)))  # 3 s
    out = ok(apply(cluster)).stdout
    assert (
        "rollout: [2/6] k8s-work-1: a backup (vzdump) holds the VM (lock: backup): waiting for it to finish "
        "(0 s of at most 30 min 0 s)"
    ) in out
    assert "rollout: [2/6] k8s-work-1: the lock is gone after " in out
    assert "rollout: done: 6 nodes restarted" in out
    assert cluster.memory() == NEW_MEMORY
    one_down_at_a_time(cluster)


def test_a_backup_longer_than_the_lock_timeout_stops_before_the_vm(
    cluster: Cluster, pve: FakePveServer
) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    when_back(pve, "k8s-work-0", lambda p: asyncio.ensure_future(p.backup(8021, secs=3600)))
    stopped = apply(cluster, "--lock-timeout", "2")
    assert stopped.returncode != 0
    assert stop_line(stopped) == (
        "error: rollout stopped [2/6] k8s-work-1: a backup (vzdump) still holds k8s-work-1 (lock: backup) after "
        "2 s; nothing was applied to it; not restarted: k8s-work-1, k8s-work-2, k8s-ctrl-0, k8s-ctrl-1, "
        "k8s-ctrl-2; run the task again to resume once it has finished (or give it longer with --lock-timeout)"
    )
    assert cluster.memory()["k8s-work-1"] == 16384 and cluster.memory()["k8s-work-0"] == 18432
    assert sorted(stopped_intervals(cluster.power_log())) == ["k8s-work-0"]
    pve.call(lambda p: p.unlock(8021))  # the backup finished
    again = ok(apply(cluster))
    assert "already applied; healthy" in again.stdout and cluster.memory() == NEW_MEMORY
    one_down_at_a_time(cluster)


@pytest.mark.parametrize(
    ("fault", "undo", "why", "todo"),
    [
        (
            lambda p: p.set_node_offline("pve2"),
            lambda p: p.set_node_offline("pve2", False),
            "its host pve2 is offline",
            "run the task again to resume once the host is back online",
        ),
        (
            lambda p: p.lose_quorum(),
            lambda p: p.regain_quorum(),
            "the Proxmox cluster has no quorum (its configuration is read-only)",
            "run the task again to resume once `pvecm status` shows the cluster quorate",
        ),
    ],
    ids=["host-offline", "quorum-lost"],
)
def test_a_host_offline_or_no_quorum_stops_before_the_next_vm(
    tmp_path: Path, pve: FakePveServer, state: HttpState, fault: Any, undo: Any, why: str, todo: str
) -> None:
    # Two hosts: the workers alternate pve1, pve2, pve1; the fault comes after k8s-work-0's step.
    pve.call(lambda p: p.add_host("pve2"))
    cluster = Cluster(
        tmp_path, pve, state, proxmox_nodes=["pve1", "pve2"], proxmox_vm_advanced={"qemu_agent": True}
    )
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    # The cluster's status is read by the apply's preflight, then before each step: the
    # third read is the check before k8s-work-1.
    at_request(pve, "GET", "/cluster/status", 3, fault)
    stopped = apply(cluster)
    assert stopped.returncode != 0
    assert stop_line(stopped) == (
        f"error: rollout stopped [2/6] k8s-work-1: {why}; nothing was applied to it; not restarted: k8s-work-1, "
        f"k8s-work-2, k8s-ctrl-0, k8s-ctrl-1, k8s-ctrl-2; {todo}"
    )
    assert sorted(stopped_intervals(cluster.power_log())) == ["k8s-work-0"]
    pve.call(undo)
    ok(apply(cluster))
    assert cluster.memory() == NEW_MEMORY
    one_down_at_a_time(cluster)


def test_a_500_inside_a_step_stops_with_the_vm_named_and_a_rerun_starts_it(
    cluster: Cluster, pve: FakePveServer
) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    pve.call(
        lambda p: p.fail("POST", "/nodes/pve1/qemu/8021/status/start", 500, "start failed: out of memory")
    )
    stopped = apply(cluster)
    assert stopped.returncode != 0
    line = stop_line(stopped)
    log = cluster.ws.stack_dir / "rollout-step.log"
    assert line == (
        "error: rollout stopped [2/6] k8s-work-1: the Proxmox API answered HTTP 500 (start failed: out of "
        f"memory) while applying [2/6] k8s-work-1; k8s-work-1 is stopped (tofu's output: {log}); not restarted: "
        "k8s-work-2, k8s-ctrl-0, k8s-ctrl-1, k8s-ctrl-2; run the task again to resume once the Proxmox API "
        "answers again"
    )
    assert "start failed: out of memory" in log.read_text()
    resume = json.loads((cluster.ws.stack_dir / FILE).read_text())
    assert [(n["name"], n["apply_interrupted"]) for n in resume["nodes"]] == [("k8s-work-1", True)]
    one_down_at_a_time(cluster)
    assert sorted(stopped_intervals(cluster.power_log())) == ["k8s-work-0", "k8s-work-1"]

    pve.call(lambda p: p.failures.clear())
    again = ok(apply(cluster))
    assert "rollout: k8s-work-1: starting it (an interrupted step left it stopped)" in again.stdout
    assert cluster.memory() == NEW_MEMORY
    assert pve.call(lambda p: {vm.name: vm.status for vm in p.vms}) == dict.fromkeys(ALL, "running")
    assert not (cluster.ws.stack_dir / FILE).exists()
    one_down_at_a_time(cluster)


def test_a_500_on_the_shutdown_leaves_the_change_pending_and_a_rerun_restarts_it(
    cluster: Cluster, pve: FakePveServer
) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))

    def fail(p: Any) -> None:
        for action in ("shutdown", "reboot", "stop"):
            p.fail("POST", f"/nodes/pve1/qemu/8021/status/{action}", 503, "proxy: upstream unavailable")

    pve.call(fail)
    stopped = apply(cluster)
    assert (
        "the Proxmox API answered HTTP 503 (proxy: upstream unavailable) while applying [2/6] k8s-work-1; k8s-work-1 is running"
        in stop_line(stopped)
    )
    assert pve.call(lambda p: dict(p.vm(8021).pending)).get("memory") == "18432"
    pve.call(lambda p: p.failures.clear())
    again = ok(apply(cluster))
    assert (
        "rollout: k8s-work-1: restarting it to apply its pending balloon, memory (an interrupted step left them pending)"
        in again.stdout
    )
    assert cluster.memory() == NEW_MEMORY
    one_down_at_a_time(cluster)


def test_a_dropped_connection_inside_a_step_stops_and_a_rerun_finishes(
    cluster: Cluster, pve: FakePveServer
) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    # Every connection drops from the moment k8s-work-0 runs again, while the provider
    # still waits for its guest agent.
    when_back(pve, "k8s-work-0", lambda p: p.flaky_network(drop_rate=1.0))
    stopped = apply(cluster)
    log = cluster.ws.stack_dir / "rollout-step.log"
    assert stop_line(stopped) == (
        "error: rollout stopped [1/6] k8s-work-0: the connection to the Proxmox API dropped while applying "
        f"[1/6] k8s-work-0; k8s-work-0's state could not be read (tofu's output: {log}); not restarted: "
        "k8s-work-1, k8s-work-2, k8s-ctrl-0, k8s-ctrl-1, k8s-ctrl-2; run the task again to resume once the "
        "Proxmox API answers again"
    )
    pve.call(lambda p: p.flaky_network(drop_rate=0.0))
    again = ok(apply(cluster))
    assert (
        "rollout: checking k8s-work-0 first (restarted by an earlier run, not yet seen healthy)"
        in again.stdout
    )
    assert cluster.memory() == NEW_MEMORY
    one_down_at_a_time(cluster)


def test_a_change_applied_at_once_waits_for_a_backup_first(cluster: Cluster, pve: FakePveServer) -> None:
    cluster.write(proxmox_vm_advanced={"tags": ["kubernetes", "linux", "talos", "prod"]})  # live: no restart
    ok(cluster.ws.task("infra:plan"))
    pve.run(lambda p: p.backup(8020, secs=3600))
    # The backup ends when the rollout has seen it twice (its lock check polls the VM).
    at_request(pve, "GET", "/nodes/pve1/qemu/8020/status/current", 2, lambda p: p.unlock(8020))
    out = ok(cluster.ws.task("infra:apply")).stdout
    assert (
        "rollout: before the apply: k8s-work-0: a backup (vzdump) holds the VM (lock: backup): waiting for it "
        "to finish (0 s of at most 30 min 0 s)"
    ) in out
    assert "rollout: before the apply: k8s-work-0: the lock is gone after " in out
    assert "0 added, 6 changed, 0 destroyed" in out
    assert cluster.power_log() == []


def test_a_resume_file_written_by_the_previous_release_still_resumes(cluster: Cluster) -> None:
    # As commit 35fba88 wrote it (tests/fixtures/rollout-state-v1.json), for this run's node.
    fixture = json.loads((Path(__file__).parents[1] / "fixtures" / "rollout-state-v1.json").read_text())
    fixture["restarted_not_yet_healthy"][0]["address"] = f"{LOOPBACK_NET}.20"
    fixture["restarted_not_yet_healthy"][0]["boot_id"] = None
    (cluster.ws.stack_dir / FILE).write_text(json.dumps(fixture, indent=1) + "\n")
    ok(cluster.ws.task("infra:plan"))
    out = ok(cluster.ws.task("infra:apply")).stdout
    assert "rollout: checking k8s-work-0 first (restarted by an earlier run, not yet seen healthy)" in out
    assert "rollout: k8s-work-0: healthy" in out
    assert not (cluster.ws.stack_dir / FILE).exists()
