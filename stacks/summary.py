"""The human-readable outputs: a cluster summary and what to do next."""

from __future__ import annotations

from config import InfraConfig


def _or_unset(value: object) -> str:
    return "(not set)" if value is None else str(value)


def cluster_summary(config: InfraConfig) -> str:
    c = config.cluster
    assert config.proxmox is not None
    lines = [
        f"Talos version:   v{c.talos_version}",
        f"Proxmox node:    {config.proxmox.node}",
        f"Controllers:     {len(config.controllers)}",
        f"Workers:         {len(config.workers)}",
        f"Total nodes:     {len(config.vms)}",
        f"API endpoint:    {_or_unset(c.cluster_api_addr)}",
        f"Pod CIDR:        {_or_unset(c.cluster_pod_cidr)}",
        f"Service CIDR:    {_or_unset(c.cluster_svc_cidr)}",
    ]
    if config.multi_host:
        # Several hosts: the node line names every host in use, then the VMs of each.
        lines[1] = f"Proxmox nodes:   {', '.join(config.vms_by_host())}"
        lines += hosts_lines(config)
    return "\n".join(lines) + "\n"


def hosts_lines(config: InfraConfig) -> list[str]:
    """`VMs per host:` and one line per host (several hosts only)."""
    by_host = config.vms_by_host()
    width = max((len(host) for host in by_host), default=0)
    return ["VMs per host:"] + [
        f"  {host + ':':<{width + 1}}  {', '.join(vm.name for vm in vms)}" for host, vms in by_host.items()
    ]


def next_steps(config: InfraConfig) -> str:
    return (
        "1. Check that every node boots the Talos ISO and answers on port 50000:\n"
        "   task infra:verify-nodes\n"
        "2. Generate and apply the Talos machine configuration (talhelper / talosctl).\n"
        "3. Bootstrap Kubernetes on the first controller.\n"
    )
