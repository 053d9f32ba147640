"""One Talos Linux node as a Proxmox VM, booting its installed disk, the ISO as fallback."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cdktf
from constructs import Construct

from config import OWNER_TAG, ProxmoxSpec, VmSpec
from config.schema import VmAdvanced
from constructs_lib.bindings.proxmox import (
    VirtualEnvironmentVm,
    VirtualEnvironmentVmAgent,
    VirtualEnvironmentVmCdrom,
    VirtualEnvironmentVmCpu,
    VirtualEnvironmentVmDisk,
    VirtualEnvironmentVmEfiDisk,
    VirtualEnvironmentVmMemory,
    VirtualEnvironmentVmNetworkDevice,
    VirtualEnvironmentVmOperatingSystem,
    VirtualEnvironmentVmSerialDevice,
    VirtualEnvironmentVmStartup,
    VirtualEnvironmentVmVga,
)
from constructs_lib.talos_iso import TalosIso

TEMPLATE_ADDRESS = 'proxmox_virtual_environment_vm.talos_node["{name}"]'
DESCRIPTIONS = {
    "controller": "Talos Linux control plane node",
    "worker": "Talos Linux worker node",
}


@functools.cache
def _lifecycle() -> cdktf.TerraformResourceLifecycle:
    """Talos reboots and ejects its install media itself: do not fight it on every plan.
    One instance for all VMs (building a cdktf struct runs its type checks each time)."""
    return cdktf.TerraformResourceLifecycle(ignore_changes=["started", "cdrom"])


class TalosVm(VirtualEnvironmentVm):
    """The VM resource itself (no wrapper construct): created directly in the stack under
    its logical id, so the address needs no override, and each of hundreds of nodes costs
    one jsii object instead of three calls."""

    def __init__(
        self,
        scope: Construct,
        *,
        vm: VmSpec,
        proxmox: ProxmoxSpec,
        advanced: VmAdvanced,
        vlan_id: int | None,
        iso: TalosIso,
        all_isos: Sequence[TalosIso],
    ) -> None:
        self.spec = vm
        super().__init__(
            scope,
            vm.logical_id,
            vm_id=vm.vm_id,
            name=vm.name,
            node_name=vm.host,
            # A changed host migrates the VM instead of replacing it. Written only when
            # several hosts are configured: single-host output stays as it always was.
            migrate=True if proxmox.multi_host else None,
            description=DESCRIPTIONS[vm.role],
            # The role, then the stack's ownership mark (see config.model.OWNER_TAG).
            tags=[*advanced.tags, vm.role, OWNER_TAG],
            started=True,
            on_boot=True,
            bios=advanced.bios,
            machine=advanced.machine,
            operating_system=VirtualEnvironmentVmOperatingSystem(type=advanced.ostype),
            startup=VirtualEnvironmentVmStartup(
                order=vm.startup_order, up_delay=vm.startup_delay, down_delay=vm.shutdown_delay
            ),
            cpu=VirtualEnvironmentVmCpu(
                cores=vm.cores, sockets=vm.sockets, type=advanced.cpu_type, numa=advanced.numa
            ),
            memory=VirtualEnvironmentVmMemory(dedicated=vm.memory, floating=advanced.balloon),
            agent=VirtualEnvironmentVmAgent(enabled=advanced.qemu_agent),
            # Talos SecureBoot enrols its own keys, so Microsoft's must not be pre-enrolled.
            efi_disk=VirtualEnvironmentVmEfiDisk(
                datastore_id=vm.disk_storage, type="4m", pre_enrolled_keys=False
            ),
            cdrom=VirtualEnvironmentVmCdrom(file_id=iso.file_id, interface="ide2"),
            disk=[
                VirtualEnvironmentVmDisk(
                    datastore_id=vm.disk_storage,
                    interface="scsi0",
                    size=vm.disk_size,
                    file_format="raw",
                    ssd=advanced.disk_ssd,
                    discard="on" if advanced.disk_discard else "ignore",
                    backup=advanced.disk_backup,
                    replicate=advanced.disk_replicate,
                    iothread=False,
                )
            ],
            scsi_hardware=advanced.scsi_hw,
            network_device=[
                VirtualEnvironmentVmNetworkDevice(
                    bridge=advanced.network_bridge,
                    mac_address=vm.mac_address,
                    model="virtio",
                    queues=advanced.net_queues,
                    vlan_id=vlan_id,
                    mtu=vm.mtu,
                )
            ],
            serial_device=[VirtualEnvironmentVmSerialDevice()],
            vga=VirtualEnvironmentVmVga(type="std"),
            boot_order=["scsi0", "ide2"],  # the installed disk first, the ISO as fallback
            lifecycle=_lifecycle(),
            depends_on=[i.file for i in all_isos],
        )

    @property
    def address(self) -> str:
        return f"{self.TF_RESOURCE_TYPE}.{self.spec.logical_id}"

    def reference(self, attribute: str) -> str:
        """`${<address>.<attribute>}`: what a cdktf token for the attribute renders to,
        made without a jsii round trip (the id is the stack-level logical id, unchanged)."""
        return "${" + f"{self.address}.{attribute}" + "}"

    @property
    def template_address(self) -> str:
        return TEMPLATE_ADDRESS.format(name=self.spec.name)
