"""A 3 + 3 cluster applied through `task` against a fakepve whose VMs take time to restart,
for the rolling apply's task tests (test_tasks_rollout.py, test_tasks_cluster.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from devenv.fakepve import FakePveServer
from devenv.workspace import HttpState, loopback_cluster, loopback_nodes, prepare_rollout_fake
from tests.tasks.taskrun import TaskWorkspace

BOOT_SECS = 2.0  # simulated seconds of each shutdown and start
TIME_SCALE = 0.25  # -> 0.5 s of real time each: long enough for parallel stops to overlap
CONTROLLERS = ("k8s-ctrl-0", "k8s-ctrl-1", "k8s-ctrl-2")
WORKERS = ("k8s-work-0", "k8s-work-1", "k8s-work-2")
MORE_MEMORY = {
    "proxmox_vm_controller_defaults": {"cores": 4, "memory": 10240, "disk_size": 64},
    "proxmox_vm_worker_defaults": {"cores": 8, "memory": 18432, "disk_size": 256},
}


def rollout_pve() -> Iterator[FakePveServer]:
    """The body of a `pve` fixture: fakepve with slow restarts and fake Talos APIs."""
    with FakePveServer(time_scale=TIME_SCALE) as server:
        server.wait_ready()
        prepare_rollout_fake(server, BOOT_SECS)
        yield server
        # Another run on this machine holding the same loopback addresses, not our bug:
        # said here, rather than as a node that never came back.
        assert server.call(lambda p: list(p.talos_errors)) == []


Interval = tuple[float, float]


def stopped_intervals(log: list[tuple[float, int, str, str]]) -> dict[str, list[Interval]]:
    """name -> [(stopped at, running again at)] from the fake's power log."""
    out: dict[str, list[Interval]] = {}
    down: dict[str, float] = {}
    for at, _vmid, name, status in log:
        if status != "running":
            down.setdefault(name, at)
        elif name in down:
            out.setdefault(name, []).append((down.pop(name), at))
    for name, at in down.items():
        out.setdefault(name, []).append((at, float("inf")))
    return out


def overlapping(intervals: dict[str, list[Interval]], names: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for s1, e1 in intervals.get(a, []):
                for s2, e2 in intervals.get(b, []):
                    if s1 < e2 and s2 < e1:
                        pairs.append((a, b))
    return pairs


def most_down_at_once(intervals: dict[str, list[Interval]], names: tuple[str, ...]) -> int:
    events = sorted((t, d) for n in names for s, e in intervals.get(n, []) for t, d in ((s, 1), (e, -1)))
    most = down = 0
    for _t, delta in events:
        down += delta
        most = max(most, down)
    return most


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-4000:]
    return proc


class Cluster:
    """A 3 + 3 cluster applied through `task`, its config (and node list) editable."""

    def __init__(self, root: Path, pve: FakePveServer, state: HttpState, **cluster: Any) -> None:
        self.ws = TaskWorkspace(root)
        self.pve = pve
        self.state = state
        self.cluster = cluster  # cluster.yaml keys every write() keeps (proxmox_nodes, ...)
        self.nodes = loopback_nodes()
        self.write()
        ok(self.ws.task("configure"))
        ok(self.ws.task("infra:plan"))
        ok(self.ws.task("infra:apply"))
        assert self.memory() == {n: 8192 for n in CONTROLLERS} | {n: 16384 for n in WORKERS}
        pve.call(lambda p: p.power_log.clear())

    def write(self, **overrides: Any) -> None:
        cluster = loopback_cluster(
            self.pve.url,
            tfstate_url=self.state.url,
            tfstate_username=self.state.username,
            tfstate_password=self.state.password,
            proxmox_api_token_id=self.pve.token_id,
            proxmox_api_token_secret=self.pve.token_secret,
            **{**self.cluster, **overrides},
        )
        self.ws.cluster.write_text(yaml.safe_dump(cluster, sort_keys=False))
        self.ws.nodes.write_text(yaml.safe_dump({"nodes": self.nodes}, sort_keys=False))

    def more_memory(self, controllers: bool = True) -> None:
        """+2 GiB on every node (or on the workers only)."""
        roles = (
            MORE_MEMORY
            if controllers
            else {"proxmox_vm_worker_defaults": MORE_MEMORY["proxmox_vm_worker_defaults"]}
        )
        self.write(**roles)

    def memory(self) -> dict[str, int]:
        return self.pve.call(lambda p: {vm.name: int(vm.config["memory"]) for vm in p.vms})

    def power_log(self) -> list[tuple[float, int, str, str]]:
        return self.pve.call(lambda p: list(p.power_log))
