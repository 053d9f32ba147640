"""The ownership guard: the stack never creates over, changes or deletes a VM it did not
make, whatever the provider would do.

- A VM the stack makes carries the tag `talos-cdktf` (config.model.OWNER_TAG), which
  Proxmox keeps and shows.
- A VM in the state is the stack's when the live VM with its id is a VM (not a container)
  named after its node, whose MACs include those the state recorded, and which carries
  the tag; or, when the state never recorded the tag (written by the template setup or an
  earlier version), which is named after its node: it gets the tag on the next apply.
  Anything else (another name, a container, the tag gone where the state had it) is
  someone else's: every change is refused until the operator lets go of the entry.
- A VM the plan creates with a fixed `vm_id` needs that id free on the whole cluster (VMs
  and containers share ids). bpg/proxmox counts Proxmox's "already exists" as its own
  create (a retry helper meant for lost answers) and would adopt the stranger.
- A node's MAC must not be any other guest's: one MAC twice on a LAN breaks both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from config import OWNER_TAG, InfraConfig, VmSpec
from workflow.preflight.report import BLOCK, OK, WARN, Finding
from workflow.preflight.state import StackState, StateVm
from workflow.proxmox.inventory import Guest, Inventory

# Where a node's key was written: (node name, key) -> "nodes.yaml line 12 (nodes[0].vm_id)".
Where = Callable[[str, str], str]


@dataclass(frozen=True)
class Intent:
    """What the next apply does with one node of the config."""

    vm: VmSpec
    state: StateVm | None  # its entry in the state, if any
    creates: bool  # a VM is created (new node, replaced by a new vm_id, or gone from Proxmox)

    @property
    def new_id(self) -> int | None:
        """The fixed id a created VM gets (None: Proxmox picks one)."""
        return self.vm.vm_id if self.creates else None


def intents(config: InfraConfig, state: StackState, inv: Inventory) -> list[Intent]:
    out = []
    for vm in config.vms:
        entry = state.vm_for(vm.name)
        if entry is None or entry.vm_id is None:
            creates = True
        elif vm.vm_id is not None and vm.vm_id != entry.vm_id:
            creates = True  # vm_id forces a replacement
        else:
            creates = entry.vm_id not in inv.guests and _sees_all(inv)  # deleted outside the stack
        out.append(Intent(vm, entry, creates))
    return out


def _sees_all(inv: Inventory) -> bool:
    """A missing guest is only known gone when the token could have seen it."""
    return "guests" not in inv.errors


def foreign_reason(entry: StateVm, live: Guest, live_macs: frozenset[str] | None) -> str | None:
    """Why the live VM behind a state entry is not the stack's; None when it is."""
    if live.kind != "qemu":
        return "it is a container"
    if live.name != entry.node:
        tag = "no talos-cdktf tag, and " if OWNER_TAG not in live.tags else ""
        return f"{tag}it is named '{live.name}', not '{entry.node}'"
    if live_macs is not None and entry.macs and not entry.macs <= live_macs:
        had = ", ".join(sorted(entry.macs))
        has = ", ".join(sorted(live_macs)) or "none"
        return f"its MAC addresses ({has}) are not the {had} the stack gave it"
    if OWNER_TAG not in live.tags and OWNER_TAG in entry.tags:
        return (
            f"its {OWNER_TAG} tag is gone although the stack had set it (replaced outside the "
            f"stack? if it is the same VM, add the tag {OWNER_TAG} back in Proxmox)"
        )
    return None


