"""The rolling apply's decisions without tofu: which changes restart a VM, the order, the
check against the reviewed plan, its arguments and when the Talos port is probed."""

from __future__ import annotations

import copy
import http.server
import re
import threading
from typing import Any

import pytest

from config import ConfigPaths, load_config
from tests.support import BASE_CLUSTER, ConfigDir, node
from workflow.errors import WorkflowError
from workflow.proxmox.api import ProxmoxApi
from workflow.rollout.classify import VmChange, classify, restart_reasons
from workflow.rollout.health import Node, check, talos_reachable
from workflow.rollout.intent import changes, differences
from workflow.rollout.options import DEFAULT_NODE_TIMEOUT, RolloutOptions, split_rollout_args
from workflow.rollout.order import steps

VM = "proxmox_virtual_environment_vm"

BASE: dict[str, Any] = {
    "name": "k8s-ctrl-0",
    "node_name": "pve1",
    "vm_id": 8010,
    "bios": "ovmf",
    "machine": "q35",
    "hotplug": None,
    "tags": ["kubernetes", "controller"],
    "description": "Talos Linux control plane node",
    "on_boot": True,
    "startup": [{"order": 4, "up_delay": 15, "down_delay": 60}],
    "agent": [{"enabled": True, "timeout": "15m"}],
    "cpu": [{"cores": 4, "sockets": 1, "hotplugged": 0, "type": "host", "numa": True}],
    "memory": [{"dedicated": 8192, "floating": 0, "shared": 0, "hugepages": "", "keep_hugepages": False}],
    "disk": [{"interface": "scsi0", "size": 64, "datastore_id": "local-lvm", "aio": "io_uring", "ssd": True}],
    "efi_disk": [{"datastore_id": "local-lvm", "type": "4m", "pre_enrolled_keys": False}],
    "network_device": [{"bridge": "vmbr0", "mac_address": "BC:24:11:00:00:10", "mtu": 1500}],
    "operating_system": [{"type": "l26"}],
    "timeout_reboot": 1800,
    "ipv4_addresses": [["127.0.0.1"], ["10.10.0.10"]],
}


