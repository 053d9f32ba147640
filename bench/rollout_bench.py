#!/usr/bin/env python3
"""Time the 3 + 3 memory change: one `tofu apply` (all at once), the rolling apply without
the cluster check, and the rolling apply that sees the cluster (drain, Node checks).

    .venv/bin/python bench/rollout_bench.py [--runs 3] [--boot-secs 2] [--time-scale 0.25]

Each run starts a fresh fakepve (VMs take --boot-secs simulated seconds to shut down and
again to start, times --time-scale in real time) and a local state, creates the example
cluster (3 controllers, 3 workers; every node from the role defaults), raises the memory
of both roles, and applies it either with `python -m workflow apply-auto --yes` (the
rolling apply) or with `tofu apply`. With the cluster check, a real Kubernetes control
plane (devenv/kube: etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and
simulated kubelets hold one Node per VM (Ready with a new bootID --ready-delay seconds
after its VM starts) and a 6-pod ReplicaSet with a PodDisruptionBudget on the workers,
and the rollout finds the kubeconfig beside cluster.yaml. The kinds alternate run by run
(interleaved), so all see the same load; reported are the medians, every run and the
load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.fakepve import FakePveServer  # noqa: E402
from devenv.kube import KubeControlPlane, SimulatedKubelets  # noqa: E402
from devenv.workspace import TofuWorkspace, loopback_cluster, loopback_nodes, prepare_rollout_fake  # noqa: E402
from workflow.setup_tools import Tools, ensure_tools  # noqa: E402

MORE_MEMORY = {
    "proxmox_vm_controller_defaults": {"cores": 4, "memory": 10240, "disk_size": 64},
    "proxmox_vm_worker_defaults": {"cores": 8, "memory": 18432, "disk_size": 256},
}


def write(ws: TofuWorkspace, pve: FakePveServer, **overrides: Any) -> None:
    cluster = loopback_cluster(pve.url, **overrides)
    ws.cluster_path.write_text(yaml.safe_dump(cluster, sort_keys=False))
    ws.nodes_path.write_text(yaml.safe_dump({"nodes": loopback_nodes()}, sort_keys=False))


KINDS = ("one_go", "rolling", "rolling_cluster")
ROLES = {n["name"]: "controller" if n["controller"] else "worker" for n in loopback_nodes()}


def clean(kube: KubeControlPlane) -> None:
    for path in (
        "/api/v1/nodes",
        "/apis/apps/v1/namespaces/default/replicasets",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        "/api/v1/namespaces/default/pods?gracePeriodSeconds=0",
    ):
        kube.request("DELETE", path)


def one_run(
    tmp: Path,
    tools: Tools,
    kind: str,
    boot_secs: float,
    scale: float,
    kube: KubeControlPlane,
    ready_delay: float,
) -> float:
    with FakePveServer(time_scale=scale) as pve:
        pve.wait_ready()
        prepare_rollout_fake(pve, boot_secs)
        ws = TofuWorkspace(tmp, tools, pve)
        ws.root.mkdir(parents=True, exist_ok=True)
        write(ws, pve)
        ws.synth()
        ws.init()
        ws.apply()
        write(ws, pve, **MORE_MEMORY)
        ws.synth()
        if kind == "one_go":
            return ws.apply().seconds
        if kind == "rolling":
            return rolling_apply(ws)
        clean(kube)
        with SimulatedKubelets(kube, pve, ROLES, ready_delay=ready_delay, poll=0.05) as kubelets:
            kube.write_kubeconfig(ws.cluster_path.parent / "kubeconfig")
            kubelets.wait(lambda: len(kubelets.boot_ids()) == len(ROLES), 30, "every Node Ready")
            kubelets.deploy("web", 6, max_unavailable=1)
            seconds = rolling_apply(ws, cluster=True)
            if kubelets.pdb_violations:
                raise SystemExit(f"a disruption budget was violated: {kubelets.pdb_violations}")
            return seconds


def rolling_apply(ws: TofuWorkspace, cluster: bool = False) -> float:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "workflow", "apply-auto", "--yes", "--node-timeout", "60"],
        cwd=ROOT,
        env=ws.workflow_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - started
    seen = "rollout: the cluster is in view" in proc.stdout
    if proc.returncode != 0 or "rollout: done: 6 nodes" not in proc.stdout or seen != cluster:
        raise SystemExit(f"rolling apply failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--boot-secs", type=float, default=2.0)
    parser.add_argument("--time-scale", type=float, default=0.25)
    parser.add_argument("--ready-delay", type=float, default=0.5, help="seconds from VM start to Node Ready")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tools = ensure_tools()
    runs: dict[str, list[float]] = {kind: [] for kind in KINDS}
    loads = [os.getloadavg()[0]]
    with (
        tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp,
        KubeControlPlane(Path(tmp) / "kube") as kube,
    ):
        for i in range(args.runs):
            for kind in KINDS:  # interleaved
                where = Path(tmp) / f"{kind}-{i}"
                runs[kind].append(
                    one_run(where, tools, kind, args.boot_secs, args.time_scale, kube, args.ready_delay)
                )
                loads.append(os.getloadavg()[0])
    result = {
        "boot_secs": args.boot_secs,
        "time_scale": args.time_scale,
        "real_seconds_per_shutdown_or_start": args.boot_secs * args.time_scale,
        "node_ready_delay": args.ready_delay,
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in runs.items()},
        "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "load_1min": [round(x, 2) for x in loads],
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        each = result["real_seconds_per_shutdown_or_start"]
        print(f"3 + 3 memory change, VM shutdown and start {each:g} s each")
        labels = ("tofu apply (all at once)", "rolling apply, no cluster", "rolling apply, cluster check")
        for kind, label in zip(KINDS, labels, strict=True):
            print(
                f"  {label:<30} median {result['median_seconds'][kind]:6.2f} s   runs {result['runs'][kind]}"
            )
        print(f"  load average (1 min) during the runs: {result['load_1min']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
