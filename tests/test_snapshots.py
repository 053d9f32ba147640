"""The synthesized stack, pinned as JSON snapshots (update: pytest --snapshot-update)."""

from __future__ import annotations

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from tests.support import BASE_CLUSTER, EXAMPLES, SCHEMATIC_A, SCHEMATIC_B, ConfigDir, node


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def test_example_cluster(example_dir: ConfigDir, snapshot_json) -> None:
    assert example_dir.synth() == snapshot_json


def test_single_node(config_dir: ConfigDir, snapshot_json) -> None:
    config_dir.write(BASE_CLUSTER, [node("solo", 0)])
    assert config_dir.synth() == snapshot_json


def test_mixed_schematics_and_secureboot(config_dir: ConfigDir, snapshot_json) -> None:
    nodes = [
        node("cp-0", 0, schematic_id=SCHEMATIC_A),
        node("cp-1", 1, schematic_id=SCHEMATIC_A, secureboot=True),
        node("w-0", 2, controller=False, schematic_id=SCHEMATIC_B),
        node("w-1", 3, controller=False, schematic_id=SCHEMATIC_B, secureboot=True),
        node("w-2", 4, controller=False, schematic_id=SCHEMATIC_B),
    ]
    stack = config_dir.write(BASE_CLUSTER, nodes).synth()
    assert len(stack["resource"]["proxmox_download_file"]) == 4
    assert stack == snapshot_json


def test_infrastructure_disabled(config_dir: ConfigDir, snapshot_json) -> None:
    cluster = {k: v for k, v in BASE_CLUSTER.items() if not k.startswith("proxmox_")}
    config_dir.write({**cluster, "cloudflare_domain": "example.com"}, [node("cp-0", 0)])
    stack = config_dir.synth()
    assert "resource" not in stack and "provider" not in stack
    assert stack == snapshot_json


def test_tfstate_url_override(config_dir: ConfigDir, snapshot_json) -> None:
    cluster = {
        **BASE_CLUSTER,
        "cloudflare_domain": "example.com",  # tfstate_url wins over it
        "tfstate_url": "http://127.0.0.1:8080/",
        "tfstate_state_name": "lab",
        "node_vlan_tag": "42",
        "proxmox_vm_advanced": {"tags": ["lab"], "qemu_agent": False, "disk_discard": False},
    }
    config_dir.write(cluster, [node("cp-0", 0, mtu=9000, vm_id=4242)])
    stack = config_dir.synth(name="lab")
    assert stack["terraform"]["backend"]["http"]["address"] == "http://127.0.0.1:8080/states/lab"
    assert stack == snapshot_json


# --- several Proxmox hosts (the single-host snapshots above must not change) ------------

MULTI_HOST = EXAMPLES / "multi-host"


def test_multi_host_spread_cluster(config_dir: ConfigDir, snapshot_json) -> None:
    config_dir.write(
        MULTI_HOST.joinpath("cluster.yaml").read_text(), MULTI_HOST.joinpath("nodes.yaml").read_text()
    )
    stack = config_dir.synth()
    vms = stack["resource"]["proxmox_virtual_environment_vm"]
    assert {vm["node_name"] for vm in vms.values()} == {"pve1", "pve2", "pve3"}
    assert all(vm["migrate"] is True for vm in vms.values())
    assert len(stack["resource"]["proxmox_download_file"]) == 6  # 2 schematics x 3 hosts
    assert stack == snapshot_json


def test_multi_host_shared_iso_storage(config_dir: ConfigDir, snapshot_json) -> None:
    cluster = {**BASE_CLUSTER, "proxmox_nodes": ["pve1", "pve2", "pve3"], "proxmox_iso_storage_shared": True}
    nodes = [node(f"cp-{i}", i) for i in range(3)] + [
        node(f"w-{i}", 3 + i, controller=False, schematic_id=SCHEMATIC_B) for i in range(3)
    ]
    stack = config_dir.write(cluster, nodes).synth()
    downloads = stack["resource"]["proxmox_download_file"]
    assert sorted(downloads) == ["talos_iso_376567988ad3", "talos_iso_ce4c980550dd"]
    assert {d["node_name"] for d in downloads.values()} == {"pve1"}
    assert stack == snapshot_json


def test_multi_host_explicit_placement(config_dir: ConfigDir, snapshot_json) -> None:
    """Every node pinned, no proxmox_nodes list, one node on its own datastore."""
    nodes = [
        node("cp-0", 0, proxmox_node="pve-a"),
        node("cp-1", 1, proxmox_node="pve-b"),
        node("cp-2", 2, proxmox_node="pve-c", secureboot=True),
        node("w-0", 3, controller=False, proxmox_node="pve-a", proxmox_disk_storage="nvme-a"),
    ]
    stack = config_dir.write({**BASE_CLUSTER, "proxmox_node": "pve-a"}, nodes).synth()
    assert stack["output"]["node_hosts"]["value"] == {
        "cp-0": "pve-a",
        "cp-1": "pve-b",
        "cp-2": "pve-c",
        "w-0": "pve-a",
    }
    assert stack == snapshot_json
