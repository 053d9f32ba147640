"""Where the 1 MB write cycle's time goes, and the floor under it, on this machine.

    .venv/bin/python bench/cycle_floor.py [--rounds 7] [--cycles 30] [--nimbolus PATH]

Interleaved rounds, same Go client (bench/loadclient), LOCK + POST 1 MB + UNLOCK p50 of:
  null      a server that reads the body and answers 200 (loadclient null): the client,
            HTTP and loopback alone
  nimbolus  if its binary is found (as bench/peers_bench.py finds it)
  ours      --fsync all
and, in this process, medians of what a cycle of ours cannot skip without giving up a
promise: the file store's fsync sequence (LOCK: temp file + fsync + rename + directory
fsync; POST: 1 MB temp file + fsync + rename + directory fsync; UNLOCK: unlink +
directory fsync) on the file system of the temporary directory, the MD5 of the body
(clients send Content-MD5) and its JSON check. Prints /proc/loadavg before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import peers_bench as pb

from tfstate_server.statebody import parse_state
from tfstate_server.storage.file import fsync_dir, write_file


def body_like_the_client(size: int = 1_000_000) -> bytes:
    """The shape of loadclient's state (terraform_data resources), about size bytes."""
    parts = ['{"version": 4, "terraform_version": "1.10.0", "serial": 1, "lineage": "floor", ']
    parts.append('"outputs": {}, "resources": [')
    n, length = 0, sum(map(len, parts))
    while length < size - 200:
        item = (
            ("," if n else "")
            + f'\n  {{"mode": "managed", "type": "terraform_data", "name": "r{n}",\n'
            + '   "provider": "provider[\\"terraform.io/builtin/terraform\\"]",\n'
            + '   "instances": [{"schema_version": 0, "attributes": {"id": '
            + f'"00000000-0000-0000-0000-{n:012d}",\n'
            + '     "input": {"value": "'
            + "x" * 40
            + '"}}, "sensitive_attributes": []}]}'
        )
        parts.append(item)
        length += len(item)
        n += 1
    parts.append("]}")
    return "".join(parts).encode()


def median_ms(fn: Callable[[], object], n: int = 40) -> float:
    """Back to back: with idle gaps (as between a client's requests) the same fsyncs
    measured up to 2x slower here, so this is the lower, conservative floor."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def fsync_floors(directory: Path, body: bytes) -> dict[str, float]:
    lock = b'{"ID":"6a1f3c2e-0000-4000-8000-00000000beef","Operation":"OperationTypeApply"}'

    def lock_step() -> None:
        write_file(directory / ".tmp-lock", [lock], True)
        os.replace(directory / ".tmp-lock", directory / "lock.json")
        fsync_dir(directory)

    def post_step() -> None:
        write_file(directory / ".tmp-state", [body], True)
        os.replace(directory / ".tmp-state", directory / "v")
        fsync_dir(directory)

    def unlock_step() -> None:
        (directory / "lock.json").unlink()
        fsync_dir(directory)

    def cycle() -> None:
        lock_step()
        post_step()
        unlock_step()

    def state_file_only() -> None:
        write_file(directory / ".tmp-state", [body], True)
        os.unlink(directory / ".tmp-state")

    return {
        "fsync sequence of a cycle (5 fsyncs)": median_ms(cycle),
        "  of which: 1 MB temp file written + fsynced": median_ms(state_file_only),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--nimbolus", type=Path, default=None)
    options = parser.parse_args()
    nimbolus = options.nimbolus or Path(
        os.environ.get("TFSTATE_BENCH_NIMBOLUS") or pb.PEER_BIN / "terraform-backend"
    )
    client = pb.build_client()
    body = body_like_the_client()
    load_before = pb.loadavg()
    p50: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tfstate-floor-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        port = pb.free_port()
        log = tmp / "null.log"
        null = stack.enter_context(pb.process([str(client), "null", f"127.0.0.1:{port}"], {}, log, tmp))
        pb.wait_port(port, null, log)
        url = f"http://127.0.0.1:{port}/{{name}}"
        servers = [pb.Server("null", url, url, "x", "x", null.pid)]
        if nimbolus.is_file():
            servers.append(pb.start_nimbolus(stack, tmp, nimbolus))
        else:
            print(f"skipping nimbolus: no executable at {nimbolus}")
        servers.append(pb.start_ours(stack, tmp, "all"))
        for round_number in range(options.rounds):
            for server in servers:
                argv = ("-size", "1000000", "-n", str(options.cycles))
                result = pb.run_client(client, server, "cycle", f"floor-r{round_number}", *argv)
                if "error" in result:
                    raise SystemExit(f"{server.name}: {result['error']}")
                p50.setdefault(server.name, []).append(result["p50_ms"])
        floors = fsync_floors(tmp, body)
    floors["MD5 of the 1 MB body"] = median_ms(lambda: hashlib.md5(body).digest())
    floors["JSON check of the 1 MB body (simdjson)"] = median_ms(lambda: parse_state(body))
    print(f"loadavg before {load_before}, after {pb.loadavg()}; medians of {options.rounds} rounds")
    for name, values in p50.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"cycle p50, {name:9s} {statistics.median(values):6.2f} ms   (rounds: {shown})")
    for name, value in floors.items():
        print(f"{name:45s} {value:6.2f} ms")
    client_floor = statistics.median(p50["null"])
    sequence = floors["fsync sequence of a cycle (5 fsyncs)"]
    print(f"{'floor of ours: null cycle + fsync sequence':45s} {client_floor + sequence:6.2f} ms")
    if "nimbolus" in p50:
        own = statistics.median(p50["nimbolus"]) - client_floor
        print(f"{'nimbolus own share (its cycle - null cycle)':45s} {own:6.2f} ms")


if __name__ == "__main__":
    main()
