"""Tasks the way the seed's users run them: their own `task`, no virtual environment.

A copy of go-task on a PATH without the project's .venv (VIRTUAL_ENV unset) runs the
project's Python through scripts/py; scripts/py without a .venv fails in one line.
Confirmation hints name the task that was run; LOCK_ID reaches tofu byte for byte
(go-task expands `{{...}}` in command-line variables: the state server's lock is freed
only by the exact ID); `secrets-edit` without a change exits 0; an age key file that is
not an age key says so in one line, showing none of its content.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devenv.workspace import HttpState, example_cluster
from tests.tasks.taskrun import (
    ANSI,
    ROOT,
    STATE_PASSWORD,
    VENV_BIN,
    TaskWorkspace,
    held_lock,
    state_lock_request,
)
from workflow import secrets as sec
from workflow.setup_tools import tools_env

pytestmark = pytest.mark.e2e


def plain_env(ws: TaskWorkspace, bin_dir: Path) -> dict[str, str]:
    """The workspace's environment as a user's shell has it: no venv anywhere."""
    env = ws.env()
    for var in ("VIRTUAL_ENV", "PIPENV_ACTIVE", "PYTHONPATH", "PYTHONHOME"):
        env.pop(var, None)
    venv = str(VENV_BIN)
    dirs = [d for d in env["PATH"].split(os.pathsep) if d and d != venv and ".venv" not in d]
    env["PATH"] = os.pathsep.join([str(bin_dir), *dirs])
    return env


@pytest.fixture
def own_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a copy of go-task, as a user installs it."""
    bin_dir = tmp_path_factory.mktemp("user-bin")
    shutil.copy2(VENV_BIN / "task", bin_dir / "task")
    return bin_dir


def run_task(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["task", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    proc.stdout, proc.stderr = ANSI.sub("", proc.stdout), ANSI.sub("", proc.stderr)
    return proc


@pytest.mark.parametrize(
    ("args", "ok", "expected"),
    [
        (("synth",), True, "Synthesized stack 'proxmox': 6 nodes (3 controllers, 3 workers), 2 Talos ISOs"),
        (("infra:validate",), True, "Success! The configuration is valid."),
        (("infra:fmt-check", "--", "{clean}"), True, "1 file already formatted"),
        (("infra:destroy",), False, "pass --yes (`task infra:destroy -- --yes`)"),
    ],
)
def test_plain_task_without_the_venv(
    workspace: TaskWorkspace, own_task: Path, tmp_path: Path, args, ok, expected
) -> None:
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "ok.py").write_text('print("formatted")\n')
    env = plain_env(workspace, own_task)
    # A ruff of the user's own (pipx, a distribution package) is left out: the task must
    # find the project's.
    dirs = env["PATH"].split(os.pathsep)
    env["PATH"] = os.pathsep.join(d for d in dirs if not shutil.which("ruff", path=d))
    assert shutil.which("task", path=env["PATH"]) == str(own_task / "task")
    proc = run_task(env, *[a.format(clean=clean) for a in args])
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) is ok, out[-3000:]
    assert expected in out
    assert "ModuleNotFoundError" not in out and "Traceback" not in out


