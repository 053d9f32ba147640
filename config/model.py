"""The resolved configuration: every default applied, ready for the constructs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.schema import ClusterFile, VmAdvanced

TALOS_FACTORY = "https://factory.talos.dev/image"
# The tag every VM of the stack carries: Proxmox keeps it and shows it, so anyone (and the
# workflow's ownership guard, workflow/preflight/ownership.py) can tell the stack's VMs
# from the others on a shared Proxmox.
OWNER_TAG = "talos-cdktf"


@dataclass(frozen=True)
class StateBackendSpec:
    """Where tofu keeps state: the HTTP backend (tfstate-worker / tfstate server) or a
    local file kept beside the config, outside cdktf.out, so deleting the output is safe."""

    state_name: str
    http_address: str | None = None
    local_path: Path | None = None

    @property
    def lock_address(self) -> str | None:
        return f"{self.http_address}/lock" if self.http_address else None


@dataclass(frozen=True)
class ProxmoxSpec:
    endpoint: str
    node: str
    insecure: bool
    iso_storage: str
    disk_storage: str
    # Several hosts configured (proxmox_nodes or a per-node proxmox_node): VMs may move
    # between hosts, so they migrate, and the outputs name each VM's host.
    multi_host: bool = False
    iso_storage_shared: bool = False


@dataclass(frozen=True)
class IsoSpec:
    schematic_id: str
    secureboot: bool
    talos_version: str
    # The Proxmox node that downloads it. On `proxmox_node` an ISO keeps the address and
    # key it always had; on any other host both name the host (`..._on_<host>`, `...@<host>`).
    host: str = ""
    other_host: bool = False

    @property
    def template_key(self) -> str:
        """The template layout's for_each key: `<schematic>-<true|false>`."""
        return f"{self.schematic_id}-{'true' if self.secureboot else 'false'}"

    @property
    def key(self) -> str:
        return f"{self.template_key}@{self.host}" if self.other_host else self.template_key

    @property
    def logical_id(self) -> str:
        base = f"talos_iso_{self.schematic_id[:12]}" + ("_secureboot" if self.secureboot else "")
        # Host names have no '_', so `_on_<host>` cannot collide with another ISO's address.
        return f"{base}_on_{self.host}" if self.other_host else base

    @property
    def url(self) -> str:
        image = "nocloud-amd64-secureboot.iso" if self.secureboot else "nocloud-amd64.iso"
        return f"{TALOS_FACTORY}/{self.schematic_id}/v{self.talos_version}/{image}"

    @property
    def file_name(self) -> str:
        suffix = "-secureboot.iso" if self.secureboot else ".iso"
        return f"talos-v{self.talos_version}-{self.schematic_id[:12]}{suffix}"


@dataclass(frozen=True)
class VmSpec:
    name: str
    address: str
    controller: bool
    vm_id: int | None
    cores: int
    sockets: int
    memory: int
    disk_size: int
    startup_order: int
    startup_delay: int
    shutdown_delay: int
    mac_address: str  # upper-case: Proxmox reports it so, lower-case would diff forever
    mtu: int | None
    iso: IsoSpec
    host: str  # the Proxmox node that runs the VM (config/placement.py)
    disk_storage: str

    @property
    def role(self) -> str:
        return "controller" if self.controller else "worker"

    @property
    def logical_id(self) -> str:
        # Node names are [a-z0-9-]; '-' -> '_' is one-to-one and gives a valid identifier.
        return "talos_node_" + self.name.replace("-", "_")


@dataclass(frozen=True)
class InfraConfig:
    cluster: ClusterFile
    backend: StateBackendSpec
    proxmox: ProxmoxSpec | None  # None: infrastructure disabled
    advanced: VmAdvanced
    vlan_id: int | None
    vms: tuple[VmSpec, ...]
    isos: tuple[IsoSpec, ...]

    @property
    def enabled(self) -> bool:
        return self.proxmox is not None

    @property
    def controllers(self) -> tuple[VmSpec, ...]:
        return tuple(vm for vm in self.vms if vm.controller)

    @property
    def workers(self) -> tuple[VmSpec, ...]:
        return tuple(vm for vm in self.vms if not vm.controller)

    @property
    def multi_host(self) -> bool:
        return self.proxmox is not None and self.proxmox.multi_host

    def vms_by_host(self) -> dict[str, tuple[VmSpec, ...]]:
        """Host -> the VMs it runs (nodes.yaml order), hosts sorted by name."""
        hosts: dict[str, list[VmSpec]] = {}
        for vm in self.vms:
            hosts.setdefault(vm.host, []).append(vm)
        return {host: tuple(hosts[host]) for host in sorted(hosts)}
