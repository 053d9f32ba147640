#!/usr/bin/env python3
"""Reading hostile config files: wall time and peak memory of `python main.py` on each,
against a baseline of a small config with one error, in the same run.

Each case is run --runs times, the cases interleaved (baseline, case 1, case 2, ...,
baseline, ...); the median wall time and the median peak RSS (from wait4, the child
alone) are printed, with the load average before and after. Targets: every hostile case
exits 2 within 1 s and within 10 MB of the baseline's peak RSS.
Run: .venv/bin/python bench/config_bench.py [--runs 5] [--json]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rejects import CLUSTER, NODES, node_text  # noqa: E402


def bomb(levels: int = 10) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return CLUSTER + "\n".join(lines) + "\n"


def big_nodes(count: int) -> str:
    return "nodes:\n" + "".join(
        node_text(i, f"n-{i}", address=f'"10.10.{i // 250}.{i % 250 + 2}"', vm_id=str(1000 + i))
        for i in range(count)
    )


def cases(directory: Path) -> dict[str, tuple[str, str]]:
    """name -> (CLUSTER_CONFIG, NODES_CONFIG) paths."""
    files = {
        "baseline (one error)": (CLUSTER + "node_vlan_tag: 0\n", NODES),
        "alias bomb (9^10 values)": (bomb(), NODES),
        "recursive alias": (CLUSTER + "loop: &l [*l]\n", NODES),
        "6 MiB file": (CLUSTER + "# padding\n" * (600 * 1024), NODES),
        "deep nesting (2,000 levels)": (CLUSTER + "x: " + "[" * 2000 + "]" * 2000 + "\n", NODES),
    }
    out: dict[str, tuple[str, str]] = {}
    for name, (cluster, nodes) in files.items():
        slug = "".join(c if c.isalnum() else "-" for c in name)
        (directory / f"{slug}-c.yaml").write_text(cluster)
        (directory / f"{slug}-n.yaml").write_text(nodes)
        out[name] = (str(directory / f"{slug}-c.yaml"), str(directory / f"{slug}-n.yaml"))
    out["/dev/zero"] = ("/dev/zero", out["baseline (one error)"][1])
    fifo = directory / "fifo.yaml"
    os.mkfifo(fifo)
    out["FIFO"] = (str(fifo), out["baseline (one error)"][1])
    return out


def run_once(cluster: str, nodes: str, directory: Path) -> tuple[float, float, int]:
    env = {
        **os.environ,
        "CLUSTER_CONFIG": cluster,
        "NODES_CONFIG": nodes,
        "CDKTF_OUTDIR": str(directory / "out"),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        todo = cases(directory)
        for _ in range(args.runs):
            for name, (cluster, nodes) in todo.items():
                seconds, rss, code = run_once(cluster, nodes, directory)
                entry = results.setdefault(name, {"seconds": [], "rss_mb": [], "exit": []})
                entry["seconds"].append(seconds)
                entry["rss_mb"].append(rss)
                entry["exit"].append(code)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    summary = {
        name: {
            "median_s": round(statistics.median(r["seconds"]), 3),
            "median_rss_mb": round(statistics.median(r["rss_mb"]), 1),
            "exit_codes": sorted(set(r["exit"])),
        }
        for name, r in results.items()
    }
    if args.json:
        print(json.dumps({"load_before": load_before, "load_after": load_after, "cases": summary}, indent=2))
        return 0
    print(f"load average before {' '.join(load_before)}, after {' '.join(load_after)}; {args.runs} runs each")
    for name, r in summary.items():
        print(f"  {name:30} {r['median_s']:6.3f} s  {r['median_rss_mb']:6.1f} MB  exit {r['exit_codes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
