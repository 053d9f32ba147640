"""Helpers for the synthesis tests: write a cluster.yaml / nodes.yaml pair and synthesize it.

Imported as `tests.support` (a unique name: several test folders have a conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflow.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

SCHEMATIC_A = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
SCHEMATIC_B = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"


def child_pids(pid: int) -> list[int]:
    """The running children of a process, started by any of its threads (from /proc);
    none once it has exited."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # exited
    found = []
    for thread in threads:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def descendant_pids(pid: int) -> list[int]:
    """Children, their children and so on (a process tree walked once, from /proc)."""
    found, todo = [], child_pids(pid)
    while todo:
        found.append(todo.pop())
        todo.extend(child_pids(found[-1]))
    return found


def node_pids(pids: list[int]) -> list[int]:
    """Those of `pids` that run node (jsii's), not a process between fork and exec."""
    found = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "node":
                found.append(pid)
        except OSError:
            continue  # exited meanwhile
    return found


def node(name: str, n: int, /, controller: bool = True, **extra: Any) -> dict[str, Any]:
    """A valid node entry; `n` makes its address and MAC unique."""
    return {
        "name": name,
        "address": f"10.10.0.{10 + n}",
        "controller": controller,
        "disk": "/dev/sda",
        "mac_addr": f"bc:24:11:00:00:{10 + n:02x}",
        "schematic_id": SCHEMATIC_A,
        **extra,
    }


BASE_CLUSTER: dict[str, Any] = {
    "node_cidr": "10.10.0.0/24",
    "cluster_api_addr": "10.10.0.100",
    "cluster_pod_cidr": "10.42.0.0/16",
    "cluster_svc_cidr": "10.43.0.0/16",
    "proxmox_api_url": "https://pve.example.com:8006/api2/json",
    "proxmox_node": "pve1",
}


@dataclass
class ConfigDir:
    """A folder with cluster.yaml, nodes.yaml and cdktf.out, at the product's default names
    (workflow.workspace.Workspace.in_dir), for main.py."""

    root: Path

    @property
    def paths(self) -> Workspace:
        return Workspace.in_dir(self.root)

    @property
    def cluster(self) -> Path:
        return self.paths.cluster

    @property
    def nodes(self) -> Path:
        return self.paths.nodes

    @property
    def outdir(self) -> Path:
        return self.paths.outdir

    def write(self, cluster: dict[str, Any] | str, nodes: dict[str, Any] | list | str) -> ConfigDir:
        if isinstance(nodes, list):
            nodes = {"nodes": nodes}
        for path, content in ((self.cluster, cluster), (self.nodes, nodes)):
            text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
            path.write_text(text)
        return self

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.paths.env_vars()}

    def run_main(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "main.py")],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def synth(self, name: str = "proxmox") -> dict[str, Any]:
        """Synthesize in this process (jsii stays warm) and return the stack's JSON."""
        from config import ConfigPaths, load_config
        from main import synthesize

        result = load_config(ConfigPaths(self.cluster, self.nodes))
        out = synthesize(result.config, str(self.outdir))
        assert out == self.outdir / "stacks" / name / "cdk.tf.json"
        return json.loads(out.read_text())
