"""The order of a rollout: workers first, then controllers, never two controllers at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from config import InfraConfig
from workflow.rollout.classify import VmChange


@dataclass(frozen=True)
class Step:
    """VMs restarted together, then waited for together."""

    changes: tuple[VmChange, ...]
    role: str  # worker or controller

    @property
    def names(self) -> str:
        return ", ".join(c.name for c in self.changes)


def role_of(change: VmChange, config: InfraConfig) -> str:
    for vm in config.vms:
        if vm.name == change.name:
            return vm.role
    return "controller"  # a VM the config does not know: the cautious side, one at a time


def steps(changes: Sequence[VmChange], config: InfraConfig, parallel: int = 1) -> list[Step]:
    """Workers in groups of `parallel`, then each controller alone, each role in the order of
    nodes.yaml."""
    position = {vm.name: i for i, vm in enumerate(config.vms)}
    ordered = sorted(changes, key=lambda c: (position.get(c.name, len(position)), c.name))
    workers = [c for c in ordered if role_of(c, config) == "worker"]
    controllers = [c for c in ordered if role_of(c, config) == "controller"]
    out = [Step(tuple(workers[i : i + parallel]), "worker") for i in range(0, len(workers), parallel)]
    out += [Step((c,), "controller") for c in controllers]
    return out
