"""Does every node answer on the Talos maintenance API (port 50000)?"""

from __future__ import annotations

import shutil
import socket
import subprocess

from config import InfraConfig

TALOS_PORT = 50000
TIMEOUT = 5.0


def _talosctl(talosctl: str, address: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            [talosctl, "get", "disks", "--insecure", "--nodes", address],
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 3,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within {TIMEOUT * 3:.0f} s"
    return proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1]


def _tcp(address: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((address, port), timeout=TIMEOUT):
            return True, ""
    except OSError as exc:
        return False, exc.strerror or str(exc) or type(exc).__name__


def verify(config: InfraConfig, *, tcp_only: bool = False) -> int:
    """Print one line per node; return 0 when all answer, 1 otherwise. `talosctl get disks
    --insecure` when talosctl is installed (unless tcp_only), else a TCP connect."""
    talosctl = None if tcp_only else shutil.which("talosctl")
    if talosctl:
        method = "talosctl get disks --insecure"
    else:
        why = "--tcp" if tcp_only else "talosctl not found"
        method = f"TCP connect to port {TALOS_PORT} ({why})"
    print(f"checking {len(config.vms)} nodes with {method}")
    failed = 0
    for vm in config.vms:
        ok, detail = _talosctl(talosctl, vm.address) if talosctl else _tcp(vm.address, TALOS_PORT)
        failed += not ok
        note = f"  ({detail})" if detail and not ok else ""
        print(f"  {'ok  ' if ok else 'FAIL'} {vm.name:20} {vm.address}:{TALOS_PORT}{note}")
    print(f"{len(config.vms) - failed}/{len(config.vms)} nodes answer")
    return 1 if failed else 0
