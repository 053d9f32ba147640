"""What Proxmox should hold for each node of the example, derived from nodes.yaml and
the documented defaults alone (not from the app's code), and parsers for PVE's config
strings (`key=value,key=value`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# README / template layout defaults.
ROLE_DEFAULTS = {
    True: {"cores": 4, "sockets": 1, "memory": 8192, "disk_size": 64},
    False: {"cores": 8, "sockets": 1, "memory": 16384, "disk_size": 256},
}
TAGS = ["kubernetes", "linux", "talos"]
VLAN = 7  # examples/cluster.yaml: node_vlan_tag "7"
TALOS_VERSION = "1.12.0"


@dataclass(frozen=True)
class ExpectedVm:
    name: str
    vm_id: int
    controller: bool
    cores: int
    sockets: int
    memory: int
    disk_size: int
    startup_order: int
    startup_delay: int
    shutdown_delay: int
    mac: str
    mtu: int | None
    iso_file: str
    iso_url: str

    @property
    def role(self) -> str:
        return "controller" if self.controller else "worker"


def iso_of(node: dict[str, Any]) -> tuple[str, str]:
    schematic, secure = node["schematic_id"], bool(node.get("secureboot", False))
    image = "nocloud-amd64-secureboot.iso" if secure else "nocloud-amd64.iso"
    url = f"https://factory.talos.dev/image/{schematic}/v{TALOS_VERSION}/{image}"
    name = f"talos-v{TALOS_VERSION}-{schematic[:12]}{'-secureboot' if secure else ''}.iso"
    return name, url


def expected_vms(nodes: list[dict[str, Any]]) -> dict[str, ExpectedVm]:
    out = {}
    for position, node in enumerate(nodes, start=1):
        role = ROLE_DEFAULTS[bool(node["controller"])]
        iso_file, iso_url = iso_of(node)
        out[node["name"]] = ExpectedVm(
            name=node["name"],
            vm_id=int(node["vm_id"]),
            controller=bool(node["controller"]),
            cores=node.get("vm_cores", role["cores"]),
            sockets=node.get("vm_sockets", role["sockets"]),
            memory=node.get("vm_memory", role["memory"]),
            disk_size=node.get("vm_disk_size", role["disk_size"]),
            startup_order=node.get("vm_startup_order", position + 3),
            startup_delay=node.get("vm_startup_delay", 15),
            shutdown_delay=node.get("vm_shutdown_delay", 60),
            mac=str(node["mac_addr"]).upper(),
            mtu=node.get("mtu"),
            iso_file=iso_file,
            iso_url=iso_url,
        )
    return out


def options(value: Any) -> tuple[str | None, dict[str, str]]:
    """`local-lvm:vm-1-disk-0,size=64G,ssd=1` -> ('local-lvm:vm-1-disk-0', {'size': '64G', 'ssd': '1'}).
    A first part without '=' is the volume; `virtio=MAC` is kept as a key."""
    first: str | None = None
    props: dict[str, str] = {}
    for index, part in enumerate(str(value).split(",")):
        key, sep, val = part.partition("=")
        if not sep and index == 0:
            first = part
        elif sep:
            props[key] = val
    return first, props


def tfvars_for_template(nodes: list[dict[str, Any]], pve_url: str) -> dict[str, Any]:
    """Variables of tests/e2e/template_layout for the same nodes (its own inputs, not ours)."""
    vms = expected_vms(nodes)
    return {
        "proxmox_endpoint": pve_url,
        "proxmox_insecure": True,
        "proxmox_node": "pve1",
        "talos_version": TALOS_VERSION,
        "node_vlan_tag": VLAN,
        "nodes": {
            name: {
                "vm_id": vm.vm_id,
                "controller": vm.controller,
                "cores": vm.cores,
                "sockets": vm.sockets,
                "memory": vm.memory,
                "disk_size": vm.disk_size,
                "startup_order": vm.startup_order,
                "startup_delay": vm.startup_delay,
                "shutdown_delay": vm.shutdown_delay,
                "mac_addr": str(node["mac_addr"]),
                "mtu": vm.mtu,
                "schematic_id": node["schematic_id"],
                "secureboot": bool(node.get("secureboot", False)),
            }
            for node in nodes
            for name, vm in [(node["name"], vms[node["name"]])]
        },
    }
