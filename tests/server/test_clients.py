"""The real clients through the server: OpenTofu always, Terraform where installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfstate_harness import (
    TERRAFORM,
    Paths,
    Server,
    kill_group,
    lock_body,
    make_client,
    wait_until,
)

# The one permitted conditional: Terraform is tested where it is installed.
CLIENTS = ["tofu"] + (["terraform"] if TERRAFORM else [])


def binary(name: str, tools_env: dict[str, str]) -> str:
    return tools_env["TOFU"] if name == "tofu" else str(TERRAFORM)


def held_lock(server: Server, p: Paths) -> dict[str, str] | None:
    reply = server.request("GET", p.lock)
    return reply.json() if reply.status == 200 else None


def current_state(server: Server, p: Paths) -> dict[str, object]:
    reply = server.request("GET", p.state)
    assert reply.status == 200
    return json.loads(reply.body)


@pytest.mark.parametrize("client_name", CLIENTS)
def test_init_apply_plan_state_list_force_unlock(
    client_name: str, server: Server, p: Paths, tools_env: dict[str, str], tmp_path: Path
) -> None:
    client = make_client(binary(client_name, tools_env), tmp_path / "work", tools_env, server, p.name)
    client.run("init", "-no-color")
    client.run("apply", "-no-color", "-auto-approve")
    first = current_state(server, p)
    assert client.run("plan", "-no-color", "-detailed-exitcode").returncode == 0  # no changes
    listed = client.run("state", "list").stdout.split()
    assert listed == ["terraform_data.fast", "terraform_data.slow"]
    client.run("apply", "-no-color", "-auto-approve", "-var", "label=two")
    second = current_state(server, p)
    assert second["lineage"] == first["lineage"]
    assert int(second["serial"]) > int(first["serial"])  # type: ignore[call-overload]
    assert second["outputs"]["label"]["value"] == "two"  # type: ignore[index]
    assert held_lock(server, p) is None
    versions = server.request("GET", p.versions).json()
    assert versions[0]["serial"] == second["serial"]
    assert {v["serial"] for v in versions} >= {first["serial"], second["serial"]}

    # A lock left behind by a crashed run: force-unlock it with this client.
    assert server.request("LOCK", p.lock, lock_body("left-behind")).status == 200
    failed = client.run("plan", "-no-color", "-lock-timeout=0s", check=False)
    assert failed.returncode != 0 and "lock" in failed.stderr.lower()
    client.run("force-unlock", "-force", "left-behind")
    assert held_lock(server, p) is None
    assert client.run("plan", "-no-color", "-detailed-exitcode", "-var", "label=two").returncode == 0


def test_two_applies_at_once(server: Server, p: Paths, tools_env: dict[str, str], tmp_path: Path) -> None:
    tofu = tools_env["TOFU"]
    first = make_client(tofu, tmp_path / "a", tools_env, server, p.name)
    second = make_client(tofu, tmp_path / "b", tools_env, server, p.name)
    first.run("init", "-no-color")
    second.run("init", "-no-color")
    slow = first.start("apply", "-no-color", "-auto-approve", "-var", "label=first", "-var", "sleep=3")
    try:
        holder = wait_until(lambda: held_lock(server, p), 60, "the first apply to lock")
        other = second.run(
            "apply", "-no-color", "-auto-approve", "-var", "label=second", "-lock-timeout=0s", check=False
        )
        out, err = slow.communicate(timeout=120)
    finally:
        kill_group(slow)
    assert slow.returncode == 0, out + err
    assert other.returncode != 0
    # The loser is told who holds the lock (OpenTofu parses the 423 body as LockInfo).
    assert "Error acquiring the state lock" in other.stderr
    assert holder["ID"] in other.stderr and holder["Who"] in other.stderr
    assert "OperationTypeApply" in other.stderr
    # Nothing lost: the state is the winner's, complete, and the lock is gone.
    state = current_state(server, p)
    assert state["outputs"]["label"]["value"] == "first"  # type: ignore[index]
    assert {r["name"] for r in state["resources"]} == {"fast", "slow"}  # type: ignore[union-attr,index]
    assert held_lock(server, p) is None
    plan = first.run("plan", "-no-color", "-detailed-exitcode", "-var", "label=first", "-var", "sleep=3")
    assert plan.returncode == 0


@pytest.mark.parametrize("unlocker", CLIENTS)
def test_killed_apply_leaves_last_state_and_a_lock_force_unlock_clears(
    unlocker: str, server: Server, p: Paths, tools_env: dict[str, str], tmp_path: Path
) -> None:
    tofu = make_client(tools_env["TOFU"], tmp_path / "tofu", tools_env, server, p.name)
    tofu.run("init", "-no-color")
    tofu.run("apply", "-no-color", "-auto-approve")
    complete = server.request("GET", p.state).body
    versions_before = len(server.request("GET", p.versions).json())

    apply = tofu.start("apply", "-no-color", "-auto-approve", "-var", "label=killed", "-var", "sleep=60")
    try:
        holder = wait_until(lambda: held_lock(server, p), 60, "the apply to lock")
        # Wait until it is inside the provisioner: the `slow` resource is being created.
        wait_until(
            lambda: _running_sleep(apply.pid),
            60,
            "the apply to run its provisioner",
        )
    finally:
        kill_group(apply)
    assert apply.returncode == -9

    # The state is the last complete one the server accepted: valid, same lineage, the
    # newest version (tofu only writes whole snapshots, and wrote none in this run).
    state = server.request("GET", p.state)
    assert state.status == 200
    parsed = json.loads(state.body)
    assert parsed["lineage"] == json.loads(complete)["lineage"]
    versions = server.request("GET", p.versions).json()
    assert server.request("GET", f"{p.versions}/{versions[0]['serial']}").body == state.body
    if len(versions) == versions_before:
        assert state.body == complete
    assert held_lock(server, p) == holder

    unlocking = (
        tofu
        if unlocker == "tofu"
        else make_client(binary(unlocker, tools_env), tmp_path / unlocker, tools_env, server, p.name)
    )
    if unlocking is not tofu:
        unlocking.run("init", "-no-color")
    unlocking.run("force-unlock", "-force", holder["ID"])
    assert held_lock(server, p) is None
    tofu.run("apply", "-no-color", "-auto-approve", "-var", "label=after")
    assert current_state(server, p)["outputs"]["label"]["value"] == "after"  # type: ignore[index]


def _running_sleep(group: int) -> bool:
    """True once a `sleep` process runs in the process group of the apply."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        # comm is in parentheses; pgrp is the 3rd field after it.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == "sleep" and int(fields[2]) == group:
            return True
    return False
