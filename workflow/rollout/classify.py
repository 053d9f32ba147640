"""Which planned VM changes may restart a VM (from `tofu show -json` of a plan).

The bpg provider (v0.111.1, `vmUpdate`) reboots or powers off a running VM when an update
sets its `rebootRequired`; `reboot_after_update` (default true) lets it do so on its own.
This module mirrors that decision from the plan's before/after values, conservatively: an
attribute not known to be applied live counts as restarting, so a new provider attribute
is rolled out node by node rather than all at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VM_TYPE = "proxmox_virtual_environment_vm"

# Applied to a running VM without a restart (the provider sets no rebootRequired for them),
# or not VM configuration at all (provider behaviour, timeouts, read-only values).
LIVE = frozenset(
    {
        "name",
        "description",
        "tags",
        "on_boot",
        "startup",
        "protection",
        "pool_id",
        "hook_script_file_id",
        "hotplug",
        "cdrom",
        "network_device",
        "smbios",
        "started",
        "reboot",
        "reboot_after_update",
        "migrate",
        "stop_on_destroy",
        "purge_on_destroy",
        "delete_unreferenced_disks_on_destroy",
        "clone",
        "id",
        "ipv4_addresses",
        "ipv6_addresses",
        "mac_addresses",
        "network_interface_names",
    }
)
TIMEOUT_PREFIX = "timeout_"
# disk.Update: these make the provider reboot; others are sent as config (or a resize).
DISK_RESTARTING = ("aio", "queues", "datastore_id", "interface", "file_format")
# PVE's hotplug default when the VM does not set one (the provider assumes the same).
HOTPLUG_DEFAULT = "network,disk,usb"


@dataclass(frozen=True)
class VmChange:
    """A VM whose planned change may restart it."""

    address: str
    name: str
    action: str  # update, replace, migrate
    reasons: tuple[str, ...]  # attributes that restart it
    host: str  # the Proxmox node after the change
    vm_id: int | None
    agent: bool  # QEMU guest agent enabled after the change
    from_host: str = ""  # the Proxmox node before the change (differs for a move)

    @property
    def restarts(self) -> bool:
        """The guest reboots: anything but a live migration alone."""
        return self.reasons != ("node_name",)

    @property
    def why(self) -> str:
        return ", ".join(self.reasons)


@dataclass(frozen=True)
class Classification:
    restarting: tuple[VmChange, ...] = ()
    # Every other address with a change (created, deleted, updated live, moved, ...).
    other: tuple[str, ...] = field(default_factory=tuple)


def classify(plan: Mapping[str, Any]) -> Classification:
    restarting: list[VmChange] = []
    other: list[str] = []
    for rc in plan.get("resource_changes") or []:
        if rc.get("mode") != "managed":
            continue
        actions = list(rc["change"]["actions"])
        moved = bool(rc.get("previous_address"))
        if actions in (["no-op"], ["read"]) and not moved:
            continue
        change = _vm_change(rc, actions) if rc.get("type") == VM_TYPE else None
        if change is None:
            other.append(rc["address"])
        else:
            restarting.append(change)
    return Classification(tuple(restarting), tuple(other))


def _vm_change(rc: Mapping[str, Any], actions: Sequence[str]) -> VmChange | None:
    before = rc["change"].get("before") or {}
    after = rc["change"].get("after") or {}
    if sorted(actions) == ["create", "delete"]:
        reasons: tuple[str, ...] = ("replaced",)  # destroyed and created: down longer than a reboot
        action = "replace"
    elif list(actions) == ["update"]:
        reasons = restart_reasons(before, after)
        action = "migrate" if "node_name" in reasons else "update"
    else:
        return None  # create or delete: nothing running to keep up
    if not reasons:
        return None
    # A replaced VM without a configured id gets a new one: unknown until it exists.
    vm_id = after.get("vm_id") if action == "replace" else after.get("vm_id", before.get("vm_id"))
    return VmChange(
        address=rc["address"],
        name=str(after.get("name") or before.get("name") or rc["address"]),
        action=action,
        reasons=reasons,
        host=str(after.get("node_name") or before.get("node_name")),
        vm_id=vm_id if isinstance(vm_id, int) else None,
        agent=_agent_enabled(after),
        from_host=str(before.get("node_name") or after.get("node_name")),
    )


def restart_reasons(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level attributes whose change may restart the VM, sorted."""
    hotplug = str(after.get("hotplug") or HOTPLUG_DEFAULT).split(",")
    reasons = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new or key in LIVE or key.startswith(TIMEOUT_PREFIX):
            continue
        if key == "memory" and not _memory_restarts(old, new, hotplug):
            continue
        if key == "cpu" and not _cpu_restarts(old, new, hotplug):
            continue
        if key == "disk" and not _disk_restarts(old, new, hotplug):
            continue
        reasons.append(key)
    return tuple(reasons)


def _block(value: Any) -> dict[str, Any]:
    """A single nested block (a list of at most one object in the plan)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


def _memory_restarts(old: Any, new: Any, hotplug: list[str]) -> bool:
    o, n = _block(old), _block(new)
    sizes = ("dedicated", "floating", "shared")
    only_grows = all((n.get(k) or 0) >= (o.get(k) or 0) for k in sizes)
    same_pages = all(o.get(k) == n.get(k) for k in ("hugepages", "keep_hugepages"))
    return not ("memory" in hotplug and only_grows and same_pages)


def _cpu_restarts(old: Any, new: Any, hotplug: list[str]) -> bool:
    o, n = _block(old), _block(new)
    changed = {k for k in set(o) | set(n) if o.get(k) != n.get(k)}
    return not ("cpu" in hotplug and changed == {"hotplugged"})


def _disk_restarts(old: Any, new: Any, hotplug: list[str]) -> bool:
    olds = {d.get("interface"): d for d in old or [] if isinstance(d, dict)}
    news = {d.get("interface"): d for d in new or [] if isinstance(d, dict)}
    if set(olds) != set(news):
        return True  # a disk added or removed (also a boot-order change): not certain to be live
    for iface, n in news.items():
        o = olds[iface]
        if any(o.get(k) != n.get(k) for k in DISK_RESTARTING):
            return True
        grows = (n.get("size") or 0) > (o.get("size") or 0)
        if o.get("size") != n.get("size") and not (grows and "disk" in hotplug):
            return True
    return False


def _agent_enabled(after: Mapping[str, Any]) -> bool:
    return bool(_block(after.get("agent")).get("enabled"))
