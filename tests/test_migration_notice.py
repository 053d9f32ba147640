"""Migrating from the templates: a `proxmox_vm_defaults` that now resizes VMs is announced.

The template setup let its built-in role defaults win over `proxmox_vm_defaults`; this app
honours the key, so the first plan would change existing VMs. Synthesis warns, naming the
key, the nodes, old -> new values, and the role defaults that keep today's sizes.
"""

from __future__ import annotations

import pytest

from config import ConfigPaths, load_config
from tests.support import BASE_CLUSTER, ConfigDir, node

CTRL = [node("c0", 0), node("c1", 1)]
WORK = [node("w0", 2, controller=False)]
KEEP = "the template setup ignored proxmox_vm_defaults, this app applies it"


def warnings_for(d: ConfigDir, cluster: dict, nodes: list) -> list[str]:
    d.write({**BASE_CLUSTER, **cluster}, nodes)
    result = load_config(ConfigPaths(d.cluster, d.nodes))
    # only this notice: other warnings (e.g. an even number of controllers) are not ours
    return [str(w).removeprefix(f"{d.cluster}:") for w in result.warnings if w.key == "proxmox_vm_defaults"]


@pytest.mark.parametrize(
    ("cluster", "nodes", "expected"),
    [
        # unset, or only values equal to what the templates used: no warning
        ({}, CTRL + WORK, []),
        ({"proxmox_vm_defaults": {}}, CTRL + WORK, []),
        ({"proxmox_vm_defaults": {"sockets": 1}}, CTRL + WORK, []),
        # role defaults set every key: proxmox_vm_defaults changes nothing (the example's setup)
        (
            {
                "proxmox_vm_defaults": {"memory": 4096},
                "proxmox_vm_controller_defaults": {"memory": 8192},
                "proxmox_vm_worker_defaults": {"memory": 16384},
            },
            CTRL + WORK,
            [],
        ),
        # every node sets its own value: nothing changes
        ({"proxmox_vm_defaults": {"cores": 2}}, [node("c0", 0, vm_cores=4)], []),
        # one role changes, one key
        (
            {"proxmox_vm_defaults": {"memory": 4096}},
            CTRL,
            [
                "7: proxmox_vm_defaults: warning: controller VMs created by the template setup change "
                f"size: c0, c1: memory 8192 -> 4096 ({KEEP}; to keep the sizes it created, set "
                "proxmox_vm_controller_defaults: {memory: 8192})"
            ],
        ),
        # both roles, several keys, a disk that would shrink
        (
            {"proxmox_vm_defaults": {"cores": 2, "disk_size": 100}},
            CTRL + WORK,
            [
                "7: proxmox_vm_defaults: warning: controller VMs created by the template setup change "
                f"size: c0, c1: cores 4 -> 2, disk_size 64 -> 100 ({KEEP}; to keep the sizes it "
                "created, set proxmox_vm_controller_defaults: {cores: 4, disk_size: 64})",
                "7: proxmox_vm_defaults: warning: worker VMs created by the template setup change "
                f"size: w0: cores 8 -> 2, disk_size 256 -> 100 ({KEEP}; disks cannot shrink; to keep "
                "the sizes it created, set proxmox_vm_worker_defaults: {cores: 8, disk_size: 256})",
            ],
        ),
        # a node's own value and a role default keep some keys: only the others are named
        (
            {
                "proxmox_vm_defaults": {"memory": 2048, "cores": 2},
                "proxmox_vm_controller_defaults": {"cores": 6},
            },
            [node("c0", 0), node("c1", 1, vm_memory=9000)],
            [
                "7: proxmox_vm_defaults: warning: controller VMs created by the template setup change "
                f"size: c0: memory 8192 -> 2048 ({KEEP}; to keep the sizes it created, set "
                "proxmox_vm_controller_defaults: {memory: 8192})"
            ],
        ),
    ],
)
def test_warning_names_key_nodes_and_old_to_new(config_dir: ConfigDir, cluster, nodes, expected) -> None:
    assert warnings_for(config_dir, cluster, nodes) == expected


def test_following_the_hint_silences_the_warning_and_keeps_the_template_sizes(config_dir: ConfigDir) -> None:
    cluster = {"proxmox_vm_defaults": {"cores": 2, "memory": 4096, "disk_size": 100}}
    assert len(warnings_for(config_dir, cluster, CTRL + WORK)) == 2
    kept = {
        **cluster,
        "proxmox_vm_controller_defaults": {"cores": 4, "memory": 8192, "disk_size": 64},
        "proxmox_vm_worker_defaults": {"cores": 8, "memory": 16384, "disk_size": 256},
    }
    assert warnings_for(config_dir, kept, CTRL + WORK) == []
    config = load_config(ConfigPaths(config_dir.cluster, config_dir.nodes)).config
    sizes = {vm.name: (vm.cores, vm.memory, vm.disk_size) for vm in config.vms}
    assert sizes == {"c0": (4, 8192, 64), "c1": (4, 8192, 64), "w0": (8, 16384, 256)}


def test_main_prints_the_warning_and_still_synthesizes(config_dir: ConfigDir) -> None:
    config_dir.write({**BASE_CLUSTER, "proxmox_vm_defaults": {"memory": 4096}}, [*CTRL, node("c2", 5)])
    proc = config_dir.run_main()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{config_dir.cluster}:7: proxmox_vm_defaults: warning: controller VMs created by the template "
        f"setup change size: c0, c1, c2: memory 8192 -> 4096 ({KEEP}; to keep the sizes it created, set "
        "proxmox_vm_controller_defaults: {memory: 8192})"
    ]
    assert "Synthesized stack 'proxmox': 3 nodes" in proc.stdout
