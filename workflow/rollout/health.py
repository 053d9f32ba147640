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
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

TALOS_PORT = 50000
REQUEST_TIMEOUT = 5.0
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


class ProxmoxApi:
    def __init__(self, endpoint: str, token: str, *, insecure: bool) -> None:
        self.base = endpoint.rstrip("/") + "/api2/json"
        # As the provider (Go) sends it: UTF-8, control characters other than tab refused.
        self._authorization = f"PVEAPIToken={token}".encode()
        # Refused here: http.client's own error for such a value quotes it, the secret.
        self._sendable = all(c == "\t" or " " <= c != "\x7f" for c in token)
        self._ctx = ssl.create_default_context()
        if insecure:  # as the provider's `insecure`: a self-signed certificate is accepted
            self._ctx.check_hostname = False
            self._ctx.verify_mode = ssl.CERT_NONE

    def _request(self, method: str, path: str, form: dict[str, str] | None = None) -> Any:
        if not self._sendable:
            raise ValueError("the API token holds a control character (a line break?)")
        data = urllib.parse.urlencode(form or {}).encode() if method in ("POST", "PUT") else None
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=data,
            headers={"Authorization": self._authorization},  # type: ignore[dict-item]
        )
        with urllib.request.urlopen(request, context=self._ctx, timeout=REQUEST_TIMEOUT) as response:
            return json.load(response).get("data")

    def resolve(self, node: Node) -> Node:
        """The node with its VM id (and host) from the cluster's VM list, by name."""
        if node.vm_id is not None:
            return node
        for vm in self._request("GET", "/cluster/resources?type=vm") or []:
            if vm.get("name") == node.name and vm.get("type", "qemu") == "qemu":
                return replace(node, vm_id=int(vm["vmid"]), host=str(vm.get("node") or node.host))
        raise LookupError(f"no VM named {node.name}")

    def vm_path(self, node: Node) -> str:
        return f"/nodes/{urllib.parse.quote(node.host)}/qemu/{node.vm_id}"

    def status(self, node: Node) -> str:
        data = self._request("GET", self.vm_path(node) + "/status/current") or {}
        return str(data.get("qmpstatus") or data.get("status") or "unknown")

    def agent_ping(self, node: Node) -> None:
        self._request("POST", self.vm_path(node) + "/agent/ping")

    def vm_config(self, host: str, vm_id: int) -> dict[str, Any]:
        return self._request("GET", f"/nodes/{urllib.parse.quote(host)}/qemu/{vm_id}/config") or {}

    def set_vm_config(self, host: str, vm_id: int, values: dict[str, str]) -> None:
        self._request("PUT", f"/nodes/{urllib.parse.quote(host)}/qemu/{vm_id}/config", values)


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}".strip()
    if isinstance(exc, urllib.error.URLError):
        return str(getattr(exc.reason, "strerror", None) or exc.reason)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def talos_port_answers(address: str, port: int = TALOS_PORT) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((address, port), timeout=REQUEST_TIMEOUT):
            return None
    except OSError as exc:
        return _why(exc)


def check(api: ProxmoxApi, node: Node, probe: Callable[[str], str | None] = talos_port_answers) -> str | None:
    """None when the node is healthy, else what did not come back (one phrase)."""
    try:
        node = api.resolve(node)
        status = api.status(node)
    except (OSError, ValueError, LookupError) as exc:
        return f"the Proxmox API did not report the VM ({_why(exc)})"
    if status != "running":
        return f"the VM is {status} in Proxmox"
    if node.agent:
        try:
            api.agent_ping(node)
        except (OSError, ValueError) as exc:
            return f"the QEMU guest agent did not answer ({_why(exc)})"
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
