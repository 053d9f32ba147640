"""Benchmark of the tfstate server on loopback (not a test: numbers, not assertions).

    .venv/bin/python bench/server_bench.py [--stores file,s3] [--seconds 5] [--fsync all]

For each store it starts a real server process (and moto, devenv/serial_moto.py, for s3) and measures:
  cycle   median time of LOCK + POST (1 MB state) + UNLOCK, one client, keep-alive
  get     GET throughput of a 100 KB state with 16 concurrent clients
  locks   LOCK attempts per second with 50 contenders on one state, and double grants
          (a LOCK answered 200 while another contender still held the lock)
Each is run --repeat times and the median run reported (double grants: the sum of all),
every run printed too. For the comparison with other servers see bench/peers_bench.py.
Targets (file store, 2 cores): cycle <= 10 ms, get >= 1,500 req/s, zero double grants.
It talks through Python clients; bench/peers_bench.py uses a Go client.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.ports import free_port  # noqa: E402
from devenv.state_server import StateServer, stop_process  # noqa: E402

USER = "bench"
PASSWORD = uuid.uuid4().hex
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
HEADERS = {"Authorization": AUTH}


@functools.cache
def _resources(size: int) -> str:
    """JSON of enough resources (shaped like real ones) for a state of about `size` bytes."""
    one = {
        "mode": "managed",
        "type": "terraform_data",
        "name": "r0",
        "provider": 'provider["terraform.io/builtin/terraform"]',
        "instances": [
            {
                "schema_version": 0,
                "attributes": {"id": str(uuid.UUID(int=0)), "input": {"value": "x" * 40}},
                "sensitive_attributes": [],
            }
        ],
    }
    per = len(json.dumps([one], indent=2))  # about the size of one listed resource
    resources = []
    for n in range(max(1, (size - 200) // per)):
        item = json.loads(json.dumps(one))
        item["name"] = f"r{n}"
        item["instances"][0]["attributes"]["id"] = str(uuid.UUID(int=n))
        resources.append(item)
    return json.dumps(resources, indent=2)


def state(serial: int, size: int, lineage: str = "bench") -> bytes:
    """A state of about `size` bytes."""
    head = json.dumps({"version": 4, "serial": serial, "lineage": lineage, "outputs": {}})
    return (head[:-1] + ', "resources": ' + _resources(size) + "}").encode()


@contextmanager
def moto(tmp: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    with open(tmp / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            # One request at a time, as the tests run it: threaded moto can grant a
            # conditional write twice, which would count as our double grant.
            [sys.executable, str(ROOT / "devenv" / "serial_moto.py"), "127.0.0.1", str(port)],
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.05)
        env = {
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        import boto3

        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL_S3"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket="bench")
        yield env
    finally:
        stop_process(proc)


@contextmanager
def server(store: str, tmp: Path, env: dict[str, str], args: list[str]) -> Iterator[int]:
    running = StateServer(tmp / f"server-{uuid.uuid4().hex[:6]}", store, args, env, USER, PASSWORD)
    try:
        yield running.start().port
    finally:
        running.stop()


def call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> int:
    conn.request(method, path, body=body, headers=HEADERS)
    response = conn.getresponse()
    response.read()
    return response.status


def bench_cycle(port: int, cycles: int) -> dict[str, float]:
    """LOCK + POST 1 MB + UNLOCK, one keep-alive client; bodies prepared beforehand."""
    bodies = [state(serial, 1_000_000, "cycle") for serial in range(1, cycles + 6)]
    path = f"/states/cycle-{uuid.uuid4().hex[:8]}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for index, body in enumerate(bodies):
        lock = json.dumps(
            {"ID": f"cycle-{index}", "Operation": "OperationTypeApply", "Who": "bench"}
        ).encode()
        start = time.perf_counter()
        assert call(conn, "LOCK", f"{path}/lock", lock) == 200
        assert call(conn, "POST", f"{path}?ID=cycle-{index}", body) == 200
        assert call(conn, "UNLOCK", f"{path}/lock", lock) == 200
        if index >= 5:  # warm-up
            times.append((time.perf_counter() - start) * 1000)
    conn.close()
    return {
        "cycle_median_ms": statistics.median(times),
        "cycle_p90_ms": statistics.quantiles(times, n=10)[-1],
        "state_bytes": len(bodies[0]),
    }


async def bench_get(port: int, seconds: float, clients: int) -> dict[str, float]:
    body = state(1, 100_000, "get")
    url = f"http://127.0.0.1:{port}/states/get"
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:
        async with session.post(url, data=body) as response:
            assert response.status == 200
        count = 0
        errors = 0
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal count, errors
            while time.perf_counter() < deadline:
                async with session.get(url) as response:
                    data = await response.read()
                if response.status == 200 and len(data) == len(body):
                    count += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return {"get_req_per_s": count / elapsed, "get_errors": errors, "get_state_bytes": len(body)}


async def bench_locks(ports: list[int], seconds: float, contenders: int) -> dict[str, float]:
    holder: list[str] = []  # who believes it holds the lock right now
    attempts = grants = doubles = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=contenders)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def contender(index: int) -> None:
            nonlocal attempts, grants, doubles
            port = ports[index % len(ports)]
            url = f"http://127.0.0.1:{port}/states/contended/lock"
            round_number = 0
            while time.perf_counter() < deadline:
                round_number += 1
                lock_id = f"c{index}-{round_number}"
                body = json.dumps({"ID": lock_id, "Who": f"c{index}"}).encode()
                async with session.request("LOCK", url, data=body) as response:
                    await response.read()
                attempts += 1
                if response.status != 200:
                    assert response.status == 423, response.status
                    continue
                grants += 1
                if holder:
                    doubles += 1
                holder.append(lock_id)
                await asyncio.sleep(0)  # hold it across a scheduling point
                holder.remove(lock_id)
                async with session.request("UNLOCK", url, data=body) as response:
                    assert response.status == 200, response.status

        start = time.perf_counter()
        await asyncio.gather(*(contender(i) for i in range(contenders)))
        elapsed = time.perf_counter() - start
    return {
        "lock_attempts_per_s": attempts / elapsed,
        "lock_grants_per_s": grants / elapsed,
        "double_grants": doubles,
    }


def _median_run(runs: list[dict[str, float]], key: str) -> dict[str, float]:
    """The run whose `key` is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def run_store(kind: str, tmp: Path, env: dict[str, str], options: argparse.Namespace) -> dict[str, Any]:
    store = (
        (tmp / f"store-{uuid.uuid4().hex[:6]}").as_uri()
        if kind == "file"
        else f"s3://bench/{uuid.uuid4().hex[:6]}"
    )
    args = ["--fsync", options.fsync]
    results: dict[str, Any] = {"store": kind, "fsync": options.fsync if kind == "file" else "-"}
    with server(store, tmp, env, args) as port:
        # The median of --repeat runs (a best run would hide the spread a shared
        # machine causes). Every run is reported too.
        cycles = [bench_cycle(port, options.cycles) for _ in range(options.repeat)]
        gets = [asyncio.run(bench_get(port, options.seconds, 16)) for _ in range(options.repeat)]
        locks = [asyncio.run(bench_locks([port], options.seconds, 50)) for _ in range(options.repeat)]
        results.update(_median_run(cycles, "cycle_median_ms"))
        results.update(_median_run(gets, "get_req_per_s"))
        results.update(_median_run(locks, "lock_attempts_per_s"))
        results["double_grants"] = sum(r["double_grants"] for r in locks)
        results["runs"] = {
            "cycle_median_ms": [round(r["cycle_median_ms"], 1) for r in cycles],
            "get_req_per_s": [round(r["get_req_per_s"]) for r in gets],
            "lock_attempts_per_s": [round(r["lock_attempts_per_s"]) for r in locks],
        }
        if options.replicas:
            with server(store, tmp, env, args) as second:
                replicas = asyncio.run(bench_locks([port, second], options.seconds, 50))
            results["replicas_lock_attempts_per_s"] = replicas["lock_attempts_per_s"]
            results["replicas_double_grants"] = replicas["double_grants"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="file,s3", help="comma-separated: file, s3")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the get and lock runs")
    parser.add_argument("--cycles", type=int, default=40, help="LOCK+POST+UNLOCK cycles measured")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measure; the median counts")
    parser.add_argument("--fsync", default="all", choices=("all", "state", "none"), help="file store --fsync")
    parser.add_argument("--replicas", action="store_true", help="also contend through two server processes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfstate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for kind in options.stores.split(","):
            if kind == "s3":
                with moto(tmp) as env:
                    rows.append(run_store("s3", tmp, env, options))
            else:
                rows.append(run_store("file", tmp, {}, options))
    if options.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(
            f"{row['store']:>4} fsync={row['fsync']:<5} "
            f"cycle median {row['cycle_median_ms']:.1f} ms (p90 {row['cycle_p90_ms']:.1f}) | "
            f"GET 100 KB x16: {row['get_req_per_s']:.0f} req/s ({row['get_errors']} errors) | "
            f"LOCK x50: {row['lock_attempts_per_s']:.0f} attempts/s, "
            f"{row['lock_grants_per_s']:.0f} grants/s, "
            f"{row['double_grants']} double grants"
            + (
                f" | 2 replicas: {row['replicas_lock_attempts_per_s']:.0f} attempts/s, "
                f"{row['replicas_double_grants']} double grants"
                if "replicas_double_grants" in row
                else ""
            )
        )
        print(f"     runs: {row['runs']}")


if __name__ == "__main__":
    main()
