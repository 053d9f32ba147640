"""The defaults chain (each level wins once) and the other resolved defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigPaths, InfraConfig, load_config
from config.loader import endpoint_from
from tests.support import BASE_CLUSTER, ConfigDir, node


def resolve(d: ConfigDir, cluster: dict, nodes: list) -> InfraConfig:
    if not any(n["controller"] for n in nodes):  # Talos needs a controller: one after them
        nodes = [*nodes, node("cp", 80)]
    d.write({**BASE_CLUSTER, **cluster}, nodes)
    return load_config(ConfigPaths(d.cluster, d.nodes)).config


USER_LEVELS = {
    "proxmox_vm_defaults": {"cores": 2, "sockets": 2, "memory": 2048, "disk_size": 20},
    "proxmox_vm_controller_defaults": {"cores": 3, "sockets": 3, "memory": 3072, "disk_size": 30},
    "proxmox_vm_worker_defaults": {"cores": 5, "sockets": 5, "memory": 5120, "disk_size": 50},
}


@pytest.mark.parametrize(
    ("levels", "node_overrides", "controller", "expected"),
    [
        # 1. the node's own vm_* values win over everything
        (
            USER_LEVELS,
            {"vm_cores": 7, "vm_sockets": 4, "vm_memory": 7000, "vm_disk_size": 70},
            True,
            (7, 4, 7000, 70),
        ),
        # 2. then the user's role defaults
        (USER_LEVELS, {}, True, (3, 3, 3072, 30)),
        (USER_LEVELS, {}, False, (5, 5, 5120, 50)),
        # 3. then the user's global proxmox_vm_defaults
        ({"proxmox_vm_defaults": USER_LEVELS["proxmox_vm_defaults"]}, {}, False, (2, 2, 2048, 20)),
        # 4. then the built-in role defaults
        ({}, {}, True, (4, 1, 8192, 64)),
        ({}, {}, False, (8, 1, 16384, 256)),
    ],
)
def test_each_level_wins(config_dir, levels, node_overrides, controller, expected) -> None:
    config = resolve(config_dir, levels, [node("n", 0, controller=controller, **node_overrides)])
    vm = config.vms[0]
    assert (vm.cores, vm.sockets, vm.memory, vm.disk_size) == expected


def test_levels_merge_key_by_key(config_dir: ConfigDir) -> None:
    config = resolve(
        config_dir,
        {"proxmox_vm_defaults": {"sockets": 2}, "proxmox_vm_worker_defaults": {"memory": 4096}},
        [node("w", 0, controller=False, vm_cores=6)],
    )
    vm = config.vms[0]
    # node, user global, user role, built-in role: one key from each
    assert (vm.cores, vm.sockets, vm.memory, vm.disk_size) == (6, 2, 4096, 256)


def test_builtin_global_is_the_last_resort(monkeypatch: pytest.MonkeyPatch, config_dir) -> None:
    from config import defaults

    monkeypatch.setitem(defaults.BUILTIN_ROLE, "worker", {"cores": 8})  # role without memory
    config = resolve(config_dir, {}, [node("w", 0, controller=False)])
    assert config.vms[0].memory == defaults.BUILTIN_GLOBAL["memory"] == 8192


def test_startup_defaults_follow_position(config_dir: ConfigDir) -> None:
    config = resolve(
        config_dir,
        {},
        [
            node("a", 0),
            node("b", 1),
            node("c", 2, vm_startup_order=1, vm_startup_delay=0, vm_shutdown_delay=0),
        ],
    )
    got = [(v.startup_order, v.startup_delay, v.shutdown_delay) for v in config.vms]
    assert got == [(4, 15, 60), (5, 15, 60), (1, 0, 0)]


def test_optional_attributes_stay_unset(config_dir: ConfigDir) -> None:
    vm = resolve(config_dir, {}, [node("a", 0)]).vms[0]
    assert vm.vm_id is None and vm.mtu is None
    assert vm.mac_address == "BC:24:11:00:00:0A"


def test_one_iso_per_schematic_and_secureboot(config_dir: ConfigDir) -> None:
    config = resolve(
        config_dir,
        {},
        [
            node("a", 0),
            node("b", 1),
            node("c", 2, secureboot=True),
        ],
    )
    assert [i.key.rsplit("-", 1)[1] for i in config.isos] == ["false", "true"]
    assert config.vms[0].iso is config.vms[1].iso


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://pve.example.com:8006/api2/json", "https://pve.example.com:8006"),
        ("https://pve.example.com:8006/api2/json/", "https://pve.example.com:8006"),
        ("https://pve.example.com:8006/", "https://pve.example.com:8006"),
        ("https://pve.example.com", "https://pve.example.com"),
    ],
)
def test_endpoint_normalisation(url: str, endpoint: str) -> None:
    assert endpoint_from(url) == endpoint


def test_backend_defaults(config_dir: ConfigDir) -> None:
    local = resolve(config_dir, {}, [node("a", 0)]).backend
    assert local.http_address is None
    assert local.local_path == config_dir.root.resolve() / ".state" / "proxmox.tfstate"

    worker = resolve(config_dir, {"cloudflare_domain": "example.com"}, [node("a", 0)]).backend
    assert worker.http_address == "https://tfstate.example.com/states/proxmox"
    assert worker.lock_address == "https://tfstate.example.com/states/proxmox/lock"

    own = resolve(
        config_dir,
        {"cloudflare_domain": "example.com", "tfstate_url": "http://h:1/", "tfstate_state_name": "lab"},
        [node("a", 0)],
    ).backend
    assert own.http_address == "http://h:1/states/lab"


def test_infrastructure_enabled_needs_both_keys(tmp_path: Path) -> None:
    d = ConfigDir(tmp_path)
    d.write({"node_cidr": "10.10.0.0/24"}, [node("a", 0)])
    config = load_config(ConfigPaths(d.cluster, d.nodes)).config
    assert not config.enabled and config.vms == () and config.isos == ()
