"""`tofu init` + `tofu validate` with the real provider on every snapshot stack, and the
committed provider lock file honoured by init."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import TofuWorkspace
from e2e.conftest import WorkspaceFactory
from workflow.setup_tools import ROOT, Tools

pytestmark = pytest.mark.e2e

SNAPSHOTS = sorted((ROOT / "tests" / "__snapshots__" / "test_snapshots").glob("*.json"))
LOCK = ROOT / "stacks" / ".terraform.lock.hcl"


def tofu(tools: Tools, directory: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    import subprocess

    env = tools.environ()
    proc = subprocess.run(
        [tools.tofu, f"-chdir={directory}", *args, "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in ok, (
        f"tofu {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    )
    return proc.stdout + proc.stderr


def test_snapshots_exist() -> None:
    assert len(SNAPSHOTS) >= 4


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.stem for p in SNAPSHOTS])
def test_snapshot_stack_validates(snapshot: Path, tools: Tools, tmp_path: Path) -> None:
    stack = json.loads(snapshot.read_text())
    (tmp_path / "cdk.tf.json").write_text(json.dumps(stack))
    if "provider" in stack:
        shutil.copyfile(LOCK, tmp_path / ".terraform.lock.hcl")
    # -lockfile=readonly: the committed lock must already be complete for this provider.
    tofu(tools, tmp_path, "init", "-backend=false", "-input=false", "-lockfile=readonly")
    assert "Success! The configuration is valid." in tofu(tools, tmp_path, "validate")


def test_synthesized_stack_carries_the_committed_lock(
    make_workspace: WorkspaceFactory, pve: FakePveServer
) -> None:
    ws: TofuWorkspace = make_workspace(pve)
    stack_dir = ws.write().synth()
    lock = stack_dir / ".terraform.lock.hcl"
    assert lock.read_text() == LOCK.read_text()
    ws.tofu("init", "-no-color", "-input=false", "-lockfile=readonly")
    assert lock.read_text() == LOCK.read_text(), "init changed the lock file"
    installed = list((stack_dir / ".terraform" / "providers").glob("*/bpg/proxmox/*"))
    assert [p.name for p in installed] == ["0.111.1"]


def test_init_refuses_a_provider_the_lock_does_not_vouch_for(tools: Tools, tmp_path: Path) -> None:
    stack = json.loads(next(p for p in SNAPSHOTS if p.stem == "test_example_cluster").read_text())
    (tmp_path / "cdk.tf.json").write_text(json.dumps(stack))
    wrong = LOCK.read_text().replace('"h1:', '"h1:AAAA', 1)
    (tmp_path / ".terraform.lock.hcl").write_text(wrong)
    out = tofu(tools, tmp_path, "init", "-backend=false", "-input=false", ok=(1,))
    assert "checksum" in out.lower()
