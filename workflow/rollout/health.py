"""Is a node back after its restart? Asked of the Proxmox API, the guest agent and Talos.

- The VM runs: `GET /nodes/{host}/qemu/{vmid}/status/current` says `running`.
- Its QEMU guest agent answers (when enabled): `POST .../agent/ping` succeeds.
- Its Talos API answers on port 50000 (a TCP connect), when the node's address is
  reachable from here (see `talos_reachable`).

The API token comes from PROXMOX_VE_API_TOKEN, the environment the workflow already
gives tofu; it only travels in a request header.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from workflow.proxmox.api import ProxmoxApi

TALOS_PORT = 50000
REQUEST_TIMEOUT = 5.0  # the Talos port's TCP connect
TALOS_CHECK_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Node:
    """What the health check needs to know about one restarted VM."""

    name: str
    host: str  # Proxmox node
    vm_id: int | None  # None: a replaced VM whose new id Proxmox chose (found by name)
    agent: bool
    address: str | None  # Talos node address from nodes.yaml
    talos: bool  # probe the Talos API port
    # With the cluster in view (workflow/rollout/cluster_view.py):
    boot_id: str | None = None  # the Node's bootID before the restart
    new_boot: bool = True  # a restart is expected (a live migration keeps the bootID)
    controller: bool = False  # /readyz must pass too
    uncordon: bool = False  # cordoned by the rollout: uncordon once healthy
    replaced: bool = False  # a new, empty VM: healthy once its Talos config made it a Node


def locate(api: ProxmoxApi, node: Node) -> tuple[str, int]:
    """(host, VM id) of the node's VM; a replaced VM's new id is found by name."""
    if node.vm_id is not None:
        return node.host, node.vm_id
    for vm in api.guests():
        if vm.get("name") == node.name and vm.get("type", "qemu") == "qemu":
            return str(vm.get("node") or node.host), int(vm["vmid"])
    raise LookupError(f"no VM named {node.name}")


def reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def talos_port_answers(address: str, port: int = TALOS_PORT) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((address, port), timeout=REQUEST_TIMEOUT):
            return None
    except OSError as exc:
        return reason(exc)


def check(api: ProxmoxApi, node: Node, probe: Callable[[str], str | None] = talos_port_answers) -> str | None:
    """None when the node is healthy, else what did not come back (one phrase)."""
    try:
        host, vm_id = locate(api, node)
        data = api.vm_status(host, vm_id)
        status = str(data.get("qmpstatus") or data.get("status") or "unknown")
    except (OSError, LookupError) as exc:
        return f"the Proxmox API did not report the VM ({reason(exc)})"
    if status != "running":
        return f"the VM is {status} in Proxmox"
    if node.agent:
        try:
            api.request("POST", api.vm_path(host, vm_id) + "/agent/ping")
        except OSError as exc:
            return f"the QEMU guest agent did not answer ({reason(exc)})"
    if node.talos and node.address:
        why = probe(node.address)
        if why is not None:
            return f"the Talos API {node.address}:{TALOS_PORT} did not answer ({why})"
    return None


def source_address(address: str) -> str | None:
    """The local address the kernel would send from to reach `address`: a UDP connect()
    picks a route and sends nothing. None when there is no route."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((address, TALOS_PORT))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def talos_reachable(
    address: str,
    node_cidr: str | None,
    mode: str = "auto",
    source: Callable[[str], str | None] = source_address,
) -> bool:
    """Whether to probe a node's Talos port. `on`/`off` decide; `auto` probes a loopback
    address, or one whose route leaves from an address of this machine inside the
    cluster's `node_cidr` (this machine sits on the nodes' network). A route through a
    default gateway says nothing about reaching the nodes, so no probe then."""
    if mode != "auto":
        return mode == "on"
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return True
    if node_cidr is None:
        return False
    local = source(address)
    return local is not None and ipaddress.ip_address(local) in ipaddress.ip_network(node_cidr)