def test_scripts_py_without_a_venv_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "py", tmp_path / "scripts" / "py")
    proc = subprocess.run(
        [str(tmp_path / "scripts" / "py"), "-m", "workflow", "synth"], capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert (
        proc.stderr
        == "error: the project's Python environment (.venv) is missing: run scripts/bootstrap first\n"
    )


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("infra:destroy",), "`task infra:destroy -- --yes`"),
        (("infra:apply-auto",), "`task infra:apply-auto -- --yes`"),
        (("infra:force-unlock", "LOCK_ID=0d1e"), "`task infra:force-unlock LOCK_ID=<id> -- --yes`"),
    ],
)
def test_confirmation_hint_names_the_task_that_ran(workspace: TaskWorkspace, args, hint) -> None:
    proc = workspace.task(*args)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert (
        proc.returncode != 0
        and len(errors) == 1
        and errors[0].endswith(
            f"without confirmation: there is no terminal to ask on; pass --yes ({hint}) or set INFRA_AUTO_APPROVE=true"
        )
    ), proc.stderr


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        (["destroy"], "`python -m workflow destroy --yes`"),
        (["force-unlock", "0d1e"], "`python -m workflow force-unlock <id> --yes`"),
    ],
)
def test_confirmation_hint_without_task(workspace: TaskWorkspace, command, hint) -> None:
    env = {k: v for k, v in workspace.env().items() if k != "WORKFLOW_TASK"}
    proc = subprocess.run(
        [sys.executable, "-m", "workflow", *command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and f"pass --yes ({hint})" in proc.stderr


# --- LOCK_ID, byte for byte, against the state server ------------------------------


@pytest.fixture
def with_state(workspace: TaskWorkspace, state: HttpState) -> TaskWorkspace:
    cluster = {**example_cluster(), "tfstate_url": state.url, "tfstate_password": state.password}
    workspace.cluster.write_text(yaml.safe_dump(cluster, sort_keys=False))
    assert workspace.task("configure").returncode == 0
    return workspace


@pytest.mark.parametrize(
    ("lock_id", "given"),
    [
        ("{{.TASK}}", "argument"),
        ('{{printf "%s" "x"}}', "argument"),
        ("{{.ROOT_DIR}} and {{ .LOCK_ID }}", "argument"),
        ("spaces 'single' \"double\" $HOME `id` ; touch injected", "argument"),
        ("ünïcødé-🔒", "argument"),
        # go-task refuses a command-line variable that is not a valid template; from the
        # environment it takes any value as it is
        ("{{-}} not a template {{", "environment"),
        ("{{.TASK}} $HOME", "environment"),
    ],
)
def test_lock_id_reaches_tofu_byte_for_byte(
    with_state: TaskWorkspace, state: HttpState, lock_id: str, given: str
) -> None:
    info = {"ID": lock_id, "Operation": "OperationTypeApply", "Who": "someone@elsewhere", "Version": "1.11.6"}
    assert state_lock_request(state, "LOCK", json.dumps(info).encode())[0] == 200
    assert held_lock(state) == lock_id

    def force_unlock(value: str) -> subprocess.CompletedProcess[str]:
        if given == "environment":
            return with_state.task("infra:force-unlock", "--", "--yes", env={"LOCK_ID": value})
        return with_state.task("infra:force-unlock", f"LOCK_ID={value}", "--", "--yes")

    near = force_unlock(lock_id + "x")
    assert near.returncode != 0 and held_lock(state) == lock_id  # another ID frees nothing
    proc = force_unlock(lock_id)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert held_lock(state) is None
    assert not (ROOT / "injected").exists() and not (with_state.root / "injected").exists()


# --- sops and age -----------------------------------------------------------------------


def test_secrets_edit_without_change_exits_0(workspace: TaskWorkspace) -> None:
    with workspace.cluster.open("a") as f:
        f.write(f'\ntfstate_password: "{STATE_PASSWORD}"\n')
    assert workspace.task("configure").returncode == 0
    secrets_file = workspace.root / "secrets.sops.yaml"
    before = secrets_file.read_bytes()
    proc = workspace.task("infra:secrets-edit", env={"EDITOR": shutil.which("true") or "true"})
    assert proc.returncode == 0, proc.stderr
    assert f"no change: {secrets_file} stays as it was" in proc.stderr
    assert secrets_file.read_bytes() == before


KEY_SENTINEL = "SENTINEL-not-an-age-key-4c1d"


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not a key\n",
        "AGE-SECRET-KEY-1XYZ\n",
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_SENTINEL}\n-----END OPENSSH PRIVATE KEY-----\n",
        f"# created: 2026-01-01\n# public key: age1{KEY_SENTINEL}\n",
    ],
)
@pytest.mark.parametrize("task", ["infra:output", "infra:secrets-edit"])
def test_a_key_file_that_is_not_an_age_key_says_so(workspace: TaskWorkspace, content: str, task: str) -> None:
    sec.encrypt(sec.Secrets(tfstate_password=STATE_PASSWORD), workspace.paths, tools_env())
    key = workspace.root / "age.key"
    key.write_text(content)
    proc = workspace.task(task, env={"EDITOR": shutil.which("true") or "true"})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and errors == [
        f"error: {key} is not an age key file (no AGE-SECRET-KEY-1... line that age-keygen -y "
        "accepts); point SOPS_AGE_KEY_FILE at your key"
    ], proc.stderr
    assert KEY_SENTINEL not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"JSII_NODE": "/nonexistent/node"},
            "Node.js (/nonexistent/node) not found: cdktf needs Node.js 20.9 or newer",
        ),
        ({"TALOS_CDKTF_NODE_MIN": "99.0"}, " is too old: cdktf needs Node.js 99.0 or newer"),
    ],
)
def test_a_task_without_a_usable_node_is_one_line(workspace: TaskWorkspace, env, expected) -> None:
    proc = workspace.task("synth", env=env)
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("task: ")]
    assert proc.returncode != 0 and len(ours) == 1 and ours[0].endswith(expected), proc.stderr
    assert not workspace.outdir.exists()
