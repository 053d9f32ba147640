"""`npx cdktf synth` (the CLI route) writes the same bytes as `python main.py`, from a
fresh shell: no activated virtual environment, no pipenv on PATH (cdktf.json runs the
app through scripts/py, which finds the project's .venv itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import EXAMPLES, ROOT, ConfigDir


def test_cdktf_synth_matches_main_py(example_dir: ConfigDir) -> None:
    npx = shutil.which("npx")
    assert npx, "Node.js/npx is required (scripts/bootstrap installs the cdktf CLI)"
    assert (ROOT / "node_modules" / ".bin" / "cdktf").exists(), "run scripts/bootstrap first"
    direct = example_dir.run_main()
    assert direct.returncode == 0, direct.stderr
    expected = (example_dir.outdir / "stacks" / "proxmox" / "cdk.tf.json").read_bytes()

    cli_out = example_dir.root / "cli.out"
    env = {
        "HOME": os.environ.get("HOME", str(example_dir.root)),
        "PATH": fresh_shell_path(),
        "CLUSTER_CONFIG": str(example_dir.cluster),
        "NODES_CONFIG": str(example_dir.nodes),
        "CHECKPOINT_DISABLE": "1",
        "CI": "1",
    }
    # The CLI picks the directory itself (--output) and passes it to the app as CDKTF_OUTDIR.
    proc = subprocess.run(
        [npx, "--no-install", "cdktf", "synth", "--output", str(cli_out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (cli_out / "stacks" / "proxmox" / "cdk.tf.json").read_bytes() == expected


def fresh_shell_path() -> str:
    """Node's directory and the system's: neither pipenv nor the project's venv on it."""
    node = shutil.which("node")
    assert node, "Node.js is required"
    dirs = [os.path.dirname(node), "/usr/bin", "/bin"]
    path = os.pathsep.join(d for d in dict.fromkeys(dirs) if shutil.which("pipenv", path=d) is None)
    assert shutil.which("bash", path=path), "the test needs bash on the system PATH"
    return path


@pytest.mark.parametrize("var", ["CLUSTER_CONFIG", "NODES_CONFIG"])
def test_env_paths_are_honoured(tmp_path, var: str) -> None:
    d = ConfigDir(tmp_path)
    d.write(EXAMPLES.joinpath("cluster.yaml").read_text(), EXAMPLES.joinpath("nodes.yaml").read_text())
    moved = tmp_path / "elsewhere.yaml"
    os.replace(d.cluster if var == "CLUSTER_CONFIG" else d.nodes, moved)
    env = {**d.env(), var: str(moved)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 nodes (3 controllers, 3 workers), 2 Talos ISOs" in proc.stdout
