"""Built-in defaults and the order in which the operator's settings override them."""

from __future__ import annotations

from config.schema import ClusterFile, NodeEntry

SIZING_KEYS = ("cores", "sockets", "memory", "disk_size")

BUILTIN_GLOBAL: dict[str, int] = {"cores": 4, "sockets": 1, "memory": 8192, "disk_size": 128}
BUILTIN_ROLE: dict[str, dict[str, int]] = {
    "controller": {"cores": 4, "sockets": 1, "memory": 8192, "disk_size": 64},
    "worker": {"cores": 8, "sockets": 1, "memory": 16384, "disk_size": 256},
}

STARTUP_ORDER_OFFSET = 3  # order = 1-based position in nodes.yaml + 3
STARTUP_DELAY = 15
SHUTDOWN_DELAY = 60


def resolve_sizing(node: NodeEntry, cluster: ClusterFile) -> dict[str, int]:
    """Key by key, the first that is set of: the node's `vm_<key>`, the operator's role
    defaults, the operator's `proxmox_vm_defaults`, the built-in role defaults, the
    built-in global defaults. (The template layout let the built-in role defaults win
    over `proxmox_vm_defaults`, so that key never took effect; here it does.)"""
    return _sizing(node, cluster, with_vm_defaults=True)


def template_sizing(node: NodeEntry, cluster: ClusterFile) -> dict[str, int]:
    """What the template setup created: like resolve_sizing, except that the built-in role
    defaults were merged over `proxmox_vm_defaults`, which therefore never took effect."""
    return _sizing(node, cluster, with_vm_defaults=False)


def _sizing(node: NodeEntry, cluster: ClusterFile, *, with_vm_defaults: bool) -> dict[str, int]:
    role = "controller" if node.controller else "worker"
    user_role = (
        cluster.proxmox_vm_controller_defaults if node.controller else cluster.proxmox_vm_worker_defaults
    )
    sizing = {}
    for key in SIZING_KEYS:
        chain = (
            getattr(node, f"vm_{key}"),
            getattr(user_role, key),
            getattr(cluster.proxmox_vm_defaults, key) if with_vm_defaults else None,
            BUILTIN_ROLE[role].get(key),
            BUILTIN_GLOBAL[key],
        )
        sizing[key] = next(value for value in chain if value is not None)
    return sizing


def resolve_startup(node: NodeEntry, position: int) -> tuple[int, int, int]:
    """(order, up delay, down delay); `position` is the node's 1-based place in nodes.yaml."""
    order = node.vm_startup_order
    return (
        order if order is not None else position + STARTUP_ORDER_OFFSET,
        node.vm_startup_delay if node.vm_startup_delay is not None else STARTUP_DELAY,
        node.vm_shutdown_delay if node.vm_shutdown_delay is not None else SHUTDOWN_DELAY,
    )
