"""What a plan may not do to a live control plane, decided from the plan alone.

- Quorum: etcd keeps working while a majority of its members is alive. A plan that deletes
  or replaces more controllers than the current ones can spare, `(n - 1) // 2` of `n`, is
  refused whole: one apply at a time, each after the node left etcd.
- Replacements: a VM destroyed and created again comes back with an empty disk (and a
  controller without its etcd member). Each is listed with what is lost, and goes ahead
  only with `--allow-replace` or a typed `yes` on a terminal.
- Deleted controllers: the steps that make them leave etcd first are printed; with the
  cluster in view the runner also refuses one whose Node is still Ready.

A VM's role is read from its `tags` in the state (the stack tags each VM with its role),
so a controller removed from nodes.yaml still counts as one.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config import InfraConfig
from workflow.errors import WorkflowError
from workflow.invocation import with_flag
from workflow.rollout.classify import VM_TYPE

ROLES = ("controller", "worker")
LEAVE_ETCD = "talosctl -n {ip} reset --graceful"


@dataclass(frozen=True)
class Loss:
    """A VM the plan deletes or replaces."""

    address: str  # resource address
    name: str
    role: str
    action: str  # delete or replace
    ip: str | None  # the node's address, for the commands it needs

    @property
    def lost(self) -> str:
        what = ["its disk"]
        if self.role == "controller":
            what.append("its etcd member")
        return " and ".join(what)

    @property
    def leave_etcd(self) -> str:
        return LEAVE_ETCD.format(ip=self.ip or f"<{self.name}'s address>")


@dataclass(frozen=True)
class PlanGates:
    controllers: tuple[str, ...]  # the controllers that exist now (in the state)
    losses: tuple[Loss, ...]

    @property
    def lost_controllers(self) -> tuple[Loss, ...]:
        return tuple(x for x in self.losses if x.role == "controller")

    @property
    def replaced(self) -> tuple[Loss, ...]:
        return tuple(x for x in self.losses if x.action == "replace")

    @property
    def deleted_controllers(self) -> tuple[Loss, ...]:
        return tuple(x for x in self.lost_controllers if x.action == "delete")

    @property
    def spare(self) -> int:
        """Controllers that may go at once without etcd losing quorum."""
        return (len(self.controllers) - 1) // 2


def read_gates(plan: Mapping[str, Any], config: InfraConfig) -> PlanGates:
    controllers: list[str] = []
    losses: list[Loss] = []
    for rc in plan.get("resource_changes") or []:
        if rc.get("mode") != "managed" or rc.get("type") != VM_TYPE:
            continue
        change = rc.get("change") or {}
        before = change.get("before")
        if not isinstance(before, dict):
            continue  # created: nothing running yet
        name = str(before.get("name") or rc["address"])
        role = _role(before, name, config)
        if role == "controller":
            controllers.append(name)
        actions = sorted(change.get("actions") or [])
        if actions == ["create", "delete"]:
            action = "replace"
        elif actions == ["delete"]:
            action = "delete"
        else:
            continue
        losses.append(Loss(rc["address"], name, role, action, _ip(before, name, config)))
    return PlanGates(tuple(controllers), tuple(losses))


def _role(before: Mapping[str, Any], name: str, config: InfraConfig) -> str:
    tags = before.get("tags") or []
    for role in ROLES:
        if role in tags:
            return role
    for vm in config.vms:
        if vm.name == name:
            return vm.role
    return "controller"  # unknown: the cautious side


def _ip(before: Mapping[str, Any], name: str, config: InfraConfig) -> str | None:
    for vm in config.vms:
        if vm.name == name:
            return vm.address
    # Removed from nodes.yaml: the address the guest agent reported, as the state keeps it.
    for group in before.get("ipv4_addresses") or []:
        for text in group or []:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not ip.is_loopback and not ip.is_link_local:
                return str(ip)
    return None


def check_quorum(gates: PlanGates) -> None:
    lost = gates.lost_controllers
    if not lost or len(lost) <= gates.spare:
        return
    n = len(gates.controllers)
    names = ", ".join(x.name for x in lost)
    whole = "the whole control plane" if len(lost) >= n else f"{len(lost)} of the {n} controllers"
    raise WorkflowError(
        f"refusing to apply: the plan deletes or replaces {whole} ({names}), and etcd "
        f"would lose quorum ({n} member{'s' * (n != 1)} need {n // 2 + 1} alive); nothing was "
        "applied; remove them one apply at a time, each after leaving etcd "
        f"(`{lost[0].leave_etcd}`)"
    )


def confirm_replacements(
    gates: PlanGates,
    allow: bool,
    command: str,
    say: Callable[[str], None],
    ask: Callable[[str], str] | None = None,
) -> None:
    """List each replaced VM and what it loses; go on only when allowed or confirmed."""
    replaced = gates.replaced
    if not replaced:
        return
    for x in replaced:
        say(f"{x.name} ({x.role}) is REPLACED: destroyed and created again; lost: {x.lost}")
    if allow:
        return
    summary = "; ".join(f"{x.name} ({x.lost})" for x in replaced)
    if ask is None and sys.stdin.isatty():
        ask = input
    if ask is not None:
        vms = f"{len(replaced)} VM{'s' * (len(replaced) != 1)}"
        answer = ask(f"Replace {vms}, losing {summary}? Type 'yes' to continue: ")
        if answer.strip() == "yes":
            return
        raise WorkflowError(f"not confirmed: nothing was applied (would replace {summary})")
    raise WorkflowError(
        f"refusing to replace {summary} without --allow-replace; nothing was applied; "
        f"review the plan, then run `{with_flag(command, '--allow-replace')}`"
    )


def deletion_steps(gates: PlanGates) -> list[str]:
    """What to run before a controller's VM is deleted."""
    return [
        f"before {x.name} is deleted it must leave etcd: `{x.leave_etcd}`" for x in gates.deleted_controllers
    ]


def removed(gates: PlanGates, role: str) -> Sequence[Loss]:
    return tuple(x for x in gates.losses if x.action == "delete" and x.role == role)
