"""Tasks that need no Proxmox: secrets round trip, confirmations, stale plans, errors.

tofu plans new resources without calling the Proxmox API, so a local-state workspace
with an unreachable endpoint is enough here: its plans pass `--skip-preflight`, which lets
a plan (never an apply) go on when the Proxmox API does not answer at all. The full
lifecycle against fakepve and the state server is in test_tasks_lifecycle.py.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from tests.tasks.taskrun import STATE_PASSWORD, TOKEN_SECRET, TaskWorkspace
from workflow import secrets as sec
from workflow.setup_tools import tools_env


def add_secrets(ws: TaskWorkspace) -> None:
    with ws.cluster.open("a") as f:
        f.write(f'\ntfstate_password: "{STATE_PASSWORD}"\nproxmox_api_token_secret: "{TOKEN_SECRET}"\n')


def test_configure_encrypts_and_decrypts_with_a_throwaway_key(workspace: TaskWorkspace) -> None:
    add_secrets(workspace)
    proc = workspace.task("configure")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "created a new age key" in proc.stderr and "Back it up" in proc.stderr
    encrypted = (workspace.root / "secrets.sops.yaml").read_text()
    assert STATE_PASSWORD not in encrypted and TOKEN_SECRET not in encrypted
    assert "ENC[AES256_GCM" in encrypted
    assert (workspace.root / "age.key").stat().st_mode & 0o077 == 0
    # local state: configure ran init
    assert (workspace.stack_dir / ".terraform").is_dir()
    # decrypting gives back exactly what tofu's environment gets
    ws = workspace.paths
    got = sec.decrypt(ws, tools_env())
    assert got.tfstate_password == STATE_PASSWORD
    assert got.tofu_env()["PROXMOX_VE_API_TOKEN"] == f"root@pam!terraform={TOKEN_SECRET}"


def test_wrong_or_missing_age_key_gives_one_clear_line(workspace: TaskWorkspace, tmp_path_factory) -> None:
    add_secrets(workspace)
    assert workspace.task("configure").returncode == 0
    other = tmp_path_factory.mktemp("otherkey") / "age.key"

    missing = workspace.task("infra:output", env={"SOPS_AGE_KEY_FILE": str(other)})
    assert missing.returncode != 0
    assert (
        f"error: cannot decrypt {workspace.root / 'secrets.sops.yaml'}: age key file {other} "
        "not found; set SOPS_AGE_KEY_FILE"
    ) in missing.stderr

    subprocess.run(["age-keygen", "-o", str(other)], env=tools_env(), check=True, capture_output=True)
    wrong = workspace.task("infra:output", env={"SOPS_AGE_KEY_FILE": str(other)})
    assert wrong.returncode != 0
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is not one it was encrypted to; set SOPS_AGE_KEY_FILE" in errors[0]
    assert "Traceback" not in missing.stderr + wrong.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (("infra:destroy",), "refusing to DESTROY every VM and ISO in this stack without confirmation"),
        (("infra:apply-auto",), "refusing to apply changes without a saved plan without confirmation"),
        (
            ("infra:force-unlock", "LOCK_ID=0d1e2f"),
            "refusing to force-unlock state lock 0d1e2f without confirmation",
        ),
    ],
)
def test_destructive_tasks_refuse_without_confirmation(workspace: TaskWorkspace, args, what) -> None:
    proc = workspace.task(*args)
    assert proc.returncode != 0
    assert what in proc.stderr
    assert "pass --yes" in proc.stderr


def test_force_unlock_requires_lock_id(workspace: TaskWorkspace) -> None:
    proc = workspace.task("infra:force-unlock")
    assert proc.returncode != 0
    assert "LOCK_ID" in proc.stderr


def test_stale_plan_is_refused(workspace: TaskWorkspace) -> None:
    add_secrets(workspace)  # the provider wants a token even to plan
    assert workspace.task("configure").returncode == 0
    assert workspace.task("infra:plan", "--", "--skip-preflight").returncode == 0
    assert (workspace.stack_dir / "tfplan").exists()
    # change the config after planning: apply re-synthesizes and refuses the old plan
    workspace.nodes.write_text(workspace.nodes.read_text().replace("vm_memory: 12288", "vm_memory: 16384"))
    proc = workspace.task("infra:apply")
    assert proc.returncode != 0
    assert "config changed since the last synth" in proc.stderr
    assert "the saved plan was made from a different synthesized config" in proc.stderr


def test_plan_passes_extra_arguments_and_resynthesizes(workspace: TaskWorkspace) -> None:
    add_secrets(workspace)
    assert workspace.task("configure").returncode == 0
    workspace.nodes.write_text(workspace.nodes.read_text() + "\n# edited\n")
    proc = workspace.task(
        "infra:plan", "--", "--skip-preflight", "-target=proxmox_download_file.talos_iso_ce4c980550dd"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "preflight: warning: cannot reach the Proxmox API at https://pve.example.com:8006 (Failed to "
        "resolve 'pve.example.com'"
    ) in proc.stderr
    assert (
        "nothing was checked, not even which VMs are the stack's (--skip-preflight, a plan only: an apply "
        "refuses)"
    ) in proc.stderr
    refused = workspace.task("infra:apply-auto", "--", "--yes", "--skip-preflight")
    assert refused.returncode != 0
    assert (
        "preflight: PROBLEM: cannot reach the Proxmox API at https://pve.example.com:8006" in refused.stderr
    )
    assert "config changed since the last synth: synthesizing again" in proc.stderr
    assert "1 to add, 0 to change, 0 to destroy" in proc.stdout
    again = workspace.task("infra:validate")
    assert again.returncode == 0 and "synthesizing again" not in again.stderr


def test_synth_writes_the_stack_and_says_where(workspace: TaskWorkspace) -> None:
    proc = workspace.task("synth")
    assert proc.returncode == 0, proc.stderr
    assert "Synthesized stack 'proxmox': 6 nodes (3 controllers, 3 workers), 2 Talos ISOs" in proc.stderr
    assert (workspace.stack_dir / "cdk.tf.json").exists()


def test_bad_config_fails_with_problem_lines(workspace: TaskWorkspace) -> None:
    workspace.nodes.write_text(
        workspace.nodes.read_text().replace('mac_addr: "bc:24:11:00:00:11"', 'mac_addr: "bc:24:11:00:00:10"')
    )
    proc = workspace.task("synth")
    assert proc.returncode != 0
    assert "nodes[1].mac_addr: duplicate MAC address bc:24:11:00:00:10" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_nodes_says_which_method(workspace: TaskWorkspace) -> None:
    nodes = [
        {
            "name": f"n{i}",
            "address": f"127.0.0.{i + 3}",
            "controller": True,
            "disk": "/dev/sda",
            "mac_addr": f"bc:24:11:00:00:9{i}",
            "schematic_id": "a" * 64,
        }
        for i in range(2)
    ]
    workspace.nodes.write_text(json.dumps({"nodes": nodes}))
    workspace.cluster.write_text(
        workspace.cluster.read_text().replace('node_cidr: "10.10.0.0/24"', 'node_cidr: "127.0.0.0/8"')
    )
    with socket.socket() as listener:  # the first node "answers" on the maintenance port
        listener.bind(("127.0.0.3", 50000))
        listener.listen(4)
        proc = workspace.task("infra:verify-nodes")
    assert "checking 2 nodes with" in proc.stdout
    assert (
        "TCP connect to port 50000 (talosctl not found)" in proc.stdout or "talosctl get disks" in proc.stdout
    )
    assert "ok   n0" in proc.stdout and "FAIL n1" in proc.stdout
    assert proc.returncode != 0 and "1/2 nodes answer" in proc.stdout


def test_fmt_check_passes_on_the_project(workspace: TaskWorkspace) -> None:
    proc = workspace.task("infra:fmt-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already formatted" in proc.stdout + proc.stderr
    assert "Success: no issues found in " in proc.stdout  # mypy, over the product's packages


def test_fmt_formats_and_fmt_check_catches(workspace: TaskWorkspace, tmp_path_factory) -> None:
    code = tmp_path_factory.mktemp("code")
    messy = code / "messy.py"
    messy.write_text("import os\nx = {  'a':1 }\nprint( os.sep,x )\n")
    before = workspace.task("infra:fmt-check", "--", str(code))
    assert before.returncode != 0 and "1 file would be reformatted" in before.stdout
    assert workspace.task("infra:fmt", "--", str(code)).returncode == 0
    assert messy.read_text() == 'import os\n\nx = {"a": 1}\nprint(os.sep, x)\n'
    assert workspace.task("infra:fmt-check", "--", str(code)).returncode == 0


def test_fmt_check_catches_a_type_error(workspace: TaskWorkspace, tmp_path_factory) -> None:
    code = tmp_path_factory.mktemp("typed")
    (code / "typed.py").write_text('def half(n: int) -> int:\n    return n // 2\n\n\nhalf("4")\n')
    proc = workspace.task("infra:fmt-check", "--", str(code))
    assert proc.returncode != 0
    assert 'Argument 1 to "half" has incompatible type "str"; expected "int"' in proc.stdout


def test_lock_id_reaches_the_command_as_one_argument(workspace: TaskWorkspace) -> None:
    marker = workspace.root / "injected"
    proc = workspace.task("infra:force-unlock", f"LOCK_ID=abc; touch {marker}")
    assert proc.returncode != 0
    assert f"refusing to force-unlock state lock abc; touch {marker} without confirmation" in proc.stderr
    assert not marker.exists()


def test_configure_keeps_credentials_cluster_yaml_no_longer_holds(workspace: TaskWorkspace) -> None:
    add_secrets(workspace)
    assert workspace.task("configure").returncode == 0
    # the operator removes the token secret from cluster.yaml after the first configure
    workspace.cluster.write_text(
        "\n".join(
            line
            for line in workspace.cluster.read_text().splitlines()
            if "proxmox_api_token_secret" not in line
        )
    )
    proc = workspace.task("configure")
    assert proc.returncode == 0, proc.stderr
    ws = workspace.paths
    kept = sec.decrypt(ws, tools_env())
    assert kept.proxmox_api_token_secret == TOKEN_SECRET
    assert kept.tfstate_password == STATE_PASSWORD
