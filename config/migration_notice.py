"""Warn a migrating operator whose `proxmox_vm_defaults` now resizes existing VMs.

The template setup merged its built-in role defaults over `proxmox_vm_defaults`, so that
key never took effect there; this app honours it (config/defaults.py). A cluster created
by the templates would see its first plan change cores, memory or disks: say so before.
"""

from __future__ import annotations

from config.defaults import SIZING_KEYS, resolve_sizing, template_sizing
from config.errors import Problem
from config.schema import ClusterFile, NodesFile
from config.yaml_source import YamlSource

KEY = "proxmox_vm_defaults"


def sizing_changes(cluster: ClusterFile, nodes: NodesFile) -> list[str]:
    """One line per role with changes: its nodes with old -> new values, and the role
    defaults that keep the sizes the templates created. Nothing when nothing changes."""
    by_role: dict[str, dict[tuple[tuple[str, int, int], ...], list[str]]] = {}
    for node in nodes.nodes:
        old, new = template_sizing(node, cluster), resolve_sizing(node, cluster)
        changes = tuple((key, old[key], new[key]) for key in SIZING_KEYS if old[key] != new[key])
        if changes:
            role = "controller" if node.controller else "worker"
            by_role.setdefault(role, {}).setdefault(changes, []).append(node.name)
    return [_line(role, groups) for role, groups in by_role.items()]


def _line(role: str, groups: dict[tuple[tuple[str, int, int], ...], list[str]]) -> str:
    what = "; ".join(
        f"{', '.join(names)}: {', '.join(f'{key} {old} -> {new}' for key, old, new in changes)}"
        for changes, names in groups.items()
    )
    old_values = {key: old for changes in groups for key, old, _new in changes}
    keep = ", ".join(f"{key}: {old_values[key]}" for key in SIZING_KEYS if key in old_values)
    shrinks = any(key == "disk_size" and new < old for changes in groups for key, old, new in changes)
    return (
        f"warning: {role} VMs created by the template setup change size: {what} (the template "
        f"setup ignored {KEY}, this app applies it{'; disks cannot shrink' if shrinks else ''}; "
        f"to keep the sizes it created, set proxmox_vm_{role}_defaults: {{{keep}}})"
    )


def migration_warnings(
    cluster: ClusterFile, nodes: NodesFile, csrc: YamlSource, cdisplay: str
) -> list[Problem]:
    """sizing_changes(), located at `proxmox_vm_defaults` in cluster.yaml."""
    line = csrc.line_of((KEY,))
    return [Problem(cdisplay, line, KEY, message) for message in sizing_changes(cluster, nodes)]
