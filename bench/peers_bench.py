"""This tfstate server side by side with two self-hosted peers, one Go load client for all.

    .venv/bin/python bench/peers_bench.py [--rounds 3] [--seconds 5] [--fsync all]
        [--nimbolus PATH] [--tfstated PATH]

The peers are built from their own sources outside this repository (never committed):
  nimbolus/terraform-backend (file store, in-memory locks): go build ./cmd/
  adyxax/tfstated (SQLite):                                 go build ./cmd/tfstated
Their binaries come from --nimbolus / --tfstated, else $TFSTATE_BENCH_NIMBOLUS /
$TFSTATE_BENCH_TFSTATED, else ~/.cache/talos-cdktf/peers/bin/{terraform-backend,tfstated};
a missing one is skipped, with a line saying so.

The client (bench/loadclient, Go standard library only) is built with `go build` into
~/.cache/talos-cdktf/bench/. Per round, servers take turns (ours, nimbolus, tfstated; each
round starts with the next one), each measured with:
  cycle   LOCK + POST (1 MB state) + UNLOCK, one keep-alive client: p50
  get     GET of a 100 KB state, 16 concurrent clients: req/s
  locks   50 contenders LOCK one state (UNLOCK when granted): grants/s, double grants
          (a grant while another contender still held the lock; the contenders share
          one counter in the client, so this also covers our two replicas below)
Medians over the rounds are printed with ratios to nimbolus, the client's CPU share (to
show it is not the bottleneck), each server's peak RSS and /proc/loadavg before and after.
nimbolus runs with GOMAXPROCS=1: with more, its map-based lock store crashes under
concurrent requests (`concurrent map writes`).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from server_bench import ROOT  # bench/ is on sys.path when run as a script; it adds ROOT

from devenv.ports import free_port
from devenv.state_server import StateServer, stop_process

CACHE = Path.home() / ".cache" / "talos-cdktf"
CLIENT_SRC = ROOT / "bench" / "loadclient"
PEER_BIN = CACHE / "peers" / "bin"


@dataclass
class Server:
    name: str
    state: str  # state URL with {name} for the state's name
    lock: str  # lock URL, likewise
    user: str
    password: str
    pid: int
    replica_lock: str | None = None  # a second process on the same store (ours only)
    pids: list[int] = field(default_factory=list)


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server did not listen on port {port}")


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        stop_process(proc)


def start_ours(
    stack: ExitStack,
    tmp: Path,
    fsync: str,
    *,
    name: str = "ours",
    root: Path = ROOT,
    log_level: str | None = None,
    replicas: int = 2,
) -> Server:
    """Our server from the checkout `root`, with the server's default logging (its
    log lines go to a file, as a service manager's would) unless log_level is given."""
    password = secrets.token_urlsafe(18)
    store = tmp / name
    store.mkdir()
    args = ["--fsync", fsync, *(["--log-level", log_level] if log_level else [])]
    ports = []
    pids = []
    for replica in range(replicas):
        server = StateServer(
            tmp / f"{name}-{replica}", store.as_uri(), args, username="bench", password=password, root=root
        )
        stack.callback(server.stop)
        server.start()
        assert server.proc is not None
        ports.append(server.port)
        pids.append(server.proc.pid)
    base = f"http://127.0.0.1:{ports[0]}/states/{{name}}"
    return Server(
        name,
        base,
        base + "/lock",
        "bench",
        password,
        pids[0],
        replica_lock=f"http://127.0.0.1:{ports[1]}/states/{{name}}/lock" if replicas > 1 else None,
        pids=pids,
    )


def _variant(text: str) -> tuple[str, Path, str | None]:
    """NAME:ROOT:LEVEL for --also-ours (ROOT empty: this checkout; LEVEL empty: default)."""
    name, _, rest = text.partition(":")
    root, _, level = rest.partition(":")
    if not name or name in ("ours", "nimbolus", "tfstated"):
        raise argparse.ArgumentTypeError(f"--also-ours {text!r}: expected NAME:ROOT:LEVEL with a new NAME")
    return name, Path(root) if root else ROOT, level or None


def start_nimbolus(stack: ExitStack, tmp: Path, binary: Path) -> Server:
    port = free_port()
    directory = tmp / "nimbolus"
    directory.mkdir()
    env = {
        **os.environ,
        "LISTEN_ADDR": f"127.0.0.1:{port}",
        "STORAGE_BACKEND": "fs",
        "STORAGE_FS_DIR": str(directory / "states"),
        "KMS_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "LOG_LEVEL": "fatal",
        "GOMAXPROCS": "1",
    }
    log = tmp / "nimbolus.log"
    proc = stack.enter_context(process([str(binary)], env, log, directory))
    wait_port(port, proc, log)
    url = f"http://127.0.0.1:{port}/state/bench/{{name}}"
    # Basic auth: any password; it selects the state (hashed with the path).
    return Server("nimbolus", url, url, "basic", secrets.token_urlsafe(18), proc.pid)


