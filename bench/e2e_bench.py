#!/usr/bin/env python3
"""Time `tofu init`, `plan` and `apply` of the 6-node example against fakepve.

    .venv/bin/python bench/e2e_bench.py [--runs 3] [--local-state] [--json]

Each run starts from nothing: a fresh fakepve (time scale 0: its tasks cost nothing, so
what is measured is tofu, the provider and the HTTP round trips) and a fresh state.
State goes to this project's tfstate server on loopback unless --local-state. Reported:
synth (python main.py), init, the first plan (6 VMs + 2 ISOs to create), apply, the
second plan (refreshing 8 resources, no changes) and destroy; the median of the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.fakepve import FakePveServer  # noqa: E402
from devenv.state_server import StateServer  # noqa: E402
from devenv.workspace import TofuWorkspace, example_nodes  # noqa: E402
from workflow.setup_tools import ensure_tools  # noqa: E402

STEPS = ("synth", "init", "plan", "apply", "replan", "destroy")


def one_run(tmp: Path, tools: object, local_state: bool) -> dict[str, float]:
    times: dict[str, float] = {}
    with ExitStack() as stack:
        pve = FakePveServer()
        stack.callback(pve.stop)
        pve.call(
            lambda p: p.guest_addresses.update(
                {str(n["mac_addr"]).lower(): str(n["address"]) for n in example_nodes()}
            )
        )
        state = None
        if not local_state:
            server = StateServer(tmp / "tfstate")
            stack.callback(server.stop)
            state = server.start().state
        ws = TofuWorkspace(tmp / "ws", tools, pve, state=state)  # type: ignore[arg-type]
        ws.write()
        started = time.monotonic()
        ws.synth()
        times["synth"] = time.monotonic() - started
        times["init"] = ws.init().seconds
        first = ws.tofu("plan", "-no-color", "-input=false", "-detailed-exitcode", ok=(2,))
        times["plan"] = first.seconds
        times["apply"] = ws.apply().seconds
        times["replan"] = ws.tofu("plan", "-no-color", "-input=false", "-detailed-exitcode").seconds
        times["destroy"] = ws.destroy().seconds
        if pve.call(lambda p: len(p.vms)) != 0:
            raise SystemExit("destroy left VMs behind")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--local-state", action="store_true", help="local backend instead of the state server"
    )
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    tools = ensure_tools()
    runs = []
    for i in range(max(1, args.runs)):
        with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
            runs.append(one_run(Path(tmp), tools, args.local_state))
        print(f"run {i + 1}: " + "  ".join(f"{k} {v:.2f}s" for k, v in runs[-1].items()), file=sys.stderr)
    medians = {step: round(statistics.median(r[step] for r in runs), 2) for step in STEPS}
    if args.json:
        print(
            json.dumps(
                {
                    "runs": len(runs),
                    "state": "local" if args.local_state else "http",
                    "median_seconds": medians,
                }
            )
        )
    else:
        backend = "local backend" if args.local_state else "tfstate server"
        print(f"6-node example against fakepve, {backend}, median of {len(runs)} runs:")
        for step in STEPS:
            print(f"  {step:8} {medians[step]:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
