#!/usr/bin/env python3
"""Time the preflight (`python -m workflow preflight`) at 6 and at 100 nodes.

    .venv/bin/python bench/preflight_bench.py [--rounds 5] [--sizes 6,100] [--json]

One fakepve (time scale 0; the documented role's token) holds every stack: each size is
a stack of its own (its own state, vm_ids and MACs), so each sees the others' VMs as
strangers, as on a shared Proxmox. Measured twice per stack, in rounds that alternate
the sizes: before the first apply (every vm_id still to create, so each is confirmed
free) and after it (every VM in the state, its live config read for the ownership and MAC
checks). Reported per size: the median of the preflight's own time (its summary line)
and of the whole command (Python's start, the config, `tofu state pull`, the checks),
and of `tofu state pull` alone, with the load average before and after.
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.fakepve import FakePveServer  # noqa: E402
from devenv.state_server import StateServer  # noqa: E402
from devenv.workspace import TofuWorkspace, example_nodes  # noqa: E402
from workflow.setup_tools import ensure_tools  # noqa: E402


def nodes_for(count: int, stack: int) -> list[dict[str, Any]]:
    """`count` nodes (3 controllers, the rest workers) with the example's images, ids
    8000 + 200 * stack + i and MACs of their own."""
    example = example_nodes()
    out = []
    for i in range(count):
        node = dict(example[0 if i < 3 else 3])
        node.update(
            name=f"s{stack}-node-{i}",
            address=f"10.{stack}.{i // 200}.{i % 200 + 10}",
            controller=i < 3,
            vm_id=8000 + 200 * stack + i,
            mac_addr=f"bc:24:11:{stack:02x}:{i // 256:02x}:{i % 256:02x}",
        )
        node.pop("vm_memory", None)
        out.append(node)
    return out


def preflight(ws: TofuWorkspace) -> tuple[float, float]:
    """(the checks' own seconds, the command's wall seconds)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "workflow", "preflight", "--json"],
        cwd=ROOT,
        env=ws.workflow_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.monotonic() - started
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {}
    if proc.returncode != 0 or not report.get("ok"):
        raise SystemExit(f"preflight failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return float(report["seconds"]), wall


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="6,100", help="node counts, comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tools = ensure_tools()
    results: dict[str, dict[int, dict[str, list[float]]]] = {}
    load = {"before": loadavg()}
    with tempfile.TemporaryDirectory(prefix="preflight-bench-") as tmp, ExitStack() as stack:
        pve = FakePveServer()
        stack.callback(pve.stop)
        server = StateServer(Path(tmp) / "tfstate")
        stack.callback(server.stop)
        state = server.start()
        spaces = {}
        for index, size in enumerate(sizes):
            ws = TofuWorkspace(Path(tmp) / f"n{size}", tools, pve, state=state, state_name=f"bench{size}")
            net = f"10.{index + 1}"
            ws.write(
                nodes_for(size, index + 1),
                node_cidr=f"{net}.0.0/16",
                node_default_gateway=f"{net}.0.1",
                cluster_api_addr=f"{net}.0.5",
            )
            ws.synth()
            ws.init()
            spaces[size] = ws
        for phase in ("to create", "applied"):
            if phase == "applied":
                for ws in spaces.values():
                    ws.apply()
            per_size = results.setdefault(phase, {})
            for round_ in range(args.rounds):
                order = sizes if round_ % 2 == 0 else sizes[::-1]
                for size in order:
                    checks, wall = preflight(spaces[size])
                    pulled = spaces[size].tofu("state", "pull").seconds
                    runs = per_size.setdefault(size, {"checks": [], "command": [], "state pull": []})
                    runs["state pull"].append(pulled)
                    runs["checks"].append(checks)
                    runs["command"].append(wall)
    load["after"] = loadavg()
    medians = {
        phase: {
            size: {what: round(statistics.median(values), 3) for what, values in runs.items()}
            for size, runs in per_size.items()
        }
        for phase, per_size in results.items()
    }
    if args.json:
        print(json.dumps({"rounds": args.rounds, "load": load, "median_seconds": medians}, indent=1))
        return 0
    print(f"preflight against fakepve, median of {args.rounds} interleaved rounds (load {load})")
    for phase, per_size in medians.items():
        for size, m in per_size.items():
            print(
                f"  {phase:9} {size:4} nodes: checks {m['checks']:.2f} s, command {m['command']:.2f} s "
                f"(of which `tofu state pull` alone takes {m['state pull']:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
