"""The example cluster (3 controllers, 3 workers, 2 ISOs) applied to fakepve with the real
tofu and bpg provider, read back from fakepve, re-planned, resized and destroyed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config import OWNER_TAG
from devenv.fakepve import FakePveServer
from devenv.state_server import StateServer
from devenv.workspace import HttpState, TofuWorkspace, example_nodes
from e2e.conftest import WorkspaceFactory, guest_addresses
from e2e.expected import TAGS, VLAN, expected_vms, iso_of, options
from workflow.setup_tools import Tools

pytestmark = pytest.mark.e2e

NEW_SCHEMATIC = "0" * 63 + "1"


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory, tools: Tools, http_state: HttpState, pve: FakePveServer
) -> Iterator[TofuWorkspace]:
    """The example applied once for the read-only tests of this module."""
    pve.call(lambda p: p.guest_addresses.update(guest_addresses(example_nodes())))
    ws = TofuWorkspace(
        tmp_path_factory.mktemp("deployed"), tools, pve, state=http_state, state_name="lifecycle"
    )
    ws.write().synth()
    ws.init()
    ws.apply()
    yield ws


def vm_configs(pve: FakePveServer) -> dict[str, dict[str, Any]]:
    return pve.call(lambda p: {vm.name: dict(vm.config, _status=vm.status, _vmid=vm.vmid) for vm in p.vms})


def test_apply_creates_every_vm_as_configured(deployed: TofuWorkspace, pve: FakePveServer) -> None:
    expected = expected_vms(example_nodes())
    actual = vm_configs(pve)
    assert sorted(actual) == sorted(expected)
    for name, want in expected.items():
        cfg = actual[name]
        assert cfg["_vmid"] == want.vm_id and cfg["_status"] == "running", name
        # CPU and memory
        assert (int(cfg["cores"]), int(cfg["sockets"]), cfg["cpu"]) == (want.cores, want.sockets, "host"), (
            name
        )
        assert str(cfg["numa"]) == "1", name
        assert (int(cfg["memory"]), int(cfg["balloon"])) == (want.memory, 0), name
        assert (cfg["bios"], cfg["machine"], cfg["ostype"], cfg["scsihw"]) == (
            "ovmf",
            "q35",
            "l26",
            "virtio-scsi-pci",
        ), name
        # the install disk
        volume, disk = options(cfg["scsi0"])
        assert volume is not None and volume.startswith("local-lvm:"), name
        assert disk["size"] == f"{want.disk_size}G", name
        assert (disk["discard"], disk["ssd"], disk["backup"], disk["replicate"], disk["iothread"]) == (
            "on",
            "1",
            "0",
            "0",
            "0",
        ), name
        # EFI vars disk: 4m, no Microsoft keys (Talos SecureBoot enrols its own)
        volume, efi = options(cfg["efidisk0"])
        assert volume is not None and volume.startswith("local-lvm:"), name
        assert (efi["efitype"], efi["pre-enrolled-keys"]) == ("4m", "0"), name
        # NIC: MAC as given (Proxmox writes it upper-case), VLAN, MTU, queues
        _, net = options(cfg["net0"])
        assert net["virtio"] == want.mac, name
        assert (net["bridge"], net["tag"], net["queues"]) == ("vmbr0", str(VLAN), "4"), name
        assert net.get("mtu") == (str(want.mtu) if want.mtu else None), name
        # the Talos ISO as CD-ROM, the disk first in the boot order
        volume, cdrom = options(cfg["ide2"])
        assert (volume, cdrom["media"]) == (f"local:iso/{want.iso_file}", "cdrom"), name
        assert cfg["boot"] == "order=scsi0;ide2", name
        _, startup = options(cfg["startup"])
        assert startup == {
            "order": str(want.startup_order),
            "up": str(want.startup_delay),
            "down": str(want.shutdown_delay),
        }, name
        # Proxmox keeps tags sorted; the set is what counts.
        assert sorted(cfg["tags"].split(";")) == sorted([*TAGS, want.role, OWNER_TAG]), name
        assert options(cfg["agent"])[1].get("enabled") == "1", name
        assert str(cfg["onboot"]) == "1", name
        assert cfg["description"] == f"Talos Linux {'control plane' if want.controller else 'worker'} node"


def test_apply_downloads_one_iso_per_schematic_and_secureboot(
    deployed: TofuWorkspace, pve: FakePveServer
) -> None:
    wanted = {iso_of(n) for n in example_nodes()}
    assert len(wanted) == 2
    files = pve.call(lambda p: set(p.storages["local"]["files"]))
    assert files == {name for name, _ in wanted}
    bodies = pve.call(
        lambda p: [
            body
            for method, path, body in p.requests
            if method == "POST" and path.endswith("/storage/local/download-url")
        ]
    )
    for _, url in wanted:
        assert any(
            url.encode() in body or url.replace("/", "%2F").replace(":", "%3A").encode() in body
            for body in bodies
        ), url


def test_outputs_and_agent_addresses(deployed: TofuWorkspace) -> None:
    out = deployed.outputs()
    expected = expected_vms(example_nodes())
    assert out["node_vm_ids"] == {name: vm.vm_id for name, vm in expected.items()}
    assert out["controller_nodes"] == ["k8s-ctrl-0", "k8s-ctrl-1", "k8s-ctrl-2"]
    assert out["worker_nodes"] == ["k8s-work-0", "k8s-work-1", "k8s-work-2"]
    # The agent is enabled (the default a real Talos VM wants) and answered: the
    # provider recorded each node's address as the guest reported it.
    state = deployed.tofu("show", "-json").stdout
    for node in example_nodes():
        assert f'"{node["address"]}"' in state, node["name"]


def test_second_plan_has_no_changes(deployed: TofuWorkspace) -> None:
    plan = deployed.plan()
    assert plan.exitcode == 0, plan.actions()
    assert set(plan.actions()) == {"no-op"}


def test_removing_a_node_plans_exactly_one_destroy(deployed: TofuWorkspace) -> None:
    nodes = [n for n in example_nodes() if n["name"] != "k8s-work-1"]
    try:
        deployed.write(nodes).synth()
        plan = deployed.plan(name="remove.bin")
        assert plan.exitcode == 2
        assert plan.addresses("delete") == ["proxmox_virtual_environment_vm.talos_node_k8s_work_1"]
        assert plan.actions() == {"delete": 1, "no-op": 7}
    finally:
        deployed.write().synth()


@pytest.mark.parametrize(
    ("schematic", "extra"),
    [
        pytest.param(None, [], id="known-schematic"),
        pytest.param(NEW_SCHEMATIC, ["proxmox_download_file.talos_iso_000000000000"], id="new-schematic"),
    ],
)
def test_adding_a_node_plans_exactly_one_vm(
    deployed: TofuWorkspace, schematic: str | None, extra: list[str]
) -> None:
    nodes = example_nodes()
    new = {
        **nodes[3],
        "name": "k8s-work-3",
        "address": "10.10.0.23",
        "mac_addr": "bc:24:11:00:00:23",
        "vm_id": 8023,
    }
    if schematic:
        new["schematic_id"] = schematic
    try:
        deployed.write([*nodes, new]).synth()
        plan = deployed.plan(name="add.bin")
        assert plan.exitcode == 2
        assert plan.addresses("create") == sorted(
            ["proxmox_virtual_environment_vm.talos_node_k8s_work_3", *extra]
        )
        assert plan.actions() == {"create": 1 + len(extra), "no-op": 8}
    finally:
        deployed.write().synth()


def test_secrets_stay_out_of_files_and_logs(deployed: TofuWorkspace, state_server: StateServer) -> None:
    """The token secret and the state password reach tofu only through its environment:
    not in cdktf.out (cdk.tf.json, .terraform), plan files, tofu's output, the state, or
    the state server's store and log."""
    deployed.plan(name="secrets.bin")
    assert (deployed.stack_dir / "secrets.bin").exists()
    assert deployed.files_containing(deployed.secrets()) == []
    leaked = [
        p
        for p in state_server.directory.rglob("*")
        if p.is_file() and any(s.encode() in p.read_bytes() for s in deployed.secrets())
    ]
    assert leaked == []
    # The environment did carry them: the checks above would pass vacuously otherwise.
    env = deployed.env()
    assert env["PROXMOX_VE_API_TOKEN"].endswith("=" + deployed.pve.token_secret)
    assert env["TF_HTTP_PASSWORD"] == state_server.state.password


def test_destroy_leaves_fakepve_empty(make_workspace: WorkspaceFactory, server: FakePveServer) -> None:
    # Its own fakepve (`server`): the module's is shared by the read-only tests above.
    ws = make_workspace(server)
    ws.write().synth()
    ws.init()
    ws.apply()
    assert server.call(lambda p: len(p.vms)) == 6
    ws.destroy()
    assert server.call(lambda p: [vm.vmid for vm in p.vms]) == []
    assert server.call(lambda p: sorted(p.storages["local"]["files"])) == []
    assert server.call(lambda p: {k: sorted(s.get("volumes", {})) for k, s in p.storages.items()}) == {
        "local": [],
        "local-lvm": [],
    }
    assert ws.state_list() == []
