"""The stack's VMs as the state records them (`tofu state pull`, before any refresh).

What the last apply wrote is the reference the ownership guard compares the live VMs with:
the id, host, name, tags and MAC addresses each VM had when the stack last touched it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

VM_TYPE = "proxmox_virtual_environment_vm"
ISO_TYPES = ("proxmox_download_file", "proxmox_virtual_environment_download_file")
NODE_PREFIX = "talos_node_"


@dataclass(frozen=True)
class StateVm:
    address: str
    node: str  # the node of nodes.yaml the stack made it for (from its address)
    vm_id: int | None
    host: str
    name: str
    tags: tuple[str, ...]
    macs: frozenset[str]  # upper case, as Proxmox reports them
    disk_sizes: Mapping[str, int]  # interface -> GB


@dataclass(frozen=True)
class StackState:
    vms: tuple[StateVm, ...] = ()
    # (host, `<storage>:iso/<file>`) of each downloaded ISO
    isos: frozenset[tuple[str, str]] = frozenset()

    def vm_for(self, node: str) -> StateVm | None:
        return next((vm for vm in self.vms if vm.node == node), None)


def parse_state(text: str) -> StackState:
    """The raw state JSON of `tofu state pull` (empty text: no state yet). ValueError when it
    is not a state."""
    if not text.strip():
        return StackState()
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("resources", []), list):
        raise ValueError("not a Terraform state (no resources list)")
    vms: list[StateVm] = []
    isos: set[tuple[str, str]] = set()
    for res in data.get("resources") or []:
        if not isinstance(res, dict) or res.get("mode") != "managed":
            continue
        for inst in res.get("instances") or []:
            attrs = inst.get("attributes") or {}
            address = _address(res, inst)
            if res.get("type") == VM_TYPE:
                vms.append(_vm(address, res, inst, attrs))
            elif res.get("type") in ISO_TYPES and attrs.get("id"):
                isos.add((str(attrs.get("node_name") or ""), str(attrs["id"])))
    return StackState(tuple(vms), frozenset(isos))


def _address(res: Mapping[str, Any], inst: Mapping[str, Any]) -> str:
    base = f"{res['type']}.{res['name']}"
    key = inst.get("index_key")
    if key is None:
        return base
    return f"{base}[{json.dumps(key)}]"


def _vm(address: str, res: Mapping[str, Any], inst: Mapping[str, Any], attrs: Mapping[str, Any]) -> StateVm:
    key = inst.get("index_key")
    if isinstance(key, str):  # the template layout: talos_node["<name>"]
        node = key
    elif str(res.get("name", "")).startswith(NODE_PREFIX):
        # This stack's addresses: talos_node_<name with '-' as '_'> (names are [a-z0-9-]).
        node = str(res["name"])[len(NODE_PREFIX) :].replace("_", "-")
    else:
        node = str(attrs.get("name") or res.get("name"))
    vm_id = attrs.get("vm_id")
    return StateVm(
        address=address,
        node=node,
        vm_id=int(vm_id) if isinstance(vm_id, int) or (isinstance(vm_id, str) and vm_id.isdigit()) else None,
        host=str(attrs.get("node_name") or ""),
        name=str(attrs.get("name") or ""),
        tags=tuple(str(t) for t in attrs.get("tags") or ()),
        macs=frozenset(_macs(attrs.get("network_device") or ())),
        disk_sizes={
            str(d.get("interface")): int(d.get("size") or 0)
            for d in attrs.get("disk") or ()
            if isinstance(d, dict) and d.get("interface")
        },
    )


def _macs(devices: Iterable[Any]) -> Iterable[str]:
    for dev in devices:
        if isinstance(dev, dict) and dev.get("mac_address"):
            yield str(dev["mac_address"]).upper()
