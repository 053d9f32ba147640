"""State written by the template layout's addresses, planned with the cdktf stack: moves,
and on each VM only the stack's ownership tag added (0 to add, 0 to destroy, nothing that
restarts a VM), then applied and planned clean."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from config import OWNER_TAG
from devenv.fakepve import FakePveServer
from devenv.workspace import TofuWorkspace, example_nodes
from e2e.conftest import WorkspaceFactory
from e2e.expected import tfvars_for_template
from workflow.setup_tools import ROOT

pytestmark = pytest.mark.e2e

TEMPLATE = Path(__file__).parent / "template_layout"
LOCK = ROOT / "stacks" / ".terraform.lock.hcl"


def template_dir(ws: TofuWorkspace) -> Path:
    """The template-layout configuration, with the workspace's state backend and inputs."""
    assert ws.state is not None
    target = ws.root / "template"
    target.mkdir()
    for tf in TEMPLATE.glob("*.tf"):
        shutil.copyfile(tf, target / tf.name)
    shutil.copyfile(LOCK, target / ".terraform.lock.hcl")
    address = f"{ws.state.url}/states/{ws.state_name}"
    backend = {
        "http": {
            "address": address,
            "lock_address": f"{address}/lock",
            "unlock_address": f"{address}/lock",
            "lock_method": "LOCK",
            "unlock_method": "UNLOCK",
        }
    }
    (target / "backend_override.tf.json").write_text(json.dumps({"terraform": {"backend": backend}}))
    (target / "terraform.tfvars.json").write_text(
        json.dumps(tfvars_for_template(example_nodes(), ws.pve.url))
    )
    return target


def test_template_state_plans_only_moves(make_workspace: WorkspaceFactory, server: FakePveServer) -> None:
    ws = make_workspace(server)
    ws.write()
    old = template_dir(ws)
    ws.init(chdir=old)
    ws.apply(chdir=old)
    old_addresses = ws.state_list(chdir=old)
    assert len(old_addresses) == 8
    assert 'proxmox_virtual_environment_vm.talos_node["k8s-ctrl-0"]' in old_addresses
    created = server.call(lambda p: sorted(vm.vmid for vm in p.vms))

    ws.synth()
    ws.init()
    plan = ws.plan()
    assert plan.actions() == {"no-op": 2, "update": 6}, plan.actions()
    for change in plan.changes:  # the VMs: recognised by name, they get the stack's tag
        if change["type"] == "proxmox_virtual_environment_vm":
            before, after = change["change"]["before"], change["change"]["after"]
            assert sorted(after["tags"]) == sorted([*before["tags"], OWNER_TAG]), change["address"]
            assert {k: v for k, v in after.items() if k != "tags"} == {
                k: v for k, v in before.items() if k != "tags"
            }, change["address"]
    moves = plan.moves()
    assert sorted(moves) == sorted(old_addresses)
    assert (
        moves['proxmox_virtual_environment_vm.talos_node["k8s-work-2"]']
        == "proxmox_virtual_environment_vm.talos_node_k8s_work_2"
    )
    iso = next(k for k in moves if k.startswith("proxmox_virtual_environment_download_file"))
    assert moves[iso].startswith("proxmox_download_file.talos_iso_")  # across the type rename

    ws.apply()
    assert ws.plan(name="after.bin").exitcode == 0
    assert server.call(lambda p: sorted(vm.vmid for vm in p.vms)) == created
    tags = server.call(lambda p: {vm.name: str(vm.config.get("tags")).split(";") for vm in p.vms})
    assert all(OWNER_TAG in t for t in tags.values()), tags
