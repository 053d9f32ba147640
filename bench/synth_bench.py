#!/usr/bin/env python3
"""Synthesis speed and memory against cdktf's own floor, interleaved in one run.

Cases: the floor (a minimal cdktf app, one empty stack, same interpreter and environment)
and `python main.py` at 6, 100, 250 and 500 nodes; optionally the same sizes for an
other checkouts of the app (--compare LABEL=DIR, e.g. an earlier commit exported with
`git archive <commit> | tar -x -C DIR`; it runs with this checkout's interpreter) and
`npx cdktf synth` at 6 nodes (--cli). Every round runs every case once, in a rotated
order, so that a busier moment hits all cases alike; the report gives medians over the
rounds (wall time, and CPU time of the whole process tree, which a busy machine disturbs
less), ratios to the floor's median, the ms per node fitted over the sizes, the peak
resident memory of the whole process tree (python and jsii's two node processes,
sampled from /proc: RSS counts the node binary's shared pages in both node processes,
PSS shares them out) and the machine's load before and after.

Goals (ratios in the same run): 6 nodes <= 1.2x the floor, 500 nodes <= 4x the floor,
whole-tree peak RSS at 500 nodes <= 150 MB.
Run: .venv/bin/python bench/synth_bench.py [--runs 7] [--sizes 6,500] [--compare LABEL=DIR ...]
[--cli] [--json]
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
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SIZES = (6, 100, 250, 500)
SCHEMATICS = [
    "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
]
FLOOR_APP = """\
import os
import cdktf

app = cdktf.App(outdir=os.environ["CDKTF_OUTDIR"])
cdktf.TerraformStack(app, "floor")
app.synth()
"""
GOAL_SMALL, GOAL_LARGE, GOAL_RSS_MB = 1.2, 4.0, 150.0
SAMPLE_S = 0.005  # RSS of the known tree every 5 ms
RESCAN_S = 0.02  # look for new child processes every 20 ms
PSS_S = 0.01  # PSS at most every 10 ms, and only when the RSS has grown by 1 MB
PSS_GROWTH_KB = 1024
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def write_config(directory: Path, count: int) -> None:
    cluster = yaml.safe_load((ROOT / "examples" / "cluster.yaml").read_text())
    # Room for 500 nodes around the example's gateway and API address (10.10.0.x).
    cluster["node_cidr"] = "10.10.0.0/16"
    nodes = [
        {
            "name": f"node-{i}",
            "address": f"10.10.{i // 250 + 1}.{i % 250 + 2}",
            "controller": i < 3,
            "disk": "/dev/sda",
            "mac_addr": f"bc:24:11:00:{i // 256:02x}:{i % 256:02x}",
            "schematic_id": SCHEMATICS[i % 2],
            "secureboot": i % 3 == 0,
        }
        for i in range(count)
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    (directory / "nodes.yaml").write_text(yaml.safe_dump({"nodes": nodes}))


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc/<pid>/stat)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _parent_pids().items():
        children.setdefault(ppid, []).append(pid)
    tree, stack = set(), [root]
    while stack:
        pid = stack.pop()
        tree.add(pid)
        stack.extend(children.get(pid, []))
    return tree


def _rss_kb(pids: set[int]) -> int:
    """Sum of the resident set sizes (shared pages counted in every process)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except (OSError, IndexError):
            continue  # exited between the scan and the read
    return total


def _pss_kb(pids: set[int]) -> int:
    """Sum of the proportional set sizes: pages shared by the two node processes (the
    node binary) counted once in all. Costlier to read than RSS, so sampled less often."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1])
                        break
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # seconds of CPU (user + system) of the whole tree, reaped children included
    rss: float  # peak MB
    pss: float  # peak MB


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> Sample:
    """One run: wall time, CPU time and peak memory of the process and all its descendants."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        tree, peak_rss, peak_pss, last_scan, last_pss, rss_at_pss = {proc.pid}, 0, 0, 0.0, 0.0, 0
        deadline = start + 300
        while True:
            # wait4's usage covers the process and every descendant it (transitively) reaped:
            # jsii waits for its node, which waits for its child.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if now > deadline:
                proc.kill()
                continue
            if now - last_scan >= RESCAN_S:
                tree, last_scan = _descendants(proc.pid), now
            rss = _rss_kb(tree)
            if rss > rss_at_pss + PSS_GROWTH_KB and now - last_pss >= PSS_S:
                peak_pss, last_pss, rss_at_pss = max(peak_pss, _pss_kb(tree)), now, rss
            peak_rss = max(peak_rss, rss)
            time.sleep(SAMPLE_S)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak_rss / 1024, peak_pss / 1024)


@dataclass
class Case:
    label: str
    nodes: int  # 0 for the floor
    cmd: list[str]
    env: dict[str, str]
    samples: list[Sample] = field(default_factory=list)

    def median(self, what: str) -> float:
        return statistics.median(getattr(s, what) for s in self.samples)

    @property
    def wall(self) -> float:
        return self.median("wall")


