"""Two syntheses of one workspace at once both succeed (output_dir.output_lock).

Seen before the lock: two `python -m workflow synth` at once, the config changed before
each pair, and in some rounds one exited 2 with `cdktf.out: cannot write the output
directory (No such file or directory)`, the two swaps moving the same carried files. Now
the second waits for the first: each round's final output is one of the two complete
outputs, byte for byte, with the stamp of the config that made it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigPaths, load_config
from main import synthesize
from tests.support import EXAMPLES, ROOT
from workflow.synth import STAMP, inputs_digest
from workflow.workspace import Workspace

ROUNDS = 10
STAGING = ".cdktf-new-"
MEMORY = "vm_memory: 12288"  # a line of the bundled nodes.yaml, changed each round
# Files the previous output holds that synthesis does not write: each is carried over by
# a rename of its own, which makes two swaps overlap as they did when the race was seen.
CARRIED = [f"stacks/proxmox/kept-{n:04d}" for n in range(1500)] + [
    "stacks/proxmox/.terraform/providers/marker"
]

ENSURE_SYNTH = """
from workflow.synth import ensure_synth, load
from workflow.workspace import Workspace
ws = Workspace.from_env()
ensure_synth(ws, load(ws))
"""

HOLD_LOCK = """
import sys
from pathlib import Path
from output_dir import output_lock
with output_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (None if p.is_dir() and not p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def synthesized(output: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """An output's tree without what was carried over and the workflow's stamp."""
    carried_dirs = {"stacks/proxmox/.terraform", "stacks/proxmox/.terraform/providers"}
    return {k: v for k, v in output.items() if k not in CARRIED and k != STAMP and k not in carried_dirs}


class Workspaces:
    """cluster.yaml and two nodes.yaml (a/ and b/) writing one cdktf.out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = root / "cluster.yaml"
        self.outdir = root / "cdktf.out"
        root.mkdir(parents=True)
        self.cluster.write_text(EXAMPLES.joinpath("cluster.yaml").read_text())
        for side in ("a", "b"):
            (root / side).mkdir()

    def nodes(self, side: str) -> Path:
        return self.root / side / "nodes.yaml"

    def write(self, side: str, memory: int) -> None:
        text = EXAMPLES.joinpath("nodes.yaml").read_text()
        assert MEMORY in text
        self.nodes(side).write_text(text.replace(MEMORY, f"vm_memory: {memory}"))

    def workspace(self, side: str) -> Workspace:
        return Workspace(
            self.cluster,
            self.nodes(side),
            self.root / "secrets.sops.yaml",
            self.root / "age.key",
            self.outdir,
        )

    def env(self, side: str) -> dict[str, str]:
        return {
            **os.environ,
            "CLUSTER_CONFIG": str(self.cluster),
            "NODES_CONFIG": str(self.nodes(side)),
            "CDKTF_OUTDIR": str(self.outdir),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        }

    def start(self, side: str, how: str) -> subprocess.Popen[str]:
        args = ["-m", "workflow", "synth"] if how == "synth" else ["-c", ENSURE_SYNTH]
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env(side),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def reference(tmp: Path, ws: Workspaces, side: str) -> dict[str, bytes | None]:
    """What synthesizing `side`'s config alone writes (the same layout elsewhere)."""
    (tmp / side).mkdir(parents=True)
    cluster, nodes = tmp / "cluster.yaml", tmp / side / "nodes.yaml"
    cluster.write_bytes(ws.cluster.read_bytes())
    nodes.write_bytes(ws.nodes(side).read_bytes())
    synthesize(load_config(ConfigPaths(cluster, nodes)).config, str(tmp / "cdktf.out"))
    return tree(tmp / "cdktf.out")


@pytest.fixture
def spaces(tmp_path: Path) -> Workspaces:
    ws = Workspaces(tmp_path / "ws")
    ws.write("a", 12288)
    first = subprocess.run(
        [sys.executable, "-m", "workflow", "synth"],
        cwd=ROOT,
        env=ws.env("a"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    for name in CARRIED:
        path = ws.outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return ws


def test_two_syntheses_at_once_both_succeed(spaces: Workspaces, tmp_path: Path) -> None:
    """Each round: new configs for both, then `workflow synth` with a second `workflow
    synth` (even rounds) or with ensure_synth, the path of infra:plan and the other tofu
    tasks (odd rounds), started together."""
    for n in range(ROUNDS):
        spaces.write("a", 13312 + 2048 * n)
        spaces.write("b", 14336 + 2048 * n)
        expected = {side: reference(tmp_path / f"ref-{n}-{side}", spaces, side) for side in ("a", "b")}
        assert expected["a"] != expected["b"]
        second = "synth" if n % 2 == 0 else "ensure_synth"
        procs = [spaces.start("a", "synth"), spaces.start("b", second)]
        results = [(proc.wait(timeout=300), *proc.communicate()) for proc in procs]
        for code, _out, err in results:
            assert code == 0, f"round {n} ({second}): {err}"
            assert "cannot write" not in err

        final = tree(spaces.outdir)
        winners = [side for side in ("a", "b") if synthesized(final) == expected[side]]
        assert len(winners) == 1, f"round {n}: the output is neither run's whole output"
        # The stamp belongs to the output it sits in: ensure_synth trusts it.
        stamp = (spaces.outdir / STAMP).read_text().strip()
        assert stamp == inputs_digest(spaces.workspace(winners[0])), f"round {n}"
        for name in CARRIED:
            assert (spaces.outdir / name).read_text() == name
        assert [p.name for p in spaces.root.iterdir() if p.name.startswith(STAGING)] == []


def test_a_second_synthesis_waits_for_the_first(spaces: Workspaces) -> None:
    """While another process holds the output's lock a synthesis says so, writes nothing,
    and finishes once the lock is free."""
    before = tree(spaces.outdir)
    spaces.write("b", 16384)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(spaces.outdir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiting = spaces.start("b", "synth")
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert line == f"{spaces.outdir}: waiting for another synthesis to finish\n"
        assert waiting.poll() is None  # still waiting: it cannot have the lock yet
        assert tree(spaces.outdir) == before
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    _out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert synthesized(tree(spaces.outdir)) != synthesized(before)
    assert (spaces.outdir / STAMP).read_text().strip() == inputs_digest(spaces.workspace("b"))
