"""The resolved configuration: every default applied, ready for the constructs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.schema import ClusterFile, VmAdvanced

TALOS_FACTORY = "https://factory.talos.dev/image"


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


@dataclass(frozen=True)
class IsoSpec:
    schematic_id: str
    secureboot: bool
    talos_version: str

    @property
    def key(self) -> str:
        """The template layout's for_each key: `<schematic>-<true|false>`."""
        return f"{self.schematic_id}-{'true' if self.secureboot else 'false'}"

    @property
    def logical_id(self) -> str:
        return f"talos_iso_{self.schematic_id[:12]}" + ("_secureboot" if self.secureboot else "")

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
