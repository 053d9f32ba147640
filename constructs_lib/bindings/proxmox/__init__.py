"""Typed bindings for the bpg/proxmox provider (hand-written; see _base.py)."""

from constructs_lib.bindings.proxmox._base import PROVIDER_SOURCE, PROVIDER_VERSION
from constructs_lib.bindings.proxmox.download_file import DownloadFile
from constructs_lib.bindings.proxmox.provider import ProxmoxProvider, ProxmoxProviderSsh
from constructs_lib.bindings.proxmox.virtual_environment_vm import (
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

__all__ = [
    "PROVIDER_SOURCE",
    "PROVIDER_VERSION",
    "DownloadFile",
    "ProxmoxProvider",
    "ProxmoxProviderSsh",
    "VirtualEnvironmentVm",
    "VirtualEnvironmentVmAgent",
    "VirtualEnvironmentVmCdrom",
    "VirtualEnvironmentVmCpu",
    "VirtualEnvironmentVmDisk",
    "VirtualEnvironmentVmEfiDisk",
    "VirtualEnvironmentVmMemory",
    "VirtualEnvironmentVmNetworkDevice",
    "VirtualEnvironmentVmOperatingSystem",
    "VirtualEnvironmentVmSerialDevice",
    "VirtualEnvironmentVmStartup",
    "VirtualEnvironmentVmVga",
]
