"""Where the 1 MB write cycle's time goes, and the floor under it, on this machine.

    .venv/bin/python bench/cycle_floor.py [--rounds 7] [--cycles 30] [--nimbolus PATH]

Interleaved rounds, same Go client (bench/loadclient), LOCK + POST 1 MB + UNLOCK p50 of:
  null         a server that reads the body and answers 200 (loadclient null): the
               client, HTTP and loopback alone
  aiohttp-null the same in Python: aiohttp on uvloop reading the body, answering 200 (this
               server's HTTP stack, with nothing of its own)
  nimbolus     if its binary is found (as bench/peers_bench.py finds it)
  ours-all     --fsync all
  ours-none    --fsync none
and, in this process, medians of what a cycle of ours cannot skip without giving up a
promise: the file store's sequence (LOCK: temp file + fsync + rename + directory fsync;
POST: 1 MB temp file + fsync + rename + directory fsync; UNLOCK: unlink + directory
fsync; with --fsync none the same without the fsyncs) on the file system of the
temporary directory, the MD5 of the body (clients send Content-MD5) and its JSON check.
The floors: aiohttp-null + JSON check + the store's sequence back to back, with the MD5
computed while the disk writes the 1 MB file (as the server does). The sequence is also
timed with 1 ms gaps between the steps (as between a client's requests), for information:
fsyncs after a pause are slower, by how much varies with what else the machine does.
Prints /proc/loadavg before and after, and each floor over nimbolus's cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


GAP_SECONDS = 0.001


def median_ms(fn: Callable[[], object], n: int = 40) -> float:
    """Back to back: with idle gaps (as between a client's requests) the same fsyncs
    measured up to 2x slower here, so this is the lower, conservative floor."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def store_floors(directory: Path, body: bytes, sync: bool) -> dict[str, float]:
    """The store's part of a cycle, with the MD5 where the server computes it (while the
    disk writes the 1 MB temp file): back to back, and with GAP_SECONDS before each step
    as in a real cycle, the gaps not counted."""
    lock = b'{"ID":"6a1f3c2e-0000-4000-8000-00000000beef","Operation":"OperationTypeApply"}'

    def lock_step() -> None:
        write_file(directory / ".tmp-lock", [lock], sync)
        os.replace(directory / ".tmp-lock", directory / "lock.json")
        if sync:
            fsync_dir(directory)

    def post_step() -> None:
        write_file(directory / ".tmp-state", [body], sync, lambda: hashlib.md5(body).digest())
        os.replace(directory / ".tmp-state", directory / "v")
        if sync:
            fsync_dir(directory)

    def unlock_step() -> None:
        (directory / "lock.json").unlink()
        if sync:
            fsync_dir(directory)

    def cycle(gap: float) -> float:
        spent = 0.0
        for step in (lock_step, post_step, unlock_step):
            if gap:
                time.sleep(gap)
            start = time.perf_counter()
            step()
            spent += time.perf_counter() - start
        return spent * 1000

    return {
        "back to back": statistics.median(cycle(0) for _ in range(40)),
        "with gaps": statistics.median(cycle(GAP_SECONDS) for _ in range(40)),
    }


async def _null_app(port: int) -> None:
    """aiohttp on uvloop, as the server runs: read every body, answer 200."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def serve_null(port: int) -> None:
    import uvloop

    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_null_app(port))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--nimbolus", type=Path, default=None)
    parser.add_argument("--serve-null", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_null is not None:
        serve_null(options.serve_null)
        return
    nimbolus = options.nimbolus or Path(
        os.environ.get("TFSTATE_BENCH_NIMBOLUS") or pb.PEER_BIN / "terraform-backend"
    )
    client = pb.build_client()
    body = body_like_the_client()
    load_before = pb.loadavg()
    p50: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tfstate-floor-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        servers = []
        for name, argv in (
            ("null", [str(client), "null"]),
            ("aiohttp-null", [sys.executable, __file__, "--serve-null"]),
        ):
            port = pb.free_port()
            log = tmp / f"{name}.log"
            address = f"127.0.0.1:{port}" if name == "null" else str(port)
            proc = stack.enter_context(pb.process([*argv, address], dict(os.environ), log, tmp))
            pb.wait_port(port, proc, log)
            url = f"http://127.0.0.1:{port}/{{name}}"
            servers.append(pb.Server(name, url, url, "x", "x", proc.pid))
        if nimbolus.is_file():
            servers.append(pb.start_nimbolus(stack, tmp, nimbolus))
        else:
            print(f"skipping nimbolus: no executable at {nimbolus}")
        for fsync in ("all", "none"):
            servers.append(pb.start_ours(stack, tmp, fsync, name=f"ours-{fsync}", replicas=1))
        for round_number in range(options.rounds):
            turn = round_number % len(servers)  # each round starts with the next server
            for server in servers[turn:] + servers[:turn]:
                argv = ("-size", "1000000", "-n", str(options.cycles))
                result = pb.run_client(client, server, "cycle", f"floor-r{round_number}", *argv)
                if "error" in result:
                    raise SystemExit(f"{server.name}: {result['error']}")
                p50.setdefault(server.name, []).append(result["p50_ms"])
        synced = store_floors(tmp, body, True)
        unsynced = store_floors(tmp, body, False)
    md5 = median_ms(lambda: hashlib.md5(body).digest())
    json_check = median_ms(lambda: parse_state(body))
    print(f"loadavg before {load_before}, after {pb.loadavg()}; medians of {options.rounds} rounds")
    cycle = {name: statistics.median(values) for name, values in p50.items()}
    for name, values in p50.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"cycle p50, {name:12s} {cycle[name]:6.2f} ms   (rounds: {shown})")
    parts = {
        "store + MD5, --fsync all (5 fsyncs), back to back": synced["back to back"],
        "  the same with 1 ms gaps (not a floor: varies)": synced["with gaps"],
        "store + MD5, --fsync none, back to back": unsynced["back to back"],
        "  the same with 1 ms gaps": unsynced["with gaps"],
        "MD5 of the 1 MB body alone": md5,
        "JSON check of the 1 MB body (simdjson)": json_check,
    }
    for name, value in parts.items():
        print(f"{name:52s} {value:6.2f} ms")
    for fsync, goal, store in (("all", 1.5, synced), ("none", 1.3, unsynced)):
        floor = cycle["aiohttp-null"] + json_check + store["back to back"]
        line = f"floor, --fsync {fsync}: aiohttp-null + JSON + store"
        line = f"{line:52s} {floor:6.2f} ms"
        if "nimbolus" in cycle:
            floor_ratio = floor / cycle["nimbolus"]
            measured = cycle[f"ours-{fsync}"] / cycle["nimbolus"]
            line += f"  = {floor_ratio:.2f}x nimbolus (goal {goal}x; ours measured {measured:.2f}x)"
        print(line)
    if "nimbolus" in cycle:
        own = cycle["nimbolus"] - cycle["null"]
        print(f"{'nimbolus own share (its cycle - null cycle)':52s} {own:6.2f} ms")
        own = cycle["aiohttp-null"] - cycle["null"]
        print(f"{'aiohttp-null own share (its cycle - null cycle)':52s} {own:6.2f} ms")


if __name__ == "__main__":
    main()
