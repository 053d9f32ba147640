"""The rolling apply's health check against fakepve's API (HTTPS, self-signed, a token)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devenv.fakepve import FakePveServer
from workflow.proxmox.api import ProxmoxApi
from workflow.rollout.health import Node, check

pytestmark = pytest.mark.e2e

MAC = "bc:24:11:00:77:01"
# A loopback address of its own per run: two runs on one machine do not collide on port 50000.
ADDRESS = f"127.{secrets.randbelow(180) + 64}.{secrets.randbelow(256)}.1"


@pytest.fixture(scope="module")
def pve() -> Iterator[FakePveServer]:
    with FakePveServer() as server:
        server.wait_ready()
        yield server


def node(**changes: Any) -> Node:
    values: dict[str, Any] = {
        "name": "n1",
        "host": "pve1",
        "vm_id": 7701,
        "agent": True,
        "address": ADDRESS,
        "talos": True,
    }
    return Node(**{**values, **changes})


def vm(status: str = "running", agent: bool = True, talos_down: bool = False) -> Callable[[Any], None]:
    def setup(p: Any) -> None:
        for old in [v for v in p.vms if v.vmid == 7701]:
            old.status = "stopped"
            p.vms.remove(old)
        p.simulate_agent = agent
        p.talos_addresses[MAC] = ADDRESS
        p.set_talos_down("n1", talos_down)
        p.add_vm(
            7701, "n1", status=status, config={"agent": "1", "net0": f"virtio={MAC.upper()},bridge=vmbr0"}
        )
        p.set_talos_down("n1", talos_down)  # opens the listener of the VM just added

    return setup


@pytest.mark.parametrize(
    ("setup", "which", "problem"),
    [
        (vm(), node(), None),
        (vm(status="stopped"), node(), "the VM is stopped in Proxmox"),
        (vm(agent=False), node(), "the QEMU guest agent did not answer (HTTP 500"),
        (vm(agent=False), node(agent=False), None),  # agent not enabled: not asked
        (vm(talos_down=True), node(), f"the Talos API {ADDRESS}:50000 did not answer (Connection refused)"),
        (vm(talos_down=True), node(talos=False), None),  # not reachable from here: not probed
        (vm(), node(vm_id=7799), "the Proxmox API did not report the VM (HTTP"),
        (vm(), node(vm_id=None), None),  # a replaced VM: found by name
        (vm(), node(vm_id=None, name="n9"), "the Proxmox API did not report the VM (no VM named n9)"),
    ],
)
def test_health_check(
    pve: FakePveServer, setup: Callable[[Any], None], which: Node, problem: str | None
) -> None:
    pve.call(setup)
    try:
        got = check(ProxmoxApi(pve.url, pve.api_token, insecure=True), which)
    finally:
        pve.call(vm(status="stopped"))  # closes the listener
    if problem is None:
        assert got is None
    else:
        assert got is not None and got.startswith(problem), got


def test_a_wrong_token_or_an_unverified_certificate_is_reported(pve: FakePveServer) -> None:
    pve.call(vm())
    try:
        wrong = ProxmoxApi(pve.url, pve.token_id + "=wrong", insecure=True)
        assert (check(wrong, node()) or "").startswith("the Proxmox API did not report the VM (HTTP 401")
        strict = ProxmoxApi(pve.url, pve.api_token, insecure=False)  # self-signed: refused
        assert "CERTIFICATE_VERIFY_FAILED" in (check(strict, node()) or "")
    finally:
        pve.call(vm(status="stopped"))