def changed(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE with one value replaced; path like `memory.dedicated` or `tags`."""
    after = copy.deepcopy(base or BASE)
    key, _, sub = path.partition(".")
    if sub:
        after[key][0][sub] = value
    else:
        after[key] = value
    return after


@pytest.mark.parametrize(
    ("path", "value", "reasons"),
    [
        # restarting (the provider's rebootRequired)
        ("memory.dedicated", 10240, ("memory",)),
        ("memory.dedicated", 4096, ("memory",)),
        ("memory.hugepages", "2", ("memory",)),
        ("cpu.cores", 8, ("cpu",)),
        ("cpu.sockets", 2, ("cpu",)),
        ("cpu.type", "x86-64-v3", ("cpu",)),
        ("cpu.hotplugged", 2, ("cpu",)),  # only live with `cpu` in hotplug
        ("bios", "seabios", ("bios",)),
        ("machine", "pc", ("machine",)),
        ("efi_disk.type", "2m", ("efi_disk",)),
        ("operating_system.type", "win11", ("operating_system",)),
        ("agent.enabled", False, ("agent",)),
        ("disk.aio", "native", ("disk",)),
        ("disk.size", 32, ("disk",)),  # a shrink is no resize
        ("node_name", "pve2", ("node_name",)),  # a migration
        ("kvm_arguments", "-cpu host", ("kvm_arguments",)),
        ("some_future_attribute", "x", ("some_future_attribute",)),  # unknown: cautious
        # live
        ("tags", ["kubernetes", "controller", "extra"], ()),
        ("description", "new", ()),
        ("on_boot", False, ()),
        ("startup.order", 9, ()),
        ("startup.up_delay", 30, ()),
        ("disk.size", 128, ()),  # grows: `disk` is in PVE's default hotplug
        ("disk.ssd", False, ()),
        ("network_device.mtu", 9000, ()),
        ("timeout_reboot", 60, ()),
        ("ipv4_addresses", [["10.10.0.99"]], ()),
    ],
)
def test_restart_reasons(path: str, value: Any, reasons: tuple[str, ...]) -> None:
    assert restart_reasons(BASE, changed(path, value)) == reasons


@pytest.mark.parametrize(
    ("hotplug", "path", "value", "restarts"),
    [
        ("network,disk,usb,memory,cpu", "memory.dedicated", 10240, False),
        ("network,disk,usb,memory,cpu", "memory.dedicated", 4096, True),  # shrinking never live
        ("network,disk,usb,cpu", "memory.dedicated", 10240, True),
        ("network,disk,usb,cpu", "cpu.hotplugged", 2, False),
        ("network,disk,usb,cpu", "cpu.cores", 8, True),
        ("network,usb", "disk.size", 128, True),  # no disk hotplug: a resize needs a restart
    ],
)
def test_hotplug_decides_memory_cpu_and_disk(hotplug: str, path: str, value: Any, restarts: bool) -> None:
    before = changed("hotplug", hotplug)
    assert bool(restart_reasons(before, changed(path, value, before))) is restarts


def resource(address: str, actions: list[str], before: Any, after: Any, **extra: Any) -> dict[str, Any]:
    type_ = address.split(".")[0]
    return {
        "address": address,
        "mode": "managed",
        "type": type_,
        "change": {"actions": actions, "before": before, "after": after, "after_unknown": {}},
        **extra,
    }


def vm_after(name: str, **values: Any) -> dict[str, Any]:
    after = copy.deepcopy(BASE)
    after.update(name=name, **values)
    return after


def test_classify_a_plan() -> None:
    ctrl0 = f"{VM}.talos_node_k8s_ctrl_0"
    plan = {
        "resource_changes": [
            resource(ctrl0, ["update"], BASE, changed("memory.dedicated", 10240)),
            resource(f"{VM}.talos_node_k8s_ctrl_1", ["update"], BASE, changed("tags", ["x"])),
            resource(f"{VM}.talos_node_k8s_work_0", ["create"], None, vm_after("k8s-work-0")),
            resource(f"{VM}.talos_node_k8s_work_1", ["delete"], BASE, None),
            resource(
                f"{VM}.talos_node_k8s_work_2", ["delete", "create"], BASE, vm_after("k8s-work-2", vm_id=None)
            ),
            resource(f"{VM}.talos_node_k8s_work_3", ["no-op"], BASE, BASE),
            resource(f"{VM}.talos_node_k8s_work_4", ["no-op"], BASE, BASE, previous_address=f"{VM}.old"),
            resource("proxmox_download_file.talos_iso_x", ["create"], None, {"url": "u"}),
            {**resource("data.x.y", ["read"], None, {}), "mode": "data"},
        ]
    }
    found = classify(plan)
    assert found.restarting == (
        VmChange(ctrl0, "k8s-ctrl-0", "update", ("memory",), "pve1", 8010, True, "pve1"),
        VmChange(
            f"{VM}.talos_node_k8s_work_2", "k8s-work-2", "replace", ("replaced",), "pve1", None, True, "pve1"
        ),
    )
    assert found.other == (
        f"{VM}.talos_node_k8s_ctrl_1",
        f"{VM}.talos_node_k8s_work_0",
        f"{VM}.talos_node_k8s_work_1",
        f"{VM}.talos_node_k8s_work_4",
        "proxmox_download_file.talos_iso_x",
    )
    assert classify({"resource_changes": []}).restarting == ()
    assert classify({}).restarting == ()


def restart(name: str) -> VmChange:
    return VmChange(f"{VM}.talos_node_{name.replace('-', '_')}", name, "update", ("memory",), "pve1", 1, True)


@pytest.fixture
def config(tmp_path: Any) -> Any:
    cfg = ConfigDir(tmp_path)
    nodes = [
        node("ctrl-b", 1),
        node("work-b", 2, controller=False),
        node("ctrl-a", 3),
        node("work-a", 4, controller=False),
        node("work-c", 5, controller=False),
    ]
    cfg.write(BASE_CLUSTER, nodes)
    return load_config(ConfigPaths(cfg.cluster, cfg.nodes)).config


@pytest.mark.parametrize(
    ("parallel", "expected"),
    [
        (1, [["work-b"], ["work-a"], ["work-c"], ["ctrl-b"], ["ctrl-a"]]),
        (2, [["work-b", "work-a"], ["work-c"], ["ctrl-b"], ["ctrl-a"]]),
        (5, [["work-b", "work-a", "work-c"], ["ctrl-b"], ["ctrl-a"]]),
    ],
)
def test_order_workers_first_in_groups_then_each_controller_alone(
    config: Any, parallel: int, expected: list[list[str]]
) -> None:
    changes = [restart(n) for n in ("ctrl-a", "work-c", "ctrl-b", "work-a", "work-b")]
    got = [[c.name for c in s.changes] for s in steps(changes, config, parallel)]
    assert got == expected


def test_a_vm_the_config_does_not_know_is_treated_as_a_controller(config: Any) -> None:
    got = steps([restart("stray"), restart("work-a")], config, parallel=3)
    assert [(s.role, [c.name for c in s.changes]) for s in got] == [
        ("worker", ["work-a"]),
        ("controller", ["stray"]),
    ]


def plan_of(*changes: dict[str, Any]) -> dict[str, Any]:
    return {"resource_changes": list(changes)}


CTRL0 = f"{VM}.talos_node_k8s_ctrl_0"
REVIEWED = plan_of(resource(CTRL0, ["update"], BASE, changed("memory.dedicated", 10240)))


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        (REVIEWED, None),
        (plan_of(resource(CTRL0, ["no-op"], BASE, BASE)), None),  # applied by an earlier run
        (
            plan_of(resource(CTRL0, ["update"], BASE, changed("memory.dedicated", 12288))),
            "memory[0].dedicated",
        ),
        (plan_of(resource(CTRL0, ["delete", "create"], BASE, BASE)), "reviewed update, now delete+create"),
        (
            plan_of(
                resource(CTRL0, ["update"], BASE, changed("memory.dedicated", 10240)),
                resource(f"{VM}.talos_node_k8s_ctrl_1", ["update"], BASE, changed("tags", [])),
            ),
            "talos_node_k8s_ctrl_1: not changed in the reviewed plan",
        ),
        (
            plan_of(
                resource(CTRL0, ["update"], changed("bios", "seabios"), changed("memory.dedicated", 10240))
            ),
            "bios",  # drift: now it would also change the bios
        ),
    ],
)
def test_a_step_must_do_what_the_reviewed_plan_said(step: dict[str, Any], problem: str | None) -> None:
    found = differences(REVIEWED, step)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0], found


def test_a_step_planned_as_no_op_changes_nothing() -> None:
    # The runner's test for a step an earlier, interrupted run already applied.
    assert list(changes(REVIEWED)) == [CTRL0]
    assert changes(plan_of(resource(CTRL0, ["no-op"], BASE, BASE))) == {}


@pytest.mark.parametrize(
    ("args", "options", "rest"),
    [
        ([], RolloutOptions(), []),
        (["--parallel", "3", "-lock-timeout=5s"], RolloutOptions(parallel=3), ["-lock-timeout=5s"]),
        (["--parallel=2", "--node-timeout=90"], RolloutOptions(parallel=2, node_timeout=90.0), []),
        (["--talos-check", "off", "-no-color"], RolloutOptions(talos_check="off"), ["-no-color"]),
        (["--node-timeout", "1.5"], RolloutOptions(node_timeout=1.5), []),
    ],
)
def test_rollout_arguments(args: list[str], options: RolloutOptions, rest: list[str]) -> None:
    assert split_rollout_args(args) == (options, rest)
    assert RolloutOptions().node_timeout == DEFAULT_NODE_TIMEOUT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--parallel", "0"], "--parallel: '0' is not a whole number of workers >= 1"),
        (["--parallel", "two"], "--parallel: 'two' is not a whole number"),
        (["--parallel=-1"], "--parallel: '-1' is not"),
        (["--node-timeout", "0"], "--node-timeout: '0' is not a number of seconds > 0"),
        (["--node-timeout", "nan"], "--node-timeout: 'nan' is not"),
        (["--node-timeout", "inf"], "--node-timeout: 'inf' is not"),
        (["--node-timeout"], "--node-timeout needs a value"),
        (["--lock-timeout", "-5"], "--lock-timeout: '-5' is not a number of seconds > 0"),
        (["--lock-timeout", "${var.t}"], "--lock-timeout: '${var.t}' is not a number of seconds > 0"),
        (["--lock-timeout=1e999"], "--lock-timeout: '1e999' is not"),
        (["--lock-timeout"], "--lock-timeout needs a value"),
        (["--talos-check", "maybe"], "--talos-check: 'maybe' is not one of auto, on, off"),
    ],
)
def test_bad_rollout_arguments(args: list[str], message: str) -> None:
    with pytest.raises(WorkflowError, match="^" + re.escape(message)):
        split_rollout_args(args)


def no_route(_address: str) -> str | None:
    return None


@pytest.mark.parametrize(
    ("address", "cidr", "mode", "source", "probe"),
    [
        ("127.77.0.10", None, "auto", no_route, True),  # loopback: always here
        ("10.10.0.10", "10.10.0.0/24", "auto", lambda _a: "10.10.0.5", True),  # on the nodes' network
        ("10.10.0.10", "10.10.0.0/24", "auto", lambda _a: "192.168.1.20", False),  # via a gateway
        ("10.10.0.10", "10.10.0.0/24", "auto", no_route, False),
        ("10.10.0.10", None, "auto", lambda _a: "10.10.0.5", False),  # no node_cidr: cannot tell
        ("10.10.0.10", None, "on", no_route, True),
        ("127.77.0.10", None, "off", no_route, False),
    ],
)
def test_when_the_talos_port_is_probed(
    address: str, cidr: str | None, mode: str, source: Any, probe: bool
) -> None:
    assert talos_reachable(address, cidr, mode, source=source) is probe


@pytest.mark.parametrize("secret", ["s3cret\n", "s3\r\ncret", "s3cret\x00", "s3cret\x7f"])
def test_a_token_no_header_can_carry_is_not_echoed(secret: str) -> None:
    # Nothing listens on the discard port: the request must fail before it is sent.
    api = ProxmoxApi("http://127.0.0.1:9", f"root@pam!t={secret}", insecure=False)
    why = check(api, Node("n1", "pve", 100, agent=False, address=None, talos=False))
    assert why is not None and "s3" not in why and "control character" in why


@pytest.mark.parametrize("secret", ["s3cret", "s3 cr\tet", "s3cr\u00e9t", "s3cret\u2603"])
def test_the_token_is_sent_as_utf8(secret: str) -> None:
    seen: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", "").encode("latin-1"))
            body = b'{"data": {"status": "running"}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            api = ProxmoxApi(f"http://127.0.0.1:{server.server_port}", f"root@pam!t={secret}", insecure=False)
            assert check(api, Node("n1", "pve", 100, agent=False, address=None, talos=False)) is None
        finally:
            server.shutdown()
            thread.join(timeout=10)
    assert seen == [f"PVEAPIToken=root@pam!t={secret}".encode()]


@pytest.mark.parametrize(
    ("args", "options", "rest"),
    [
        (["--allow-replace", "-no-color"], RolloutOptions(allow_replace=True), ["-no-color"]),
        (["--kubeconfig", "k.yaml"], RolloutOptions(kubeconfig="k.yaml"), []),
        (["--kubeconfig=/x/kube config"], RolloutOptions(kubeconfig="/x/kube config"), []),
        (["--cluster-check", "off"], RolloutOptions(cluster_check="off"), []),
        (
            ["--cluster-check=on", "--drain-timeout", "30"],
            RolloutOptions(cluster_check="on", drain_timeout=30.0),
            [],
        ),
    ],
)
def test_cluster_arguments(args: list[str], options: RolloutOptions, rest: list[str]) -> None:
    assert split_rollout_args(args) == (options, rest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow-replace=yes"], "--allow-replace takes no value"),
        (["--kubeconfig"], "--kubeconfig needs a value"),
        (["--kubeconfig="], "--kubeconfig: an empty path (expected the kubeconfig file's path)"),
        (["--cluster-check", "yes"], "--cluster-check: 'yes' is not one of auto, on, off"),
        (["--drain-timeout", "-5"], "--drain-timeout: '-5' is not a number of seconds > 0"),
        (["--drain-timeout", "5m"], "--drain-timeout: '5m' is not a number of seconds > 0"),
    ],
)
def test_bad_cluster_arguments(args: list[str], message: str) -> None:
    with pytest.raises(WorkflowError) as info:
        split_rollout_args(args)
    assert str(info.value) == message