def check_state(
    state: StackState, inv: Inventory, let_go: Callable[[str], str]
) -> tuple[list[Finding], set[int]]:
    """(findings about the state's VMs, the ids of the guests that are the stack's own)."""
    findings: list[Finding] = []
    own: set[int] = set()
    adopted: list[str] = []
    for entry in state.vms:
        if entry.vm_id is None:
            continue
        live = inv.guests.get(entry.vm_id)
        if live is None:
            if _sees_all(inv):
                findings.append(
                    Finding(
                        "ownership",
                        WARN,
                        f"{entry.node}: VM {entry.vm_id} is in the state but not on the Proxmox "
                        "cluster (deleted outside the stack?): the next apply creates it again",
                    )
                )
            continue
        why = foreign_reason(entry, live, inv.macs.get(live.vm_id))
        if why is not None:
            findings.append(
                Finding(
                    "ownership",
                    BLOCK,
                    f"{entry.address} in the state is {live.label}, which this stack did not make "
                    f"({why}); nothing was changed, and no task will change or delete it; if it is "
                    f"not yours, let go of it with `{let_go(entry.address)}` (Proxmox keeps the VM)",
                )
            )
            continue
        own.add(live.vm_id)
        if OWNER_TAG not in live.tags:
            adopted.append(entry.node)
    if adopted:
        findings.append(
            Finding(
                "ownership",
                OK,
                f"recognised by name, from the template setup's state: {', '.join(adopted)} "
                f"(the next apply tags them {OWNER_TAG})",
            )
        )
    if not any(f.level == BLOCK for f in findings):
        count = len(own)
        findings.append(
            Finding("ownership", OK, f"the state's {count} VM{'s' * (count != 1)} are this stack's own")
        )
    return findings, own


def check_ids(intended: Sequence[Intent], inv: Inventory, where: Where) -> list[Finding]:
    """Each fixed vm_id the apply creates is free on the whole cluster."""
    findings = []
    for intent in intended:
        vm_id = intent.new_id
        if vm_id is None:
            continue
        holder = inv.guests.get(vm_id)
        if holder is None and vm_id not in inv.taken_ids:
            continue
        who = holder.label if holder is not None else "a VM or container this token cannot see"
        findings.append(
            Finding(
                "vm-ids",
                BLOCK,
                f"{intent.vm.name} ({where(intent.vm.name, 'vm_id')}): vm_id {vm_id} is taken on the "
                f"Proxmox cluster by {who} (VMs and containers share ids); nothing was changed; set "
                f"vm_id to a free id such as {free_id(vm_id, intended, inv)}, or remove it and "
                "Proxmox picks one",
            )
        )
    if not findings:
        fixed = sum(1 for i in intended if i.new_id is not None)
        findings.append(Finding("vm-ids", OK, f"{fixed} fixed vm_id{'s' * (fixed != 1)} to create, all free"))
    return findings


def free_id(start: int, intended: Sequence[Intent], inv: Inventory) -> int:
    """The first id from `start` on that no guest holds and no node of the config asks for."""
    wanted = {i.vm.vm_id for i in intended if i.vm.vm_id is not None}
    taken = set(inv.guests) | set(inv.taken_ids) | wanted
    candidate = max(start, 100)
    while candidate in taken:
        candidate += 1
    return candidate


def check_macs(config: InfraConfig, own: set[int], inv: Inventory, where: Where) -> list[Finding]:
    holders: dict[str, list[Guest]] = {}
    for vm_id, macs in inv.macs.items():
        guest = inv.guests.get(vm_id)
        if guest is None or vm_id in own:
            continue
        for mac in macs:
            holders.setdefault(mac, []).append(guest)
    findings = []
    for vm in config.vms:
        others = holders.get(vm.mac_address.upper(), [])
        if others:
            findings.append(
                Finding(
                    "macs",
                    BLOCK,
                    f"{vm.name} ({where(vm.name, 'mac_addr')}): MAC {vm.mac_address} is already the MAC "
                    f"of {others[0].label}; two machines with one MAC on a LAN break each other's "
                    "network; nothing was changed; give the node another mac_addr",
                )
            )
    if not findings:
        unread = [g for g in inv.guests.values() if g.vm_id not in inv.macs]
        note = f" ({len(unread)} guests on offline hosts not read)" if unread else ""
        findings.append(Finding("macs", OK, f"{len(config.vms)} MACs used by no other VM or container{note}"))
    return findings
