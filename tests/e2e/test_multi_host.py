"""Several Proxmox hosts, with the real tofu and bpg provider against a fakepve of three
(then four) hosts: VMs spread and read back per host, each host holding exactly the
Talos ISOs its VMs boot, moves that migrate (never destroy), a host added and emptied,
a shared ISO datastore, and a host the API does not know."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import TofuWorkspace, example_nodes
from e2e.conftest import HOSTS, WorkspaceFactory, guest_addresses
from e2e.expected import iso_of

pytestmark = pytest.mark.e2e

VM = "proxmox_virtual_environment_vm.talos_node_"
DOWNLOAD = re.compile(r"^/api2/json/nodes/([^/]+)/storage/([^/]+)/download-url$")


# ------------------------------------------------------------------ read back


def vm_hosts(pve: FakePveServer) -> dict[str, str]:
    return pve.call(lambda p: {vm.name: vm.node for vm in p.vms})


def iso_files(pve: FakePveServer, storage: str = "local") -> dict[str, set[str]]:
    """host -> the ISO files on its `storage` (the fake keeps content per host)."""
    return pve.call(lambda p: {h: s.get(storage, set()) for h, s in p.iso_files().items()})


def downloads(pve: FakePveServer) -> Counter[tuple[str, str]]:
    """(host, storage) of every download-url request."""
    paths = pve.call(lambda p: [path for method, path, _ in p.requests if method == "POST"])
    return Counter(m.groups() for m in map(DOWNLOAD.match, paths) if m)


def spread(nodes: list[dict[str, Any]], hosts: list[str]) -> dict[str, str]:
    """The documented rule, written out: the k-th node of each role on hosts[k mod n]."""
    seen: Counter[bool] = Counter()
    out = {}
    for n in nodes:
        out[n["name"]] = n.get("proxmox_node") or hosts[seen[bool(n["controller"])] % len(hosts)]
        seen[bool(n["controller"])] += 1
    return out


def expected_isos(nodes: list[dict[str, Any]], placement: dict[str, str]) -> dict[str, set[str]]:
    """host -> the ISO file of every VM it runs."""
    out: dict[str, set[str]] = {}
    for n in nodes:
        out.setdefault(placement[n["name"]], set()).add(iso_of(n)[0])
    return out


def eject(pve: FakePveServer, names: list[str]) -> None:
    """What the README tells the operator to do before moving a VM whose ISO is on a
    host's own datastore (`qm set <vmid> --ide2 none,media=cdrom`): Proxmox refuses to
    migrate a VM with a local ISO in its CD-ROM drive."""

    def run(p: Any) -> None:
        for vm in p.vms:
            if vm.name in names:
                vm.config["ide2"] = "none,media=cdrom"

    pve.call(run)


def applied(ws: TofuWorkspace, nodes: list[dict[str, Any]], **cluster: Any) -> TofuWorkspace:
    ws.write(nodes, **cluster).synth()
    ws.init()
    ws.apply()
    return ws


def no_vm_destroyed(plan: Any) -> None:
    gone = plan.addresses("delete") + plan.addresses("replace")
    assert [a for a in gone if a.startswith(VM)] == [], plan.actions()


# ----------------------------------------------------------------------- tests


def test_apply_spreads_vms_and_isos_over_three_hosts(
    make_workspace: WorkspaceFactory, cluster_pve: FakePveServer
) -> None:
    nodes = example_nodes()
    ws = applied(make_workspace(cluster_pve), nodes, proxmox_nodes=HOSTS)
    placement = spread(nodes, HOSTS)
    assert set(placement.values()) == set(HOSTS)
    assert vm_hosts(cluster_pve) == placement
    # Each host holds the ISOs its VMs boot, and only those; one download each.
    want = expected_isos(nodes, placement)
    assert iso_files(cluster_pve) == want
    assert downloads(cluster_pve) == Counter({(h, "local"): len(files) for h, files in want.items()})
    # Every VM's disks are on its own host's local-lvm.
    volumes = cluster_pve.call(
        lambda p: {h: sorted(s["local-lvm"].get("volumes", {})) for h in HOSTS for s in [p.storages_on(h)]}
    )
    for name, host in placement.items():
        vmid = next(n["vm_id"] for n in nodes if n["name"] == name)
        assert f"vm-{vmid}-disk-0" in volumes[host], (name, host)
    assert ws.outputs()["node_hosts"] == placement
    plan = ws.plan(name="again.bin")
    assert plan.exitcode == 0, plan.actions()


def test_one_host_then_several_then_a_move_migrates_and_never_destroys(
    make_workspace: WorkspaceFactory, cluster_pve: FakePveServer
) -> None:
    nodes = example_nodes()
    ws = applied(make_workspace(cluster_pve), nodes)  # today's single-host config
    assert set(vm_hosts(cluster_pve).values()) == {"pve1"}
    vmids = cluster_pve.call(lambda p: {vm.name: vm.vmid for vm in p.vms})

    # 1. proxmox_nodes: four VMs move off pve1. The plan updates them in place.
    ws.write(nodes, proxmox_nodes=HOSTS).synth()
    plan = ws.plan(name="spread.bin")
    no_vm_destroyed(plan)
    # k8s-work-2's SecureBoot ISO goes with it from pve1 to pve3; pve2 and pve3 get theirs.
    sb = "proxmox_download_file.talos_iso_376567988ad3_secureboot"
    assert plan.addresses("delete") == [sb]
    assert plan.addresses("create") == [
        sb + "_on_pve3",
        "proxmox_download_file.talos_iso_ce4c980550dd_on_pve2",
        "proxmox_download_file.talos_iso_ce4c980550dd_on_pve3",
    ]
    placement = spread(nodes, HOSTS)
    moving = sorted(name for name, host in placement.items() if host != "pve1")
    assert moving == ["k8s-ctrl-1", "k8s-ctrl-2", "k8s-work-1", "k8s-work-2"]
    assert plan.addresses("update") == sorted(VM + n.replace("-", "_") for n in nodes_names(nodes))
    moves = {
        c["address"]: (c["change"]["before"]["node_name"], c["change"]["after"]["node_name"])
        for c in plan.changes
        if c["type"] == "proxmox_virtual_environment_vm"
    }
    assert {a: m for a, m in moves.items() if m[0] != m[1]} == {
        VM + n.replace("-", "_"): ("pve1", placement[n]) for n in moving
    }

    # 2. Proxmox refuses to migrate a VM whose CD-ROM holds an ISO on a host's own
    #    datastore: the apply fails with its message and nothing is destroyed.
    failed = ws.apply(ok=(1,))
    assert "migration aborted" in failed.output
    assert cluster_pve.call(lambda p: {vm.name: vm.vmid for vm in p.vms}) == vmids
    no_vm_destroyed(ws.plan(name="retry.bin"))

    # 3. With the ISOs ejected (the README's step) the same apply migrates them.
    eject(cluster_pve, moving)
    ws.apply()
    assert vm_hosts(cluster_pve) == placement
    assert cluster_pve.call(lambda p: {vm.name: vm.vmid for vm in p.vms}) == vmids  # same VMs, moved
    assert iso_files(cluster_pve) == expected_isos(nodes, placement)
    assert ws.plan(name="settled.bin").exitcode == 0

    # 4. Moving one worker again (pinned to another host) is one in-place update.
    nodes[3]["proxmox_node"] = "pve3"  # k8s-work-0: pve1 -> pve3
    ws.write(nodes, proxmox_nodes=HOSTS).synth()
    plan = ws.plan(name="move.bin")
    no_vm_destroyed(plan)
    assert plan.addresses("update") == [VM + "k8s_work_0"]
    eject(cluster_pve, ["k8s-work-0"])
    ws.apply()
    assert vm_hosts(cluster_pve)["k8s-work-0"] == "pve3"
    assert cluster_pve.call(lambda p: p.vm(8020).node) == "pve3"
    migrations = cluster_pve.call(
        lambda p: [(t["id"], t["exitstatus"]) for t in p.tasklog if t["type"] == "qmigrate"]
    )
    assert migrations.count(("8020", "OK")) == 1
    # pve1 no longer runs a VM booting that ISO... but k8s-ctrl-0 still does: it stays.
    placement["k8s-work-0"] = "pve3"
    assert iso_files(cluster_pve) == expected_isos(nodes, placement)
    assert ws.plan(name="moved.bin").exitcode == 0


def nodes_names(nodes: list[dict[str, Any]]) -> list[str]:
    return [n["name"] for n in nodes]


def test_a_fourth_host_then_removing_its_only_vm(
    make_workspace: WorkspaceFactory, cluster_pve: FakePveServer
) -> None:
    nodes = example_nodes()
    ws = applied(make_workspace(cluster_pve), nodes, proxmox_nodes=HOSTS)
    before = vm_hosts(cluster_pve)
    isos_before = iso_files(cluster_pve)

    # A fourth host, and a worker appended to nodes.yaml: it lands on pve4, nothing moves.
    cluster_pve.call(lambda p: p.add_host("pve4"))
    new = {
        **nodes[3],
        "name": "k8s-work-3",
        "address": "10.10.0.23",
        "mac_addr": "bc:24:11:00:00:23",
        "vm_id": 8023,
    }
    cluster_pve.call(lambda p: p.guest_addresses.update(guest_addresses([new])))
    four = [*HOSTS, "pve4"]
    ws.write([*nodes, new], proxmox_nodes=four).synth()
    plan = ws.plan(name="grow.bin")
    assert plan.addresses("create") == [
        f"proxmox_download_file.talos_iso_{new['schematic_id'][:12]}_on_pve4",
        VM + "k8s_work_3",
    ]
    assert set(plan.actions()) == {"create", "no-op"}
    ws.apply()
    assert vm_hosts(cluster_pve) == {**before, "k8s-work-3": "pve4"}
    assert iso_files(cluster_pve)["pve4"] == {iso_of(new)[0]}
    assert ws.plan(name="grown.bin").exitcode == 0

    # Removing the only VM of pve4 removes the ISO downloaded for it there, and only that.
    ws.write(nodes, proxmox_nodes=four).synth()
    plan = ws.plan(name="shrink.bin")
    assert plan.addresses("delete") == [
        f"proxmox_download_file.talos_iso_{new['schematic_id'][:12]}_on_pve4",
        VM + "k8s_work_3",
    ]
    ws.apply()
    assert vm_hosts(cluster_pve) == before
    assert iso_files(cluster_pve) == {**isos_before, "pve4": set()}
    assert ws.plan(name="shrunk.bin").exitcode == 0


def test_shared_iso_storage_downloads_once_and_moves_need_no_eject(
    make_workspace: WorkspaceFactory, cluster_pve: FakePveServer
) -> None:
    def add_shared(p: Any) -> None:  # a directory every host mounts (NFS, CephFS, ...)
        p.storages["isos"] = {
            "type": "dir",
            "path": "/mnt/pve/isos",
            "shared": 1,
            "content": "iso",
            "active": 1,
            "files": set(),
            "volumes": {},
        }

    cluster_pve.call(add_shared)
    nodes = example_nodes()
    settings = {"proxmox_nodes": HOSTS, "proxmox_iso_storage": "isos", "proxmox_iso_storage_shared": True}
    ws = applied(make_workspace(cluster_pve), nodes, **settings)
    assert vm_hosts(cluster_pve) == spread(nodes, HOSTS)
    wanted = {iso_of(n)[0] for n in nodes}
    assert downloads(cluster_pve) == Counter({("pve1", "isos"): len(wanted)})  # one each, on proxmox_node
    assert all(files == wanted for files in iso_files(cluster_pve, "isos").values())
    assert all(not files for files in iso_files(cluster_pve, "local").values())

    nodes[3]["proxmox_node"] = "pve2"  # k8s-work-0: pve1 -> pve2, its ISO on the shared datastore
    ws.write(nodes, **settings).synth()
    plan = ws.plan(name="move.bin")
    assert plan.addresses("update") == [VM + "k8s_work_0"] and set(plan.actions()) == {"update", "no-op"}
    ws.apply()
    assert vm_hosts(cluster_pve)["k8s-work-0"] == "pve2"
    assert ws.plan(name="moved.bin").exitcode == 0


def test_a_host_the_api_does_not_have_fails_and_changes_nothing(
    make_workspace: WorkspaceFactory, cluster_pve: FakePveServer
) -> None:
    nodes = example_nodes()
    ws = applied(make_workspace(cluster_pve), nodes, proxmox_nodes=HOSTS)
    hosts, isos, state = vm_hosts(cluster_pve), iso_files(cluster_pve), ws.state_list()
    new = {
        **nodes[3],
        "name": "k8s-work-3",
        "address": "10.10.0.23",
        "mac_addr": "bc:24:11:00:00:23",
        "vm_id": 8023,
    }
    ws.write([*nodes, new], proxmox_nodes=[*HOSTS, "pve9"]).synth()  # pve9: not in this cluster
    failed = ws.apply(ok=(1,))
    text = " ".join(failed.output.split())
    assert "hostname lookup 'pve9' failed" in text, failed.output[-2000:]
    assert vm_hosts(cluster_pve) == hosts
    assert iso_files(cluster_pve) == isos
    assert ws.state_list() == state
    # Back to the cluster's hosts: no resource changes (the failed apply recorded only
    # outputs, which tofu evaluates even when a resource fails); applying converges.
    ws.write(nodes, proxmox_nodes=HOSTS).synth()
    assert set(ws.plan(name="back.bin").actions()) == {"no-op"}
    assert "Resources: 0 added, 0 changed, 0 destroyed." in ws.apply().stdout
    assert ws.plan(name="settled.bin").exitcode == 0
