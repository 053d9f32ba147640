"""The preflight's and the ownership guard's rules, without a Proxmox: privileges on ACL
paths, which live VM is the stack's, the state as `tofu state pull` gives it, what a failed
tofu step was stopped by, and the rollout's resume file (tests/tasks/test_tasks_preflight.py
and test_tasks_faults.py run the same through `task` against fakepve)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import OWNER_TAG, ConfigPaths, load_config
from tests.support import EXAMPLES, ROOT
from workflow.errors import WorkflowError
from workflow.preflight.ownership import foreign_reason
from workflow.preflight.report import BLOCK, OK, WARN, Report
from workflow.preflight.state import parse_state
from workflow.proxmox import privileges
from workflow.proxmox.inventory import Guest, guest_macs, parse_tags
from workflow.rollout.faults import from_tofu
from workflow.rollout.health import Node
from workflow.rollout.resume import FILE, ResumeFile

FIXTURES = Path(__file__).parent / "fixtures"
VM = "proxmox_virtual_environment_vm"


# ------------------------------------------------------------------ privileges


@pytest.mark.parametrize(
    ("held", "path", "priv", "ok"),
    [
        ({"/": {"VM.Audit": 1}}, "/vms/100", "VM.Audit", True),  # propagated from /
        ({"/": {"VM.Audit": 0}}, "/vms/100", "VM.Audit", False),  # on / only
        ({"/": {"VM.Audit": 0}}, "/", "VM.Audit", True),
        ({"/vms": {"VM.Audit": 1}}, "/vms/100", "VM.Audit", True),
        ({"/vms/100": {"VM.Audit": 0}}, "/vms/100", "VM.Audit", True),
        ({"/vms/100": {"VM.Audit": 1}}, "/vms/101", "VM.Audit", False),
        ({"/vms/10": {"VM.Audit": 1}}, "/vms/100", "VM.Audit", False),  # a prefix is not a parent
        ({"/storage": {"Datastore.Audit": 1}}, "/vms", "Datastore.Audit", False),
        ({}, "/", "Sys.Audit", False),
    ],
)
def test_a_privilege_holds_where_given_or_propagated(held: dict, path: str, priv: str, ok: bool) -> None:
    assert privileges.holds(held, path, priv) is ok


def test_everything_a_config_needs_is_in_the_documented_role() -> None:
    config = load_config(ConfigPaths(EXAMPLES / "cluster.yaml", EXAMPLES / "nodes.yaml")).config
    multi = load_config(
        ConfigPaths(EXAMPLES / "multi-host" / "cluster.yaml", EXAMPLES / "multi-host" / "nodes.yaml")
    ).config
    for cfg in (config, multi):
        wanted = {p for need in privileges.needs(cfg, 9, [8010, None]) for p in need.privs}
        assert wanted <= set(privileges.DOCUMENTED_ROLE), wanted - set(privileges.DOCUMENTED_ROLE)
    # Proxmox VE 8 has no VM.GuestAgent.* yet: the agent is read with VM.Monitor.
    on8 = {p for need in privileges.needs(config, 8, [None]) for p in need.privs}
    assert "VM.Monitor" in on8 and "VM.GuestAgent.Audit" not in on8
    assert "VM.Migrate" in {p for n in privileges.needs(multi, 9, [None]) for p in n.privs}
    assert "VM.Migrate" not in {p for n in privileges.needs(config, 9, [None]) for p in n.privs}


def test_the_documented_role_is_the_one_the_guide_creates() -> None:
    text = (ROOT / "docs" / "getting-started.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("pveum role add TerraformProv"))
    privs = re.search(r'-privs "([^"]+)"', line)
    assert privs is not None and tuple(privs[1].split(",")) == privileges.DOCUMENTED_ROLE


def test_missing_privileges_are_grouped_by_where_to_grant_them() -> None:
    config = load_config(ConfigPaths(EXAMPLES / "cluster.yaml", EXAMPLES / "nodes.yaml")).config
    role = set(privileges.DOCUMENTED_ROLE) - {"Sys.Modify", "VM.PowerMgmt"}
    held = {"/": dict.fromkeys(role, 1)}
    lacking = privileges.missing(held, privileges.needs(config, 9, [8010, 8011, None]))
    assert [(m.grant_path, m.privs) for m in lacking] == [("/", ("Sys.Modify",)), ("/vms", ("VM.PowerMgmt",))]
    assert privileges.fix_command("u@pve!t", lacking[1]) == (
        "`pveum aclmod /vms -token 'u@pve!t' -role TerraformProv` (the role from the getting-started "
        "guide); if your role lacks them: `pveum role modify <role> -append 1 -privs 'VM.PowerMgmt'`"
    )
    # PVE 9: Sys.AccessNetwork on the downloading host stands in for Sys.Audit + Sys.Modify on /.
    held["/nodes/pve1"] = {"Sys.AccessNetwork": 0}
    lacking = privileges.missing(held, privileges.needs(config, 9, [None]))
    assert [m.grant_path for m in lacking] == ["/vms"]


# ------------------------------------------------------------------ ownership


def guest(
    name: str = "k8s-ctrl-0", kind: str = "qemu", tags: tuple[str, ...] = ("talos", OWNER_TAG)
) -> Guest:
    return Guest(8010, kind, name, "pve1", tags, "running", None, False)


def state_vm(tags: list[str] | None = None, mac: str = "BC:24:11:00:00:10", key: object = None) -> object:
    instance: dict = {
        "attributes": {
            "vm_id": 8010,
            "name": "k8s-ctrl-0",
            "node_name": "pve1",
            "tags": tags if tags is not None else ["talos", "controller", OWNER_TAG],
            "network_device": [{"mac_address": mac}],
            "disk": [{"interface": "scsi0", "size": 64}],
        }
    }
    name = "talos_node_k8s_ctrl_0"
    if key is not None:
        instance["index_key"] = key
        name = "talos_node"
    state = {
        "version": 4,
        "resources": [{"mode": "managed", "type": VM, "name": name, "instances": [instance]}],
    }
    return parse_state(json.dumps(state)).vms[0]


MAC = frozenset({"BC:24:11:00:00:10"})


@pytest.mark.parametrize(
    ("entry", "live", "macs", "why"),
    [
        (state_vm(), guest(), MAC, None),
        (state_vm(tags=["talos", "controller"]), guest(tags=("talos",)), MAC, None),  # template state
        (state_vm(key="k8s-ctrl-0", tags=["talos"]), guest(tags=("talos",)), MAC, None),  # its old address
        (
            state_vm(),
            guest(name="home-assistant", tags=()),
            frozenset(),
            "no talos-cdktf tag, and it is named 'home-assistant', not 'k8s-ctrl-0'",
        ),
        (state_vm(), guest(kind="lxc"), MAC, "it is a container"),
        (
            state_vm(),
            guest(tags=("talos",)),
            MAC,
            "its talos-cdktf tag is gone although the stack had set it",
        ),
        (
            state_vm(),
            guest(),
            frozenset({"BC:24:11:99:99:99"}),
            "its MAC addresses (BC:24:11:99:99:99) are not the BC:24:11:00:00:10",
        ),
        (state_vm(), guest(), None, None),  # its config could not be read: name and tag decide
    ],
)
def test_which_live_vm_is_the_stacks(
    entry: object, live: Guest, macs: frozenset[str] | None, why: str | None
) -> None:
    got = foreign_reason(entry, live, macs)  # type: ignore[arg-type]
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith(why), got


def test_the_state_as_tofu_state_pull_gives_it() -> None:
    entry = state_vm()
    assert (entry.address, entry.node, entry.vm_id, entry.host) == (
        f"{VM}.talos_node_k8s_ctrl_0",
        "k8s-ctrl-0",
        8010,
        "pve1",
    )
    assert entry.macs == MAC and entry.disk_sizes == {"scsi0": 64}
    old = state_vm(key="k8s-ctrl-0")
    assert (old.address, old.node) == (f'{VM}.talos_node["k8s-ctrl-0"]', "k8s-ctrl-0")
    assert parse_state("").vms == ()
    with pytest.raises(ValueError):
        parse_state('{"resources": 5}')


@pytest.mark.parametrize(
    ("value", "tags"),
    [("a;b;talos-cdktf", ("a", "b", "talos-cdktf")), ("a,b c", ("a", "b", "c")), (None, ()), ("", ())],
)
def test_proxmox_tag_lists(value: object, tags: tuple[str, ...]) -> None:
    assert parse_tags(value) == tags


def test_macs_of_vms_and_containers() -> None:
    config = {
        "net0": "virtio=bc:24:11:00:00:10,bridge=vmbr0,queues=4",
        "net1": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp",
        "net2": "e1000,bridge=vmbr0,macaddr=02:00:00:00:00:01",
        "scsi0": "local-lvm:vm-1-disk-0,size=8G",
    }
    assert guest_macs(config) == {"BC:24:11:00:00:10", "BC:24:11:AA:BB:CC", "02:00:00:00:00:01"}


# ------------------------------------------------------------------ report


def test_the_report_prints_problems_and_a_summary() -> None:
    report = Report(seconds=0.25)
    report.add("token", OK, "the token t authenticates")
    report.add("storages", WARN, "storage x is thin")
    assert report.lines(verbose=False) == [
        "preflight: warning: storage x is thin",
        "preflight: 2 checks passed in 0.2 s (token, storages)",
    ]
    report.add("vm-ids", BLOCK, "k8s-ctrl-0: vm_id 8010 is taken")
    assert report.lines(verbose=False)[-1] == (
        "preflight: 1 problem found; nothing was changed (fix them and run the task again)"
    )
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["checks"]["vm-ids"] == "block" and data["checks"]["cpus"] == "skipped"
    with pytest.raises(ValueError):
        report.add("nonsense", OK, "x")


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("output", "kind", "text"),
    [
        (
            "Error: All attempts fail:\n#1: received an HTTP 500 response - Reason: VM is locked (backup)\n",
            "locked",
            "Proxmox reports the VM locked (backup)",
        ),
        (
            "Error: error updating VM: received an HTTP 500 response - Reason: can't lock file "
            "'/var/lock/qemu-server/lock-8020.conf' - got timeout",
            "config-lock",
            "another Proxmox task held the VM's configuration lock too long",
        ),
        (
            "Error: received an HTTP 500 response - Reason: cluster not ready - no quorum?",
            "quorum",
            "the Proxmox cluster lost quorum",
        ),
        (
            "Error: error retrieving VM 8010: received an HTTP 595 response - Reason: No route to host",
            "offline",
            "Proxmox could not reach",
        ),
        (
            "Error: error shutting down VM: received an HTTP 500 response - Reason: boom",
            "api",
            "the Proxmox API answered HTTP 500 (boom)",
        ),
        (
            'Error: Get "https://pve:8006/api2/json/nodes": read tcp: connection reset by peer',
            "connection",
            "the connection to the Proxmox API dropped",
        ),
        (
            "\x1b[31m╷\n│ \x1b[0m\x1b[1mError: \x1b[0mSomething else\n",
            "tofu",
            "tofu reported: Something else",
        ),
    ],
)
def test_what_stopped_a_tofu_step(output: str, kind: str, text: str) -> None:
    fault = from_tofu(output)
    assert fault.kind == kind and fault.text.startswith(text), fault


# ------------------------------------------------------------------ the resume file


def test_a_resume_file_written_by_the_previous_release_is_read(tmp_path: Path) -> None:
    # Written by commit 35fba88's Rollout._write (format 1: `restarted_not_yet_healthy`).
    (tmp_path / FILE).write_text((FIXTURES / "rollout-state-v1.json").read_text())
    [pending] = ResumeFile(tmp_path).load()
    assert pending.node == Node(
        "k8s-work-0",
        "pve1",
        8020,
        True,
        "127.64.0.20",
        True,
        boot_id="boot-before",
        new_boot=True,
        uncordon=True,
    )
    assert pending.interrupted is False


def test_the_resume_file_round_trips_in_its_own_format(tmp_path: Path) -> None:
    resume = ResumeFile(tmp_path)
    a = Node("a", "pve1", 100, True, "10.0.0.1", True, boot_id="b1", controller=True)
    b = Node("b", "pve2", None, False, None, False, new_boot=False, replaced=True)
    resume.remember([a])
    resume.remember([b], interrupted=True)
    data = json.loads((tmp_path / FILE).read_text())
    assert (data["format"], data["version"]) == ("talos-cdktf rollout resume", 2)
    assert data["nodes"][1] == {
        "name": "b",
        "host": "pve2",
        "vm_id": None,
        "agent": False,
        "address": None,
        "talos": False,
        "boot_id": None,
        "expect_new_boot": False,
        "controller": False,
        "uncordon": False,
        "replaced": True,
        "apply_interrupted": True,
    }
    assert [(p.node, p.interrupted) for p in resume.load()] == [(a, False), (b, True)]
    resume.forget(["a", "b"])
    assert not (tmp_path / FILE).exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"format": "talos-cdktf rollout resume", "version": 3, "nodes": []}',
            "is a rollout resume file of version 3, and this version reads 1 and 2: finish the rollout "
            "with the version that wrote it, or delete the file to go on",
        ),
        (
            '{"format": "something else", "version": 2}',
            "is not a rollout resume file (format 'something else'",
        ),
        ("[1, 2]", "is not a rollout resume file (not a JSON object); delete it to go on"),
        ("{not json", "is not a rollout resume file (Expecting property name"),
        (
            '{"format": "talos-cdktf rollout resume", "version": 2, "nodes": [{"name": 1, "host": "x"}]}',
            "is not a rollout resume file (name and host must be text)",
        ),
        ('{"restarted_not_yet_healthy": [{"host": "x"}]}', "is not a rollout resume file ('name')"),
    ],
)
def test_a_resume_file_of_another_form_is_refused_in_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / FILE).write_text(text)
    with pytest.raises(WorkflowError) as info:
        ResumeFile(tmp_path).load()
    assert str(info.value).startswith(f"{tmp_path / FILE} {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("arg", ["--verbose", "${var.x}", "--json=yes"])
def test_the_preflight_command_refuses_an_unknown_argument_in_one_line(arg: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "workflow", "preflight", "--json", arg],
        cwd=ROOT,
        env={**os.environ, "CLUSTER_CONFIG": str(tmp_path / "none.yaml")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: preflight: unknown argument {arg!r} (expected --json)"]
    assert proc.stdout == ""
