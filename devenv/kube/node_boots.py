"""What each VM's kubelet would report: whether its Node is Ready and under which boot,
followed from fakepve's power changes and a periodic re-read of its VM list.

A VM that starts boots, and its kubelet reports Ready (with a new boot ID) `ready_delay`
seconds later; a VM that stops or disappears is not Ready at once. A VM created again
under a node's name with another vmid boots an empty disk into Talos maintenance mode: no
Node of the cluster until `rejoin()` (what `task talos:apply-node` does).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devenv.fakepve import FakePveServer

RESYNC_SECS = 1.0  # the VM list is re-read at least this often
PVE_TIMEOUT = 10.0


@dataclass
class NodeBoot:
    name: str
    role: str
    running: bool = False  # the VM runs, as last seen
    ready_at: float | None = None  # when the kubelet of the current boot reports Ready
    new_boot: bool = False  # the next Ready report carries a new bootID
    boot_seen: tuple[Any, Any] | None = None  # (vmid, started_at) the last VM re-read saw
    vm_id: Any = None  # the VM this Node belongs to; another id under its name is a new VM
    maintenance: bool = False  # a new VM under the name: no Node until rejoin()
    boot_id: str = ""  # as reported to the API

    def boot(self, ready_at: float) -> None:
        self.running = True
        self.ready_at = ready_at
        self.new_boot = True
        self.boot_seen = None  # adopted by the next VM re-read

    def down(self) -> None:
        self.running = False
        self.ready_at = None

    def identify(self, vmid: Any) -> None:
        if self.vm_id is None:
            self.vm_id = vmid
        elif vmid != self.vm_id:
            self.maintenance = True

    def take_boot_id(self) -> str:
        """The boot ID to report now that it is Ready: a new one after each boot."""
        if self.new_boot:
            self.boot_id = str(uuid.uuid4())
            self.new_boot = False
        return self.boot_id


class NodeBoots:
    """The boots of one kubelet per VM name (roles: VM name -> "controller" | "worker").
    Not thread-safe: its owner holds a lock."""

    def __init__(self, pve: FakePveServer, roles: dict[str, str], ready_delay: float) -> None:
        self.pve = pve
        self.ready_delay = ready_delay
        self.nodes = {name: NodeBoot(name, role) for name, role in roles.items()}
        self.missing: set[str] = set()  # Nodes deleted for good (set_missing)
        self.next_resync = 0.0

    def _vm_ids(self, name: str) -> list[Any]:
        return self.pve.call(lambda p: [vm.vmid for vm in p.vms if vm.name == name], timeout=PVE_TIMEOUT)

    def power(self, at: float, name: str, status: str) -> None:
        """A power change fakepve reported at `at` (monotonic)."""
        node = self.nodes.get(name)
        if node is None:
            return
        if status == "running":
            ids = self._vm_ids(name)
            if ids:
                node.identify(ids[-1])
            if not node.running:
                node.boot(at + self.ready_delay)
        elif node.running:
            node.down()

    def rejoin(self, name: str) -> None:
        ids = self._vm_ids(name)
        node = self.nodes[name]
        node.maintenance = False
        node.vm_id = ids[-1] if ids else node.vm_id
        if node.running:
            node.boot(time.monotonic() + self.ready_delay)

    def resync(self, *, initial: bool = False) -> None:
        """Re-read fakepve's VMs: a power change whose event was missed still converges; a
        running VM whose (vmid, start time) changed (reset, deleted and created again) is a
        new boot. initial: the VMs running already are Ready at once."""
        vms = self.pve.call(
            lambda p: [
                (str(vm.config.get("name") or vm.name), vm.status, vm.vmid, getattr(vm, "started_at", None))
                for vm in p.vms
            ],
            timeout=PVE_TIMEOUT,
        )
        seen: dict[str, tuple[Any, Any] | None] = {}
        for name, status, vmid, started in vms:
            if status == "running":
                seen[name] = (vmid, started)
                if name in self.nodes:
                    self.nodes[name].identify(vmid)
            else:
                seen.setdefault(name, None)
        now = time.monotonic()
        for node in self.nodes.values():
            boot = seen.get(node.name)
            if boot is not None and not node.running:
                node.boot(now if initial else now + self.ready_delay)
                node.boot_seen = boot
            elif boot is None and node.running:
                node.down()
            elif boot is not None:
                if node.boot_seen is not None and boot != node.boot_seen:
                    node.boot(now + self.ready_delay)
                node.boot_seen = boot
        self.next_resync = now + RESYNC_SECS

    def ready(self, name: str, now: float | None = None) -> bool:
        node = self.nodes.get(name)
        if node is None or name in self.missing or not node.running or node.ready_at is None:
            return False
        if node.maintenance:
            return False
        return (now or time.monotonic()) >= node.ready_at

    def present(self) -> list[NodeBoot]:
        """The nodes that have a Node (all but the missing ones)."""
        return [n for n in self.nodes.values() if n.name not in self.missing]