def start_tfstated(stack: ExitStack, tmp: Path, binary: Path) -> Server:
    port = free_port()
    directory = tmp / "tfstated"
    directory.mkdir()
    env = {
        **os.environ,
        "TFSTATED_HOST": "127.0.0.1",
        "TFSTATED_PORT": str(port),
        "TFSTATED_WEBUI_HOST": "127.0.0.1",
        "TFSTATED_WEBUI_PORT": str(free_port()),
        "TFSTATED_DATA_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TFSTATED_SESSIONS_SALT": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    log = tmp / "tfstated.log"
    proc = stack.enter_context(process([str(binary)], env, log, directory))
    wait_port(port, proc, log)
    # It creates user "admin" with a random password, logged (JSON lines) on first start.
    password = ""
    deadline = time.monotonic() + 10
    while not password and time.monotonic() < deadline:
        found = re.search(r'"password":"([^"]+)"', log.read_text(errors="replace"))
        password = found.group(1) if found else ""
        time.sleep(0.05)
    if not password:
        raise SystemExit("tfstated did not log its admin password")
    url = f"http://127.0.0.1:{port}/{{name}}"
    return Server("tfstated", url, url, "admin", password, proc.pid)


def build_client() -> Path:
    out = CACHE / "bench" / "loadclient"
    out.parent.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go")
    if go is None:
        raise SystemExit("peers_bench: needs Go to build bench/loadclient")
    subprocess.run([go, "build", "-o", str(out), "."], cwd=CLIENT_SRC, check=True)
    return out


def run_client(
    client: Path, server: Server, command: str, name: str, *args: str, replicas: bool = False
) -> dict:
    """One client run against the state `name` (each test of each round has its own:
    a cycle starts at serial 1 again, which a server checking serials refuses)."""
    lock = server.lock.format(name=name)
    if replicas and server.replica_lock:
        lock += "," + server.replica_lock.format(name=name)
    argv = [str(client), command, "-state", server.state.format(name=name), "-lock", lock]
    argv += ["-user", server.user, *args]
    env = {**os.environ, "LOADCLIENT_PASSWORD": server.password}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    return json.loads(done.stdout)


def peak_rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else float("nan")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each get and locks run")
    parser.add_argument("--cycles", type=int, default=30, help="LOCK+POST+UNLOCK cycles per round")
    parser.add_argument("--fsync", default="all", choices=("all", "state", "none"), help="our --fsync")
    parser.add_argument("--nimbolus", type=Path, default=None, help="terraform-backend binary")
    parser.add_argument("--tfstated", type=Path, default=None, help="tfstated binary")
    parser.add_argument("--json", action="store_true", help="also print all runs as JSON")
    parser.add_argument(
        "--log-level", default=None, help="our --log-level (default: the server's default, info)"
    )
    parser.add_argument(
        "--also-ours",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME:ROOT:LEVEL",
        help="one more of ours in the same rounds (one process): from the checkout ROOT "
        "(empty: this one) with --log-level LEVEL (empty: the default); repeatable, "
        "e.g. to measure the access log's cost before and after a change",
    )
    parser.add_argument(
        "--tests", default="cycle,get,locks", help="which tests to run, comma-separated (default: all)"
    )
    options = parser.parse_args()
    binaries = {
        "nimbolus": options.nimbolus
        or Path(os.environ.get("TFSTATE_BENCH_NIMBOLUS") or PEER_BIN / "terraform-backend"),
        "tfstated": options.tfstated
        or Path(os.environ.get("TFSTATE_BENCH_TFSTATED") or PEER_BIN / "tfstated"),
    }
    client = build_client()
    starters: dict[str, Callable[[ExitStack, Path], Server]] = {
        "ours": lambda stack, tmp: start_ours(stack, tmp, options.fsync, log_level=options.log_level),
    }
    for name, root, level in options.also_ours:
        starters[name] = lambda stack, tmp, n=name, r=root, lv=level: start_ours(
            stack, tmp, options.fsync, name=n, root=r, log_level=lv, replicas=1
        )
    tests = set(options.tests.split(","))
    for name, starter in (("nimbolus", start_nimbolus), ("tfstated", start_tfstated)):
        binary = binaries[name]
        if binary.is_file() and os.access(binary, os.X_OK):
            starters[name] = lambda stack, tmp, s=starter, b=binary: s(stack, tmp, b)
        else:
            print(f"skipping {name}: no executable at {binary} (see --{name})")
    load_before = loadavg()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="tfstate-peers-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        servers = [start(stack, tmp) for start in starters.values()]
        seconds = str(options.seconds)
        for round_number in range(1, options.rounds + 1):
            # Each round starts with the next server: none always runs first or last.
            turn = (round_number - 1) % len(servers)
            for server in servers[turn:] + servers[:turn]:
                # tfstated takes ~0.5 s per cycle: fewer cycles keep a round bounded.
                cycles = options.cycles if server.name != "tfstated" else max(5, options.cycles // 5)
                tag = f"r{round_number}"
                result = {}
                if "cycle" in tests:
                    result["cycle"] = run_client(
                        client, server, "cycle", f"cycle-{tag}", "-size", "1000000", "-n", str(cycles)
                    )
                if "get" in tests:
                    result["get"] = run_client(
                        client,
                        server,
                        "get",
                        f"get-{tag}",
                        *("-size", "100000", "-clients", "16", "-seconds", seconds),
                    )
                if "locks" in tests:
                    result["locks"] = run_client(
                        client, server, "locks", f"locks-{tag}", "-clients", "50", "-seconds", seconds
                    )
                if server.replica_lock and "locks" in tests:
                    result["replicas"] = run_client(
                        client,
                        server,
                        "locks",
                        f"replicas-{tag}",
                        *("-clients", "50", "-seconds", seconds),
                        replicas=True,
                    )
                runs.setdefault(server.name, []).append(result)
                print(f"round {round_number} {server.name}: {json.dumps(result)}", flush=True)
        rss = {
            server.name: max(peak_rss_mb(pid) for pid in server.pids or [server.pid]) for server in servers
        }
    report(runs, rss, load_before, loadavg())
    if options.json:
        print(json.dumps(runs, indent=2))


def _median(runs: list[dict], test: str, key: str) -> float:
    values = [run[test][key] for run in runs if key in run.get(test, {})]
    return statistics.median(values) if values else float("nan")


def report(runs: dict[str, list[dict]], rss: dict[str, float], before: str, after: str) -> None:
    names = list(runs)
    rows = [
        ("LOCK + POST 1 MB + UNLOCK, p50 (ms)", "cycle", "p50_ms", "lower"),
        ("GET 100 KB, 16 concurrent (req/s)", "get", "req_per_s", "higher"),
        ("lock grants/s, 50 contenders", "locks", "grants_per_s", "higher"),
        ("lock attempts/s, 50 contenders", "locks", "attempts_per_s", "higher"),
    ]
    print(f"\nmedians of {len(runs[names[0]])} interleaved rounds; loadavg before {before}, after {after}")
    header = ["", *names] + (["ours / nimbolus"] if "nimbolus" in names else [])
    lines = [header]
    for label, test, key, better in rows:
        values = {name: _median(runs[name], test, key) for name in names}
        if all(value != value for value in values.values()):  # all NaN: a test not run
            continue
        line = [label, *(f"{values[n]:,.1f}" if values[n] < 100 else f"{values[n]:,.0f}" for n in names)]
        if "nimbolus" in names and values["nimbolus"]:
            ratio = values["ours"] / values["nimbolus"]
            line.append(f"{ratio:.2f}x ({better} is better)")
        lines.append(line)
    gets = {name: _median(runs[name], "get", "req_per_s") for name in names}
    per_get = [f"{1e6 / gets[n]:,.1f}" for n in names]
    lines.append(["GET: time per request (us, 1/throughput)", *per_get])
    doubles = {n: sum(run.get("locks", {}).get("double_grants", 0) for run in runs[n]) for n in names}
    lines.append(["double grants (all rounds)", *(str(doubles[n]) for n in names)])
    if any("replicas" in run for run in runs["ours"]):
        replicas = runs["ours"]
        grants = statistics.median(r["replicas"].get("grants_per_s", float("nan")) for r in replicas)
        dbl = sum(r["replicas"].get("double_grants", 0) for r in replicas)
        lines.append(["ours, 2 replicas: grants/s, double grants", f"{grants:,.0f}, {dbl}"])
    lines.append(["peak RSS (MB)", *(f"{rss[n]:.0f}" for n in names)])
    cpu = {
        n: max(
            (run.get(t, {}).get("client_cpu_share", 0) for run in runs[n] for t in ("cycle", "get", "locks")),
            default=0,
        )
        for n in names
    }
    lines.append(["client CPU share, max (cores)", *(f"{cpu[n]:.2f}" for n in names)])
    errors = {
        n: sum(run[t].get("errors", 0) + ("error" in run[t]) for run in runs[n] for t in run) for n in names
    }
    lines.append(["client errors (all rounds)", *(str(errors[n]) for n in names)])
    widths = [max(len(line[i]) if i < len(line) else 0 for line in lines) for i in range(len(header))]
    for line in lines:
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)))


if __name__ == "__main__":
    main()
