"""Helpers for the preflight and fault tests: the fake's state to compare before and after a
refusal, the requests that would have changed something, and lines of a task's output."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from devenv.fakepve import FakePveServer

WRITES = ("POST", "PUT", "DELETE")


def fake_state(pve: FakePveServer) -> Any:
    """Everything a change could touch: every guest (config, power, lock) and every host's
    storage content."""

    def read(p: Any) -> Any:
        guests = sorted(
            (
                g.vmid,
                type(g).__name__,
                g.node,
                g.status,
                sorted(g.config.items()),
                sorted(g.pending.items()),
                g.lock,
            )
            for g in [*p.vms, *p.cts]
        )
        storages = {
            host: {
                name: (sorted(store.get("files", ())), sorted(store.get("volumes", {})))
                for name, store in sorted(p.storages_on(host).items())
            }
            for host in sorted(p.nodes)
        }
        return guests, storages

    return pve.call(read)


def request_count(pve: FakePveServer) -> int:
    return pve.call(lambda p: len(p.requests))


def writes_since(pve: FakePveServer, start: int) -> list[tuple[str, str]]:
    """The requests since `start` that could have changed the Proxmox."""
    return pve.call(lambda p: [(m, path) for m, path, _ in p.requests[start:] if m in WRITES])


def problems(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("preflight: PROBLEM: ")]


def line_of(path: Path, text: str) -> int:
    """The 1-based line of `path` where `text` first appears."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
