"""The rolling apply through `task`, against fakepve with reboots that take time.

Nodes get loopback addresses (a /24 of 127.0.0.0/8 chosen per run) so the health check's Talos probe reaches the
harness's fake Talos API (a listening socket per running VM) and nothing else. Every VM's
power state is recorded by the fake (`power_log`); the assertions read it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.fakepve import FakePveServer
from devenv.workspace import LOOPBACK_NET as NET
from devenv.workspace import HttpState, TofuWorkspace, loopback_cluster, loopback_nodes
from tests.tasks.rollout_cluster import (
    CONTROLLERS,
    WORKERS,
    Cluster,
    most_down_at_once,
    ok,
    overlapping,
    rollout_pve,
    stopped_intervals,
)
from workflow.setup_tools import ensure_tools

pytestmark = pytest.mark.e2e


@pytest.fixture
def pve() -> Iterator[FakePveServer]:
    yield from rollout_pve()


@pytest.fixture
def cluster(tmp_path: Path, pve: FakePveServer, state: HttpState) -> Cluster:
    return Cluster(tmp_path, pve, state)


def test_memory_change_restarts_workers_first_then_one_controller_at_a_time(cluster: Cluster) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    out = ok(cluster.ws.task("infra:apply", "--", "--node-timeout", "30")).stdout

    order = re.findall(r"rollout:\s+\d+\. (\S+)\s+(worker|controller)\s+update: memory", out)
    assert [n for n, _ in order] == [*WORKERS, *CONTROLLERS], out
    assert "rollout: done: 6 nodes restarted" in out
    assert cluster.memory() == {n: 10240 for n in CONTROLLERS} | {n: 18432 for n in WORKERS}
    intervals = stopped_intervals(cluster.power_log())
    assert sorted(intervals) == sorted([*WORKERS, *CONTROLLERS])
    assert all(len(v) == 1 for v in intervals.values()), intervals  # each restarted once
    assert overlapping(intervals, CONTROLLERS) == [], intervals
    assert overlapping(intervals, WORKERS) == [], intervals  # --parallel 1
    last_worker_up = max(intervals[w][0][1] for w in WORKERS)
    assert last_worker_up <= min(intervals[c][0][0] for c in CONTROLLERS)
    again = cluster.ws.task("infra:plan", "--", "-detailed-exitcode")
    assert again.returncode == 0, again.stdout[-3000:]


def test_plain_tofu_apply_stops_controllers_together(tmp_path: Path, pve: FakePveServer) -> None:
    """The risk the rolling apply avoids, measured with the same recording: tofu alone
    restarts VMs in parallel (so the assertion above can fail)."""
    ws = TofuWorkspace(tmp_path / "plain", ensure_tools(), pve)
    ws.cluster_path.parent.mkdir(parents=True, exist_ok=True)
    ws.cluster_path.write_text(yaml.safe_dump(loopback_cluster(pve.url), sort_keys=False))
    ws.nodes_path.write_text(yaml.safe_dump({"nodes": loopback_nodes()}, sort_keys=False))
    ws.synth()
    ws.init()
    ws.apply()
    pve.call(lambda p: p.power_log.clear())
    ws.cluster_path.write_text(
        yaml.safe_dump(
            loopback_cluster(
                pve.url, proxmox_vm_controller_defaults={"cores": 4, "memory": 10240, "disk_size": 64}
            ),
            sort_keys=False,
        )
    )
    ws.synth()
    ws.apply()
    intervals = stopped_intervals(pve.call(lambda p: list(p.power_log)))
    assert len(overlapping(intervals, CONTROLLERS)) == 3, intervals  # all three at once


def test_node_that_does_not_come_back_stops_the_rollout_and_a_second_run_finishes(cluster: Cluster) -> None:
    cluster.pve.call(lambda p: p.set_talos_down("k8s-ctrl-1", True))
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))
    stopped = cluster.ws.task("infra:apply", "--", "--node-timeout", "3")
    assert stopped.returncode != 0, stopped.stdout[-3000:] + stopped.stderr[-3000:]  # task: 201
    errors = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: rollout stopped [5/6]: k8s-ctrl-1 did not come back within 3 s: the Talos API "
        f"{NET}.11:50000 did not answer (Connection refused); not restarted: k8s-ctrl-2; "
        "run the task again to resume once it is back"
    ], stopped.stderr
    memory = cluster.memory()
    assert memory["k8s-ctrl-1"] == 10240  # applied and restarted, not back
    assert memory["k8s-ctrl-2"] == 8192  # untouched

    first = stopped_intervals(cluster.power_log())
    assert sorted(first) == sorted([*WORKERS, "k8s-ctrl-0", "k8s-ctrl-1"])

    still = cluster.ws.task("infra:apply", "--", "--node-timeout", "2")  # not back yet: stops first
    assert still.returncode != 0 and "k8s-ctrl-1 did not come back" in still.stderr, still.stderr
    assert "checking k8s-ctrl-1 first" in still.stdout
    assert stopped_intervals(cluster.power_log()) == first  # nothing else restarted

    cluster.pve.call(lambda p: p.set_talos_down("k8s-ctrl-1", False))
    resumed = ok(cluster.ws.task("infra:apply", "--", "--node-timeout", "30"))
    assert "k8s-ctrl-1: healthy" in resumed.stdout
    after = stopped_intervals(cluster.power_log())
    assert {n: v for n, v in after.items() if n != "k8s-ctrl-2"} == first  # none restarted twice
    assert len(after["k8s-ctrl-2"]) == 1
    assert cluster.memory() == {n: 10240 for n in CONTROLLERS} | {n: 18432 for n in WORKERS}
    assert not (cluster.ws.stack_dir / "rollout-state.json").exists()


def test_a_tag_only_change_applies_in_one_go(cluster: Cluster) -> None:
    cluster.write(proxmox_vm_advanced={"tags": ["kubernetes", "linux", "talos", "prod"]})
    ok(cluster.ws.task("infra:plan"))
    out = ok(cluster.ws.task("infra:apply"))
    assert "rollout:" not in out.stdout + out.stderr  # nothing new printed
    assert "0 added, 6 changed, 0 destroyed" in out.stdout
    assert cluster.power_log() == []  # no VM stopped
    tags = cluster.pve.call(lambda p: {vm.name: vm.config.get("tags") for vm in p.vms})
    assert all("prod" in str(t) for t in tags.values()), tags


def test_apply_auto_restarts_workers_two_at_a_time_with_parallel_2(cluster: Cluster) -> None:
    cluster.more_memory()
    out = ok(
        cluster.ws.task("infra:apply-auto", "--", "--yes", "--parallel", "2", "--node-timeout", "30")
    ).stdout
    assert "workers first (2 workers at a time)" in out
    assert "[1-2/6] k8s-work-0, k8s-work-1: applying" in out and "[3/6] k8s-work-2: applying" in out
    intervals = stopped_intervals(cluster.power_log())
    assert sorted(intervals) == sorted([*WORKERS, *CONTROLLERS])
    assert most_down_at_once(intervals, WORKERS) == 2  # the first group went down together
    assert most_down_at_once(intervals, CONTROLLERS) == 1
    assert most_down_at_once(intervals, (*WORKERS, *CONTROLLERS)) == 2
    assert cluster.memory() == {n: 10240 for n in CONTROLLERS} | {n: 18432 for n in WORKERS}
    assert not (cluster.ws.stack_dir / "tfplan-auto").exists()


def test_a_step_that_no_longer_matches_the_reviewed_plan_is_refused(cluster: Cluster) -> None:
    cluster.more_memory()
    ok(cluster.ws.task("infra:plan"))

    def drift(p: Any) -> None:  # someone changed k8s-work-0 in Proxmox after the review
        next(vm for vm in p.vms if vm.name == "k8s-work-0").config["cores"] = 2

    cluster.pve.call(drift)
    refused = cluster.ws.task("infra:apply")
    assert refused.returncode != 0
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, refused.stderr
    assert errors[0].startswith(
        "error: [1/6] k8s-work-0: the plan now differs from the reviewed plan "
        "(proxmox_virtual_environment_vm.talos_node_k8s_work_0: cpu[0].cores reviewed None, now 8)"
    ), errors
    assert "run `task infra:plan` again" in errors[0]
    assert cluster.power_log() == []  # nothing restarted
    assert cluster.memory() == {n: 8192 for n in CONTROLLERS} | {n: 16384 for n in WORKERS}
