"""`proxmox_virtual_environment_vm`: a QEMU VM (the provider's SDK-based VM resource).

Only the blocks and arguments this project uses, plus close relatives; names and
nesting follow the provider's schema (checked by tests against `tofu providers schema`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cdktf
from constructs import Construct

from constructs_lib.bindings.proxmox._base import ProxmoxResource, attributes, object_list


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmAgent:
    enabled: bool | None = None
    timeout: str | None = None
    trim: bool | None = None
    type: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmCpu:
    cores: int | None = None
    sockets: int | None = None
    type: str | None = None
    numa: bool | None = None
    units: int | None = None
    flags: Sequence[str] | None = None
    limit: float | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmMemory:
    dedicated: int | None = None
    floating: int | None = None
    shared: int | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmCdrom:
    file_id: str | None = None
    interface: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmEfiDisk:
    datastore_id: str | None = None
    file_format: str | None = None
    type: str | None = None
    pre_enrolled_keys: bool | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmOperatingSystem:
    type: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmStartup:
    order: int | None = None
    up_delay: int | None = None
    down_delay: int | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmVga:
    type: str | None = None
    memory: int | None = None
    clipboard: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmDisk:
    interface: str
    datastore_id: str | None = None
    size: int | None = None
    file_format: str | None = None
    file_id: str | None = None
    discard: str | None = None
    ssd: bool | None = None
    iothread: bool | None = None
    backup: bool | None = None
    replicate: bool | None = None
    cache: str | None = None
    aio: str | None = None
    serial: str | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmNetworkDevice:
    """An element of `network_device`, an attribute (not a block) in the provider's
    schema: it is written with every key, unset ones as null (see `object_list`)."""

    bridge: str | None = None
    disconnected: bool | None = None
    enabled: bool | None = None
    firewall: bool | None = None
    mac_address: str | None = None
    model: str | None = None
    mtu: int | None = None
    queues: int | None = None
    rate_limit: float | None = None
    trunks: str | None = None
    vlan_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class VirtualEnvironmentVmSerialDevice:
    device: str | None = None


class VirtualEnvironmentVm(ProxmoxResource):
    TF_RESOURCE_TYPE = "proxmox_virtual_environment_vm"

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        node_name: str,
        migrate: bool | None = None,
        name: str | None = None,
        vm_id: int | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        on_boot: bool | None = None,
        started: bool | None = None,
        stop_on_destroy: bool | None = None,
        bios: str | None = None,
        machine: str | None = None,
        scsi_hardware: str | None = None,
        boot_order: Sequence[str] | None = None,
        protection: bool | None = None,
        timeout_create: int | None = None,
        timeout_start_vm: int | None = None,
        timeout_shutdown_vm: int | None = None,
        timeout_stop_vm: int | None = None,
        timeout_reboot: int | None = None,
        agent: VirtualEnvironmentVmAgent | None = None,
        cdrom: VirtualEnvironmentVmCdrom | None = None,
        cpu: VirtualEnvironmentVmCpu | None = None,
        disk: Sequence[VirtualEnvironmentVmDisk] | None = None,
        efi_disk: VirtualEnvironmentVmEfiDisk | None = None,
        memory: VirtualEnvironmentVmMemory | None = None,
        network_device: Sequence[VirtualEnvironmentVmNetworkDevice] | None = None,
        operating_system: VirtualEnvironmentVmOperatingSystem | None = None,
        serial_device: Sequence[VirtualEnvironmentVmSerialDevice] | None = None,
        startup: VirtualEnvironmentVmStartup | None = None,
        vga: VirtualEnvironmentVmVga | None = None,
        depends_on: Sequence[cdktf.ITerraformDependable] | None = None,
        lifecycle: cdktf.TerraformResourceLifecycle | None = None,
        provider: cdktf.TerraformProvider | None = None,
    ) -> None:
        attrs = attributes(
            node_name=node_name,
            migrate=migrate,
            name=name,
            vm_id=vm_id,
            description=description,
            tags=tags,
            on_boot=on_boot,
            started=started,
            stop_on_destroy=stop_on_destroy,
            bios=bios,
            machine=machine,
            scsi_hardware=scsi_hardware,
            boot_order=boot_order,
            protection=protection,
            timeout_create=timeout_create,
            timeout_start_vm=timeout_start_vm,
            timeout_shutdown_vm=timeout_shutdown_vm,
            timeout_stop_vm=timeout_stop_vm,
            timeout_reboot=timeout_reboot,
            agent=agent,
            cdrom=cdrom,
            cpu=cpu,
            disk=disk,
            efi_disk=efi_disk,
            memory=memory,
            network_device=None if network_device is None else object_list(network_device),
            operating_system=operating_system,
            serial_device=serial_device,
            startup=startup,
            vga=vga,
        )
        super().__init__(scope, id_, attrs, depends_on=depends_on, lifecycle=lifecycle, provider=provider)

    @property
    def id(self) -> str:
        return self.get_string_attribute("id")

    @property
    def vm_id(self) -> float:
        return self.get_number_attribute("vm_id")

    @property
    def name(self) -> str:
        return self.get_string_attribute("name")
