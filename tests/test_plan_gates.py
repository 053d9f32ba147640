"""The plan gates (workflow/rollout/gates.py): what a plan may not do to etcd's quorum,
replacements that need --allow-replace, and the steps printed before a controller goes.
Decided from the plan alone, so plain plan JSON is enough here; tests/tasks/
test_tasks_cluster.py runs the same refusals through `task` against tofu and the
real Kubernetes API."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from config import ConfigPaths, load_config
from tests.support import BASE_CLUSTER, ConfigDir, node
from workflow.errors import WorkflowError
from workflow.rollout.gates import check_quorum, confirm_replacements, deletion_steps, read_gates

VM = "proxmox_virtual_environment_vm"


def vm(name: str, role: str, n: int) -> dict[str, Any]:
    return {
        "name": name,
        "node_name": "pve1",
        "vm_id": 8000 + n,
        "tags": ["kubernetes", role],
        "ipv4_addresses": [["127.0.0.1"], [f"10.10.0.{10 + n}"]],
    }


def change(name: str, role: str, n: int, actions: list[str]) -> dict[str, Any]:
    before = vm(name, role, n)
    after = None if actions == ["delete"] else copy.deepcopy(before)
    if after is not None and "create" in actions:
        after["vm_id"] = 9000 + n
    return {
        "address": f"{VM}.talos_node_{name.replace('-', '_')}",
        "mode": "managed",
        "type": VM,
        "change": {"actions": actions, "before": before, "after": after},
    }


def plan(controllers: int, workers: int, **actions: list[str]) -> dict[str, Any]:
    """Every VM no-op unless named: plan(3, 1, cp_1=["delete"])."""
    out = []
    for i in range(controllers):
        out.append(change(f"cp-{i}", "controller", i, actions.get(f"cp_{i}", ["no-op"])))
    for i in range(workers):
        out.append(change(f"wk-{i}", "worker", 50 + i, actions.get(f"wk_{i}", ["no-op"])))
    return {"resource_changes": out}


@pytest.fixture
def config(tmp_path: Path) -> Any:
    """nodes.yaml knows cp-0 and wk-0 only: the others were removed from it."""
    cfg = ConfigDir(tmp_path)
    cfg.write(BASE_CLUSTER, [node("cp-0", 0), node("wk-0", 50, controller=False)])
    return load_config(ConfigPaths(cfg.cluster, cfg.nodes)).config


DEL, REPL = ["delete"], ["delete", "create"]


@pytest.mark.parametrize(
    ("controllers", "actions", "refused"),
    [
        (3, {"cp_1": DEL}, False),
        (3, {"cp_1": DEL, "cp_2": DEL}, True),  # two of three
        (3, {"cp_0": REPL, "cp_2": DEL}, True),  # a replacement counts as a loss too
        (3, {"cp_0": REPL, "cp_1": REPL, "cp_2": REPL}, True),  # the whole control plane
        (5, {"cp_1": DEL, "cp_3": DEL}, False),
        (5, {"cp_1": DEL, "cp_3": DEL, "cp_4": REPL}, True),  # three of five
        (1, {"cp_0": REPL}, True),  # the only controller, replaced
        (2, {"cp_1": DEL}, True),  # two members need both
        (4, {"cp_1": DEL}, False),
        (4, {"cp_1": DEL, "cp_2": DEL}, True),
        (3, {"wk_0": DEL, "wk_1": REPL}, False),  # workers do not count
    ],
)
def test_quorum(config: Any, controllers: int, actions: dict[str, list[str]], refused: bool) -> None:
    gates = read_gates(plan(controllers, 2, **actions), config)
    if not refused:
        check_quorum(gates)
        return
    with pytest.raises(WorkflowError) as info:
        check_quorum(gates)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("refusing to apply: the plan deletes or replaces ")
    assert "nothing was applied" in line
    assert "remove them one apply at a time, each after leaving etcd (`talosctl -n 10.10.0." in line
    for name in actions:
        if name.startswith("cp"):
            assert name.replace("_", "-") in line
    assert (len([a for a in actions if a.startswith("cp")]) >= controllers) == ("whole control plane" in line)


def test_quorum_line_exactly(config: Any) -> None:
    with pytest.raises(WorkflowError) as info:
        check_quorum(read_gates(plan(3, 3, cp_1=DEL, cp_2=DEL), config))
    assert str(info.value) == (
        "refusing to apply: the plan deletes or replaces 2 of the 3 controllers (cp-1, cp-2), and etcd "
        "would lose quorum (3 members need 2 alive); nothing was applied; remove them one apply at a "
        "time, each after leaving etcd (`talosctl -n 10.10.0.11 reset --graceful`)"
    )


def test_role_from_the_state_tags_not_only_nodes_yaml(config: Any) -> None:
    # cp-1 and cp-2 are no longer in nodes.yaml: their tags still say controller.
    gates = read_gates(plan(3, 1), config)
    assert gates.controllers == ("cp-0", "cp-1", "cp-2")
    untagged = plan(1, 1, cp_0=REPL)
    for rc in untagged["resource_changes"]:
        rc["change"]["before"]["tags"] = ["kubernetes"]
    gates = read_gates(untagged, config)
    assert [(x.name, x.role) for x in gates.losses] == [("cp-0", "controller")]  # from nodes.yaml


def test_replacement_needs_allow_replace(config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    monkeypatch.delenv("WORKFLOW_TASK", raising=False)
    gates = read_gates(plan(3, 2, cp_0=REPL, wk_1=REPL), config)
    said: list[str] = []
    with pytest.raises(WorkflowError) as info:
        confirm_replacements(gates, False, "apply", said.append)
    assert said == [
        "cp-0 (controller) is REPLACED: destroyed and created again; lost: its disk and its etcd member",
        "wk-1 (worker) is REPLACED: destroyed and created again; lost: its disk",
    ]
    assert str(info.value) == (
        "refusing to replace cp-0 (its disk and its etcd member); wk-1 (its disk) without "
        "--allow-replace; nothing was applied; review the plan, then run "
        "`python -m workflow apply --allow-replace`"
    )
    confirm_replacements(gates, True, "apply", said.append)  # allowed: goes on


def test_replacement_names_the_task(config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    monkeypatch.setenv("WORKFLOW_TASK", "infra:apply-auto")
    gates = read_gates(plan(3, 2, wk_0=REPL), config)
    with pytest.raises(WorkflowError, match=r"run `task infra:apply-auto -- --allow-replace`$"):
        confirm_replacements(gates, False, "apply-auto", lambda _line: None)


@pytest.mark.parametrize(("answer", "goes_on"), [("yes", True), ("y", False), ("", False), ("YES", False)])
def test_replacement_typed_yes(config: Any, answer: str, goes_on: bool) -> None:
    gates = read_gates(plan(3, 2, wk_0=REPL), config)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return answer

    if goes_on:
        confirm_replacements(gates, False, "apply", lambda _line: None, ask)
    else:
        with pytest.raises(WorkflowError, match=r"^not confirmed: nothing was applied \(would replace wk-0"):
            confirm_replacements(gates, False, "apply", lambda _line: None, ask)
    assert asked == ["Replace 1 VM, losing wk-0 (its disk)? Type 'yes' to continue: "]


def test_no_replacement_asks_nothing(config: Any) -> None:
    gates = read_gates(plan(3, 2, wk_0=DEL, cp_1=["update"]), config)

    def ask(_prompt: str) -> str:
        raise AssertionError("asked")

    confirm_replacements(gates, False, "apply", ask, ask)


def test_deleted_controller_steps(config: Any) -> None:
    gates = read_gates(plan(3, 2, cp_2=DEL, wk_0=DEL), config)
    assert deletion_steps(gates) == [
        "before cp-2 is deleted it must leave etcd: `talosctl -n 10.10.0.12 reset --graceful`"
    ]
    # The address from nodes.yaml wins over the agent's report; without either, a placeholder.
    bare = plan(3, 0, cp_2=DEL)
    bare["resource_changes"][2]["change"]["before"]["ipv4_addresses"] = [["127.0.0.1"], ["fe80::1"]]
    assert deletion_steps(read_gates(bare, config)) == [
        "before cp-2 is deleted it must leave etcd: `talosctl -n <cp-2's address> reset --graceful`"
    ]


def test_created_vms_are_no_loss(config: Any) -> None:
    created = plan(0, 0)
    created["resource_changes"].append(
        {
            "address": f"{VM}.x",
            "mode": "managed",
            "type": VM,
            "change": {"actions": ["create"], "before": None},
        }
    )
    gates = read_gates(created, config)
    assert gates.losses == () and gates.controllers == ()
    check_quorum(gates)
