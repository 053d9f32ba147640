#!/usr/bin/env python3
"""Synthesis speed and memory: `python main.py` for 6, 100 and 500 nodes, `cdktf synth` for 6.

Wall time is the median of --runs runs. Peak RSS, sampled every 5 ms from /proc, is
given for the measured process itself and for its whole tree (with the node process
that jsii starts, or that the cdktf CLI is). Targets (2-core machine): 6 nodes <= 0.6 s, 500 nodes <= 2.0 s
and <= 150 MB. Run: .venv/bin/python bench/synth_bench.py [--runs 5] [--json]
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMATICS = [
    "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
]


def write_config(directory: Path, count: int) -> dict[str, str]:
    cluster = yaml.safe_load((ROOT / "examples" / "cluster.yaml").read_text())
    cluster["node_cidr"] = "10.0.0.0/16"
    nodes = [
        {
            "name": f"node-{i}",
            "address": f"10.0.{i // 250}.{i % 250 + 2}",
            "controller": i < 3,
            "disk": "/dev/sda",
            "mac_addr": f"bc:24:11:00:{i // 256:02x}:{i % 256:02x}",
            "schematic_id": SCHEMATICS[i % 2],
            "secureboot": i % 3 == 0,
        }
        for i in range(count)
    ]
    (directory / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    (directory / "nodes.yaml").write_text(yaml.safe_dump({"nodes": nodes}))
    return {
        **os.environ,
        "CLUSTER_CONFIG": str(directory / "cluster.yaml"),
        "NODES_CONFIG": str(directory / "nodes.yaml"),
        "CDKTF_OUTDIR": str(directory / "cdktf.out"),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CHECKPOINT_DISABLE": "1",
    }


def _tree_rss_kb(root: int) -> tuple[int, int]:
    """(RSS of `root` alone, RSS of `root` and all its descendants), in kB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip())
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return rss.get(root, 0), total


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB of the process itself, peak RSS MB of its process tree)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_own = peak_tree = 0
    deadline = start + 300
    while proc.poll() is None and time.perf_counter() < deadline:
        own, tree = _tree_rss_kb(proc.pid)
        peak_own, peak_tree = max(peak_own, own), max(peak_tree, tree)
        time.sleep(0.005)
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=30)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {err.decode()[-2000:]}")
    return wall, peak_own / 1024, peak_tree / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = []
    cases = [("python main.py", n) for n in (6, 100, 500)] + [("npx cdktf synth", 6)]
    for label, count in cases:
        with tempfile.TemporaryDirectory() as tmp:
            env = write_config(Path(tmp), count)
            if label == "python main.py":
                cmd = [sys.executable, str(ROOT / "main.py")]
            else:
                cmd = ["npx", "--no-install", "cdktf", "synth", "--output", str(Path(tmp) / "cli.out")]
            runs = [measure(cmd, env, ROOT) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        own, tree = max(r[1] for r in runs), max(r[2] for r in runs)
        results.append(
            {
                "command": label,
                "nodes": count,
                "median_s": round(wall, 3),
                "min_s": round(min(r[0] for r in runs), 3),
                "peak_rss_mb": round(own, 1),
                "peak_rss_tree_mb": round(tree, 1),
            }
        )
        if not args.json:
            print(
                f"{label:16} {count:4d} nodes: median {wall:6.3f} s  "
                f"(min {min(r[0] for r in runs):.3f} s)  peak RSS {own:6.1f} MB "
                f"(with node: {tree:6.1f} MB)",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
