"""Does every node answer on the Talos maintenance API (port 50000)?"""

from __future__ import annotations

import shutil
import socket
import subprocess

from config import InfraConfig

TALOS_PORT = 50000
TIMEOUT = 5.0


def verify(config: InfraConfig, port: int = TALOS_PORT) -> int:
    """Print one line per node; return 0 when all answer, 1 otherwise."""
    talosctl = shutil.which("talosctl")
    method = (
        "talosctl get disks --insecure"
        if talosctl and port == TALOS_PORT
        else f"TCP connect to port {port} (talosctl not found)"
        if not talosctl
        else f"TCP connect to port {port}"
    )
    print(f"checking {len(config.vms)} nodes with {method}")
    failed = 0
    for vm in config.vms:
        if talosctl and port == TALOS_PORT:
            proc = subprocess.run(
                [talosctl, "get", "disks", "--insecure", "--nodes", vm.address],
                capture_output=True,
                text=True,
                timeout=TIMEOUT * 3,
                check=False,
            )
            ok, detail = proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1]
        else:
            try:
                with socket.create_connection((vm.address, port), timeout=TIMEOUT):
                    ok, detail = True, ""
            except OSError as exc:
                ok, detail = False, exc.strerror or str(exc)
        failed += not ok
        print(
            f"  {'ok  ' if ok else 'FAIL'} {vm.name:20} {vm.address}:{port}"
            + (f"  ({detail})" if detail and not ok else "")
        )
    print(f"{len(config.vms) - failed}/{len(config.vms)} nodes answer")
    return 1 if failed else 0
