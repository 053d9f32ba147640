"""The preflight and the ownership guard through the real `task`, against a fakepve with
other guests on it, a token of limited privileges, storages of several kinds and hosts
that are offline or small. Every refusal is checked to change nothing in the fake: its
guests and storages are the same afterwards, and no request that writes reached it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import HttpState
from tests.tasks.preflight_support import fake_state, line_of, problems, request_count, writes_since
from tests.tasks.taskrun import TaskWorkspace
from workflow.proxmox.privileges import DOCUMENTED_ROLE
from workflow.setup_tools import ensure_tools

pytestmark = pytest.mark.e2e

TOKEN = "terraform@pve!e2e"
GIB = 1024**3


@pytest.fixture
def pve() -> Iterator[FakePveServer]:
    with FakePveServer() as server:  # time scale 0: every task finishes at once
        server.wait_ready()
        yield server


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def refused(ws: TaskWorkspace, pve: FakePveServer, *task: str) -> list[str]:
    """Run the task; it must exit 2 with preflight problems, and the fake must be as it was."""
    before, start = fake_state(pve), request_count(pve)
    proc = ws.task(*task)
    assert proc.returncode == 201 and "exit status 2" in proc.stderr, (
        proc.stdout[-3000:] + proc.stderr[-3000:]
    )
    assert "Traceback" not in proc.stderr
    assert writes_since(pve, start) == []
    assert fake_state(pve) == before
    found = problems(proc)
    assert found, proc.stderr
    summary = [ln for ln in proc.stderr.splitlines() if ln.startswith("preflight: ")][-1]
    assert summary == (
        f"preflight: {len(found)} problem{'s' * (len(found) != 1)} found; nothing was changed "
        "(fix them and run the task again)"
    ), proc.stderr
    for secret in ws.secrets:  # type: ignore[attr-defined]
        assert secret not in proc.stdout + proc.stderr
    return found


def set_up(live: TaskWorkspace, change: Callable[[dict[str, Any]], None] | None = None) -> TaskWorkspace:
    if change is not None:
        import yaml

        cluster = yaml.safe_load(live.cluster.read_text())
        change(cluster)
        live.cluster.write_text(yaml.safe_dump(cluster, sort_keys=False))
    ok(live.task("configure"))
    return live


# ------------------------------------------------------------------ passing


def test_preflight_lists_every_check_and_passes(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live)
    start = request_count(pve)
    proc = ok(live.task("infra:preflight"))
    assert writes_since(pve, start) == []
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("preflight: ")]
    assert lines[0] == f"preflight: ok: the token {TOKEN} authenticates at {pve.url}"
    assert "preflight: ok: Proxmox VE 9.0.10" in lines
    assert f"preflight: ok: the token {TOKEN} holds every privilege this config needs" in lines
    assert "preflight: ok: 6 fixed vm_ids to create, all free" in lines
    assert lines[-1].startswith("preflight: 12 checks passed in ")
    data = json.loads(ok(live.task("infra:preflight", "--", "--json")).stdout)
    assert data["ok"] is True and set(data["checks"].values()) == {"ok"}
    # the plan runs it first, in short
    plan = ok(live.task("infra:plan"))
    assert [ln for ln in plan.stderr.splitlines() if ln.startswith("preflight:")] == [
        next(ln for ln in plan.stderr.splitlines() if ln.startswith("preflight: 12 checks passed in "))
    ]


# ------------------------------------------------------------------ ownership


def add_stranger(
    pve: FakePveServer, vmid: int, name: str, mac: str = "BC:24:11:FF:00:01", kind: str = "qemu"
) -> None:
    def add(p: Any) -> None:
        if kind == "qemu":
            p.add_vm(
                vmid,
                name,
                node="pve1",
                status="running",
                config={"net0": f"virtio={mac},bridge=vmbr0", "tags": "home"},
            )
        else:
            p.add_ct(
                vmid,
                name,
                node="pve1",
                status="running",
                config={"net0": f"name=eth0,bridge=vmbr0,hwaddr={mac}"},
            )

    pve.call(add)


@pytest.mark.parametrize(
    ("kind", "label"),
    [("qemu", "VM 8010 'home-assistant' on pve1"), ("lxc", "container 8010 'home-assistant' on pve1")],
)
def test_a_taken_vm_id_is_refused_naming_its_holder_and_a_free_id(
    live: TaskWorkspace, pve: FakePveServer, kind: str, label: str
) -> None:
    set_up(live)
    add_stranger(pve, 8010, "home-assistant", kind=kind)
    line = line_of(live.nodes, "vm_id: 8010")
    for task in (("infra:plan",), ("infra:apply-auto", "--", "--yes")):
        assert refused(live, pve, *task) == [
            f"preflight: PROBLEM: k8s-ctrl-0 ({live.nodes} line {line} (nodes[0].vm_id)): vm_id 8010 is "
            f"taken on the Proxmox cluster by {label} (VMs and containers share ids); nothing was changed; "
            "set vm_id to a free id such as 8013, or remove it and Proxmox picks one"
        ]


def test_what_the_provider_adopts_the_stack_refuses_to_touch_and_lets_go_of(
    live: TaskWorkspace, pve: FakePveServer, state: HttpState
) -> None:
    set_up(live)
    add_stranger(pve, 8010, "home-assistant")
    stranger = pve.call(lambda p: dict(p.vm(8010).config))
    # The hazard, shown with tofu alone: bpg counts Proxmox's "already exists" as its own
    # create, and the state then describes the stranger.
    env = ensure_tools().environ(
        {
            **live.env(),
            "TF_HTTP_USERNAME": state.username,
            "TF_HTTP_PASSWORD": state.password,
            "PROXMOX_VE_API_TOKEN": pve.api_token,
        }
    )
    ok(live.task("synth"))
    adopted = subprocess.run(
        ["tofu", f"-chdir={live.stack_dir}", "apply", "-auto-approve", "-input=false", "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert adopted.returncode == 0, adopted.stderr
    assert (
        "talos_node_k8s_ctrl_0: Creation complete after" in adopted.stdout and "[id=8010]" in adopted.stdout
    )
    assert pve.call(lambda p: p.vm(8010).name) == "home-assistant"

    address = "proxmox_virtual_environment_vm.talos_node_k8s_ctrl_0"
    want = (
        f"preflight: PROBLEM: {address} in the state is VM 8010 'home-assistant' on pve1, which this stack "
        "did not make (no talos-cdktf tag, and it is named 'home-assistant', not 'k8s-ctrl-0'); nothing was "
        "changed, and no task will change or delete it; if it is not yours, let go of it with "
        f"`task infra:state-rm -- {address}` (Proxmox keeps the VM)"
    )
    for task in (("infra:plan",), ("infra:apply-auto", "--", "--yes"), ("infra:destroy", "--", "--yes")):
        assert want in refused(live, pve, *task)
    assert pve.call(lambda p: dict(p.vm(8010).config)) == stranger

    ok(live.task("infra:state-rm", "--", "--yes", address))
    assert pve.call(lambda p: dict(p.vm(8010).config)) == stranger
    [taken] = refused(live, pve, "infra:plan")
    assert "vm_id 8010 is taken on the Proxmox cluster by VM 8010 'home-assistant' on pve1" in taken
    live.nodes.write_text(live.nodes.read_text().replace("vm_id: 8010", "vm_id: 8013"))
    ok(live.task("infra:apply-auto", "--", "--yes"))
    assert pve.call(lambda p: dict(p.vm(8010).config)) == stranger
    assert pve.call(lambda p: p.vm(8013).name) == "k8s-ctrl-0"
    ok(live.task("infra:destroy", "--", "--yes"))
    assert pve.call(lambda p: sorted(vm.vmid for vm in p.vms)) == [8010]  # only the stranger is left


@pytest.mark.parametrize(
    ("replace", "why"),
    [
        ("other", "no talos-cdktf tag, and it is named 'scratch', not 'k8s-work-0'"),
        (
            "untagged",
            "its talos-cdktf tag is gone although the stack had set it (replaced outside the stack? if it "
            "is the same VM, add the tag talos-cdktf back in Proxmox)",
        ),
        ("mac", "its MAC addresses (BC:24:11:EE:EE:EE) are not the BC:24:11:00:00:20 the stack gave it"),
    ],
)
def test_a_vm_replaced_behind_the_stacks_back_is_not_touched(
    live: TaskWorkspace, pve: FakePveServer, replace: str, why: str
) -> None:
    set_up(live)
    ok(live.task("infra:apply-auto", "--", "--yes"))

    def swap(p: Any) -> None:
        old = p.vm(8020)
        p.vms.remove(old)
        name = "scratch" if replace == "other" else "k8s-work-0"
        tags = "kubernetes;linux;talos;worker" + (";talos-cdktf" if replace == "mac" else "")
        mac = "BC:24:11:EE:EE:EE" if replace == "mac" else "BC:24:11:00:00:20"
        p.add_vm(
            8020,
            name,
            node="pve1",
            status="running",
            config={"tags": tags, "net0": f"virtio={mac},bridge=vmbr0"},
        )

    pve.call(swap)
    address = "proxmox_virtual_environment_vm.talos_node_k8s_work_0"
    name = "scratch" if replace == "other" else "k8s-work-0"
    for task in (("infra:plan",), ("infra:destroy", "--", "--yes")):
        found = refused(live, pve, *task)
        assert found[0] == (
            f"preflight: PROBLEM: {address} in the state is VM 8020 '{name}' on pve1, which this stack did not "
            f"make ({why}); nothing was changed, and no task will change or delete it; if it is not yours, "
            f"let go of it with `task infra:state-rm -- {address}` (Proxmox keeps the VM)"
        ), found
        # A stranger with the node's MAC is one more problem: two machines, one MAC.
        assert len(found) == (1 if replace == "mac" else 2), found


def test_a_mac_another_guest_has_is_refused(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live)
    add_stranger(pve, 9000, "laptop-vm", mac="BC:24:11:00:00:20")
    line = line_of(live.nodes, "bc:24:11:00:00:20")
    assert refused(live, pve, "infra:plan") == [
        f"preflight: PROBLEM: k8s-work-0 ({live.nodes} line {line} (nodes[3].mac_addr)): MAC BC:24:11:00:00:20 "
        "is already the MAC of VM 9000 'laptop-vm' on pve1; two machines with one MAC on a LAN break each "
        "other's network; nothing was changed; give the node another mac_addr"
    ]


def test_the_ownership_checks_run_even_with_skip_preflight(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live)
    pve.call(lambda p: p.storages["local"].update(content="vztmpl,backup"))  # would block
    add_stranger(pve, 8011, "other")
    found = refused(live, pve, "infra:plan", "--", "--skip-preflight")
    assert len(found) == 1 and "vm_id 8011 is taken" in found[0]
    pve.call(lambda p: p.vms.remove(p.vm(8011)))
    proc = ok(live.task("infra:plan", "--", "--skip-preflight"))
    assert (
        "preflight: skipped (--skip-preflight): version, hosts, quorum, privileges, storages, bridges, cpus, images"
        in proc.stderr
    )


# ------------------------------------------------------------------ the token


def grant_only(pve: FakePveServer, grants: dict[str, set[str]]) -> None:
    def apply(p: Any) -> None:
        p.acl = {}
        for path, privs in grants.items():
            p.grant("terraform@pve", path, *privs)

    pve.call(apply)


ROLE = set(DOCUMENTED_ROLE)
FIX = "`pveum aclmod {path} -token 'terraform@pve!e2e' -role TerraformProv` (the role from the getting-started guide); if your role lacks them: `pveum role modify <role> -append 1 -privs '{privs}'`"


@pytest.mark.parametrize(
    ("grants", "lines"),
    [
        (
            {"/": ROLE - {"Sys.Modify"}},
            [
                "the token terraform@pve!e2e lacks Sys.Modify on / (for ISO downloads (query-url-metadata, "
                "download-url)); nothing was changed; grant them: " + FIX.format(path="/", privs="Sys.Modify")
            ],
        ),
        (
            {"/": ROLE - {"Datastore.AllocateSpace"}},
            [
                "the token terraform@pve!e2e lacks Datastore.AllocateSpace on /storage/local-lvm (for VM disks "
                "and EFI disks); nothing was changed; grant them: "
                + FIX.format(path="/storage/local-lvm", privs="Datastore.AllocateSpace")
            ],
        ),
        (
            {"/": ROLE - {"VM.PowerMgmt", "VM.GuestAgent.Audit"}},
            [
                "the token terraform@pve!e2e lacks VM.PowerMgmt, VM.GuestAgent.Audit on /vms (for creating, "
                "changing, restarting and deleting the VMs, reading the guest agent's network interfaces); "
                "nothing was changed; grant them: "
                + FIX.format(path="/vms", privs="VM.PowerMgmt,VM.GuestAgent.Audit")
            ],
        ),
    ],
)
def test_a_token_without_a_privilege_is_refused_with_the_pveum_fix(
    live: TaskWorkspace, pve: FakePveServer, grants: dict[str, set[str]], lines: list[str]
) -> None:
    set_up(live)
    grant_only(pve, grants)
    assert refused(live, pve, "infra:plan") == [f"preflight: PROBLEM: {line}" for line in lines]


def test_a_wrong_token_is_one_line(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live, lambda c: c.update(proxmox_api_token_secret="not-the-secret-8d1f"))
    assert refused(live, pve, "infra:plan") == [
        f"preflight: PROBLEM: the Proxmox API at {pve.url} does not accept the token {TOKEN} (HTTP 401 "
        "authentication failure); nothing was changed; check proxmox_api_token_id and "
        "proxmox_api_token_secret in cluster.yaml and run `task configure` (or create the token: "
        "`pveum user token add`)"
    ]


# ------------------------------------------------------------------ hosts, quorum, storages


def test_a_mistyped_host_is_refused(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live, lambda c: c.update(proxmox_node="pve9"))
    line = line_of(live.cluster, "proxmox_node:")
    assert refused(live, pve, "infra:plan") == [
        f"preflight: PROBLEM: host pve9 ({live.cluster} line {line} (proxmox_node)) is not a host of this "
        "Proxmox cluster (its hosts: pve1); nothing was changed; correct the host's name"
    ]


def test_an_offline_host_and_a_lost_quorum_are_refused(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live)
    ok(live.task("infra:apply-auto", "--", "--yes"))
    pve.call(lambda p: p.lose_quorum())
    assert refused(live, pve, "infra:plan") == [
        "preflight: PROBLEM: the Proxmox cluster fakecluster has no quorum: its configuration is read-only, "
        "so every VM change would fail; nothing was changed; run the task again once `pvecm status` shows "
        "it quorate"
    ]
    pve.call(lambda p: (p.regain_quorum(), p.set_node_offline("pve1")))
    assert refused(live, pve, "infra:destroy", "--", "--yes") == [
        "preflight: PROBLEM: host pve1 is offline: its VMs cannot be read or changed; nothing was changed; "
        "run the task again once it is back online"
    ]


def add_storage(name: str, **options: Any) -> Callable[[Any], None]:
    def add(p: Any) -> None:
        p.storages[name] = {"type": "dir", "active": 1, "files": set(), "volumes": {}, **options}

    return add


@pytest.mark.parametrize(
    ("fake", "cluster", "line"),
    [
        (
            lambda p: p.storages["local"].update(content="vztmpl,backup"),
            {},
            "storage local on pve1 ({cluster} line {iso} (proxmox_iso_storage)) does not hold ISO images "
            "(content: backup,vztmpl); nothing was changed; add the content type 'iso' to it (Datacenter > "
            "Storage > Edit: Content), or name another storage",
        ),
        (
            None,
            {"proxmox_disk_storage": "fast-zfs"},
            "storage fast-zfs ({cluster} line {disk} (proxmox_disk_storage)) does not exist on "
            "pve1, or the token cannot see it (its storages: local, local-lvm); nothing was changed; name a "
            "storage pve1 has, or add fast-zfs to pve1 (Datacenter > Storage > Nodes)",
        ),
        (
            lambda p: p.storages["local-lvm"].update(disable=1),
            {},
            "storage local-lvm on pve1 ({cluster} line {disk} (proxmox_disk_storage)) is "
            "disabled on this host (disabled, or not enabled for pve1 in Datacenter > Storage > Nodes); "
            "nothing was changed; enable it",
        ),
        (
            lambda p: p.storages["local-lvm"].update(active=0),
            {},
            "storage local-lvm on pve1 ({cluster} line {disk} (proxmox_disk_storage)) is not "
            "active (unreachable or not mounted); nothing was changed; run the task again once `pvesm "
            "status` shows it active",
        ),
        (
            add_storage("thick", type="lvm", vgname="vg0", content="images,rootdir", avail=100 * GIB),
            {"proxmox_disk_storage": "thick"},
            "storage thick on pve1 has 100.0 GiB free, and this apply adds 1216.0 GiB; nothing was changed; "
            "free space or use another storage",
        ),
        (
            lambda p: p.storages["local"].update(avail=1024),
            {},
            "storage local on pve1 has 0.0 GiB free, and this apply adds 0.0 GiB; nothing was changed; free "
            "space or use another storage",
        ),
    ],
    ids=["no-iso-content", "missing", "disabled", "inactive", "thick-full", "iso-full"],
)
def test_storage_problems_are_refused(
    live: TaskWorkspace, pve: FakePveServer, fake: Any, cluster: dict[str, Any], line: str
) -> None:
    set_up(live, lambda c: c.update(cluster))
    if fake is not None:
        pve.call(fake)
    where = {
        "cluster": live.cluster,
        "nodes": live.nodes,
        "iso": line_of(live.cluster, "proxmox_iso_storage:"),
        "disk": line_of(live.cluster, "proxmox_disk_storage:"),
    }
    found = refused(live, pve, "infra:plan")
    assert found[0] == "preflight: PROBLEM: " + line.format(**where), found


def test_a_thin_pool_too_small_is_a_warning(live: TaskWorkspace, pve: FakePveServer) -> None:
    set_up(live)
    pve.call(lambda p: p.storages["local-lvm"].update(total=200 * GIB))
    proc = ok(live.task("infra:plan"))
    assert (
        "preflight: warning: storage local-lvm on pve1 has 200.0 GiB free, and this apply adds 1216.0 GiB "
        "(lvmthin is thin-provisioned: fine until the disks fill up)"
    ) in proc.stderr


# ------------------------------------------------------------------ bridge, CPUs, images


def test_a_missing_bridge_too_few_cpus_and_an_unreachable_image(
    live: TaskWorkspace, pve: FakePveServer
) -> None:
    set_up(live)

    def small(p: Any) -> None:
        p.host_bridges["pve1"] = ["vmbr1"]
        p.host_cpus["pve1"] = 8
        p.fail("GET", "/nodes/pve1/query-url-metadata", 500, "can't resolve 'factory.talos.dev'")

    pve.call(small)
    found = refused(live, pve, "infra:plan")
    advanced = line_of(live.cluster, "proxmox_vm_advanced:")
    work1 = line_of(live.nodes, "vm_cores: 16")
    url = "https://factory.talos.dev/image/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515/v1.12.0/nocloud-amd64.iso"
    assert found[0] == (
        f"preflight: PROBLEM: bridge vmbr0 ({live.cluster} line {advanced} (proxmox_vm_advanced)) does not "
        "exist on pve1 (its bridges: vmbr1); nothing was changed; create it on pve1, or set "
        "proxmox_vm_advanced.network_bridge to one it has"
    )
    assert found[1] == (
        f"preflight: PROBLEM: k8s-work-1 ({live.nodes} line {work1} (nodes[4].vm_cores)): 16 cores x 1 socket "
        "= 16 vCPUs, more than the 8 CPUs of its host pve1: Proxmox would refuse to start it; nothing was "
        "changed; give it fewer cores or sockets, or a larger host"
    )
    assert (
        f"preflight: PROBLEM: host pve1 cannot fetch {url} (HTTP 500 can't resolve 'factory.talos.dev'); "
        "nothing was changed; check the host's DNS, proxy and firewall, and the node's schematic_id and "
        "talos_version"
    ) in found[2:]
    assert len(found) == 4  # the second image too