def build_cases(tmp: Path, args: argparse.Namespace) -> list[Case]:
    base_env = {
        **os.environ,
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CHECKPOINT_DISABLE": "1",
    }
    (tmp / "floor.py").write_text(FLOOR_APP)
    floor_env = {**base_env, "CDKTF_OUTDIR": str(tmp / "floor.out")}
    cases = [Case("floor", 0, [sys.executable, str(tmp / "floor.py")], floor_env)]
    apps = [("main.py", ROOT)] + [(label, Path(d).resolve()) for label, d in args.compare]
    for count in args.sizes:
        config = tmp / f"n{count}"
        write_config(config, count)
        env = {
            **base_env,
            "CLUSTER_CONFIG": str(config / "cluster.yaml"),
            "NODES_CONFIG": str(config / "nodes.yaml"),
        }
        for label, app in apps:
            out_env = {**env, "CDKTF_OUTDIR": str(tmp / f"{label}-{count}.out")}
            cases.append(Case(label, count, [sys.executable, str(app / "main.py")], out_env))
        if args.cli and count == args.sizes[0]:
            cli_out = str(tmp / "cli.out")
            cmd = ["npx", "--no-install", "cdktf", "synth", "--output", cli_out]
            cases.append(Case("cdktf synth", count, cmd, {**env, "CDKTF_OUTDIR": cli_out, "CI": "1"}))
    return cases


def slope_ms(cases: list[Case]) -> float:
    """Least-squares ms per node over the medians of one app's sizes."""
    xs, ys = [c.nodes for c in cases], [c.wall * 1000 for c in cases]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="rounds (each runs every case once)")
    parser.add_argument(
        "--compare",
        metavar="LABEL=DIR",
        type=lambda v: tuple(v.split("=", 1)),
        action="append",
        default=[],
        help="another checkout of the app to time in the same rounds (repeatable)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda v: tuple(sorted(int(n) for n in v.split(","))),
        default=SIZES,
        help=f"node counts, comma-separated (default {','.join(map(str, SIZES))})",
    )
    parser.add_argument("--cli", action="store_true", help="also time `npx cdktf synth` at 6 nodes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(Path(tmp), args)
        for round_ in range(args.runs):
            shift = round_ % len(cases)
            for case in cases[shift:] + cases[:shift]:
                case.samples.append(measure(case.cmd, case.env, ROOT))
            if not args.json:
                print(f"round {round_ + 1}/{args.runs} done (load {loadavg()})", file=sys.stderr, flush=True)
    load_after = loadavg()
    floor = cases[0].wall
    results = [
        {
            "app": c.label,
            "nodes": c.nodes,
            "median_s": round(c.wall, 3),
            "ratio_to_floor": round(c.wall / floor, 2),
            "cpu_s": round(c.median("cpu"), 3),
            "cpu_ratio_to_floor": round(c.median("cpu") / cases[0].median("cpu"), 2),
            "peak_rss_tree_mb": round(c.median("rss"), 1),
            "peak_pss_tree_mb": round(c.median("pss"), 1),
            "walls_s": [round(s.wall, 3) for s in c.samples],
        }
        for c in cases
    ]
    slopes = {
        label: round(slope_ms(group), 2)
        for label in ["main.py", *(label for label, _ in args.compare)]
        if len(group := [c for c in cases if c.label == label]) > 1
    }
    by_app = {(c.label, c.nodes): c for c in cases}
    small, large = args.sizes[0], args.sizes[-1]
    now = by_app[("main.py", small)], by_app[("main.py", large)]
    goals = {
        f"{small} nodes <= {GOAL_SMALL}x floor": now[0].wall / floor <= GOAL_SMALL,
        f"{large} nodes <= {GOAL_LARGE}x floor": now[1].wall / floor <= GOAL_LARGE,
        f"{large} nodes peak RSS <= {GOAL_RSS_MB:.0f} MB": now[1].median("rss") <= GOAL_RSS_MB,
    }
    summary = {
        "runs": args.runs,
        "load_before": load_before,
        "load_after": load_after,
        "cpus": os.cpu_count(),
        "results": results,
        "ms_per_node": slopes,
        "goals": goals,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"medians of {args.runs} interleaved rounds; load (1/5/15 min) before {load_before}, "
        f"after {load_after}; {os.cpu_count()} CPUs"
    )
    cpu_floor = cases[0].median("cpu")
    print(
        f"{'app':12} {'nodes':>5} {'wall':>8} {'x floor':>8} {'CPU':>8} {'x floor':>8}"
        f" {'peak RSS':>10} {'peak PSS':>10}  (whole tree)"
    )
    for c in cases:
        cpu = c.median("cpu")
        print(
            f"{c.label:12} {c.nodes:5d} {c.wall:7.3f}s {c.wall / floor:7.2f}x"
            f" {cpu:7.3f}s {cpu / cpu_floor:7.2f}x {c.median('rss'):7.1f} MB {c.median('pss'):7.1f} MB"
        )
    for label, slope in slopes.items():
        print(
            f"{label}: {slope:.2f} ms per node (least squares over {', '.join(map(str, args.sizes))} nodes)"
        )
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
