"""Running main.py on bad input and checking every promise of the README's error section:
exit code 2, exactly the expected `FILE:LINE: key: what (expected ...)` lines, no
traceback, no byte of a secret anywhere, and a previous cdktf.out left byte-identical.

Imported as `tests.rejects`. The YAML texts are written out (not dumped) so that every
line number in an expectation can be read off the text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT, SCHEMATIC_A, SCHEMATIC_B, ConfigDir

# cluster.yaml: line 1..6 as below; cases append their own lines from line 7 on.
CLUSTER = """\
node_cidr: "10.10.0.0/24"
cluster_api_addr: "10.10.0.100"
node_default_gateway: "10.10.0.1"
cluster_svc_cidr: "10.43.0.0/16"
proxmox_api_url: "https://pve.example.com:8006/api2/json"
proxmox_node: "pve1"
"""


def cluster_with(*lines: str) -> str:
    """CLUSTER with each `key: value` line replacing the key's own line, or appended."""
    text = CLUSTER
    for line in lines:
        key = line.split(":", 1)[0]
        own = [old for old in text.splitlines(keepends=True) if old.startswith(key + ":")]
        text = text.replace(own[0], line + "\n") if own else text + line + "\n"
    return text


def node_text(index: int, name: str | None = None, *, extra: str = "", **fields: str) -> str:
    """One entry of nodes.yaml: seven lines (plus `extra`), values as YAML text."""
    values = {
        "name": name or f"cp-{index}",
        "address": f'"10.10.0.{10 + index}"',
        "controller": "true",
        "disk": "/dev/sda",
        "mac_addr": f'"bc:24:11:00:00:{10 + index:02x}"',
        "schematic_id": SCHEMATIC_A if index % 2 == 0 else SCHEMATIC_B,
        "vm_id": str(8000 + index),
        **fields,
    }
    first, *rest = values.items()
    lines = [f"  - {first[0]}: {first[1]}", *(f"    {k}: {v}" for k, v in rest)]
    return "\n".join(lines) + "\n" + extra


# nodes.yaml: `nodes:` on line 1, node 0 on lines 2..8, node 1 on lines 9..15.
NODES = "nodes:\n" + node_text(0) + node_text(1)


def nodes_with(*entries: str) -> str:
    return "nodes:\n" + "".join(entries)


SUMMARY_ONE = "1 problem found; nothing was written."


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class BadInput(ConfigDir):
    """A ConfigDir with a previous cdktf.out; `reject` runs main.py and checks it all."""

    def run(self, *, cluster: str | Path | None = None, nodes: str | Path | None = None) -> Outcome:
        env = self.env()
        if cluster is not None:
            env["CLUSTER_CONFIG"] = str(cluster)
        if nodes is not None:
            env["NODES_CONFIG"] = str(nodes)
        # A subprocess with a timeout: a FIFO or /dev/zero that hung would fail, not block.
        proc = subprocess.run(
            [sys.executable, str(ROOT / "main.py")],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def reject(
        self,
        expected: list[str],
        *,
        secrets: tuple[str, ...] = (),
        cluster: str | Path | None = None,
        nodes: str | Path | None = None,
    ) -> Outcome:
        """Expected lines use {c} and {n} for the two file names."""
        before = files_under(self.outdir)
        outcome = self.run(cluster=cluster, nodes=nodes)
        c, n = str(cluster or self.cluster), str(nodes or self.nodes)
        want = [line.replace("{c}", c).replace("{n}", n) for line in expected]
        count = len(want)
        want.append(f"{count} problem{'s' if count != 1 else ''} found; nothing was written.")
        assert outcome.code == 2, outcome
        assert "Traceback" not in outcome.stderr and outcome.stdout == "", outcome
        assert outcome.lines == want
        assert files_under(self.outdir) == before
        for secret in secrets:
            assert_no_piece_of(secret, outcome.stdout + outcome.stderr)
            for data in files_under(self.outdir).values():
                assert_no_piece_of(secret, data.decode("utf-8", "replace"))
        return outcome


def assert_no_piece_of(secret: str, text: str, piece: int = 4) -> None:
    """No run of `piece` characters of the secret (every window) appears in the text."""
    for start in range(max(1, len(secret) - piece + 1)):
        window = secret[start : start + piece]
        assert window not in text, f"{window!r} of a secret appears in: {text!r}"


def mkfifo(path: Path) -> Path:
    os.mkfifo(path)
    return path
