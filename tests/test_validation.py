"""Every validation rule: one line `FILE:LINE: key.path: what is wrong (expected)`, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, ConfigPaths, load_config
from tests.support import BASE_CLUSTER, ROOT, SCHEMATIC_A, ConfigDir, node


def problems(d: ConfigDir) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(ConfigPaths(d.cluster, d.nodes))
    return [str(p) for p in info.value.problems]


def one_problem(d: ConfigDir) -> str:
    found = problems(d)
    assert len(found) == 1, found
    return found[0]


GOOD_NODES = [node("cp-0", 0), node("w-0", 1, controller=False)]


@pytest.mark.parametrize(
    ("node_extra", "expected"),
    [
        ({"name": "Bad_Name"}, "nodes[0].name: 'Bad_Name' is not valid (expected a lower-case host name"),
        (
            {"mac_addr": "BC:24:11:00:00:10"},
            "nodes[0].mac_addr: 'BC:24:11:00:00:10' is not valid (expected a lower-case MAC",
        ),
        ({"mac_addr": "bc-24-11-00-00-10"}, "nodes[0].mac_addr: 'bc-24-11-00-00-10' is not valid"),
        (
            {"address": "10.10.0.300"},
            "nodes[0].address: '10.10.0.300' is not valid (expected an IPv4 address)",
        ),
        (
            {"address": "10.99.0.5"},
            "nodes[0].address: 10.99.0.5 is outside node_cidr (expected an address in 10.10.0.0/24)",
        ),
        (
            {"schematic_id": "abc"},
            "nodes[0].schematic_id: 'abc' is not valid (expected 64 lower-case hex characters",
        ),
        ({"mtu": 1400}, "nodes[0].mtu: 1400 is out of range (expected an MTU 1450..9000)"),
        ({"mtu": 9001}, "nodes[0].mtu: 9001 is out of range (expected an MTU 1450..9000)"),
        ({"vm_cores": 0}, "nodes[0].vm_cores: 0 is out of range (expected a whole number of CPU cores > 0)"),
        ({"vm_memory": -1}, "nodes[0].vm_memory: -1 is out of range (expected memory in MB"),
        ({"vm_disk_size": "big"}, "nodes[0].vm_disk_size: 'big' is not valid (expected disk size in GB"),
        ({"vm_startup_delay": -5}, "nodes[0].vm_startup_delay: -5 is out of range (expected seconds >= 0)"),
        ({"vm_shutdown_delay": -1}, "nodes[0].vm_shutdown_delay: -1 is out of range (expected seconds >= 0)"),
        (
            {"vm_startup_order": -1},
            "nodes[0].vm_startup_order: -1 is out of range (expected a startup order >= 0)",
        ),
        ({"controller": "yes"}, "nodes[0].controller: 'yes' is not valid (expected true or false)"),
        ({"vm_memroy": 4096}, "nodes[0].vm_memroy: unknown key (did you mean 'vm_memory'?)"),
        ({"vm_id": 5}, "nodes[0].vm_id: 5 is out of range (expected a VM id 100..999999999)"),
    ],
)
def test_node_field_rules(config_dir: ConfigDir, node_extra: dict, expected: str) -> None:
    config_dir.write(BASE_CLUSTER, [node("cp-0", 0, **node_extra)])
    line = one_problem(config_dir)
    assert line.startswith(f"{config_dir.nodes}:"), line
    assert expected in line


def test_missing_required_node_key_points_at_the_node(config_dir: ConfigDir) -> None:
    entry = node("cp-0", 0)
    del entry["disk"]
    config_dir.write(BASE_CLUSTER, [entry])
    # nodes.yaml as dumped: line 1 `nodes:`, line 2 `- name: cp-0`.
    assert one_problem(config_dir) == (
        f"{config_dir.nodes}:2: nodes[0].disk: required key is missing "
        "(expected an install disk path or serial)"
    )


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("name", "cp-0", "duplicate name cp-0"),
        ("mac_addr", "BC:24:11:00:00:0A", None),  # case differs, still a duplicate after checks
        ("address", "10.10.0.10", "duplicate address 10.10.0.10"),
        ("vm_id", 100, "duplicate vm_id 100"),
    ],
)
def test_uniqueness(config_dir: ConfigDir, field: str, value: object, what: str | None) -> None:
    first = node("cp-0", 0, vm_id=100)
    second = node("cp-1", 1, **{field: value})
    if field == "mac_addr":
        second["mac_addr"] = first["mac_addr"]
        what = f"duplicate MAC address {first['mac_addr']}"
    config_dir.write(BASE_CLUSTER, [first, second])
    line = one_problem(config_dir)
    assert f"nodes[1].{field}: {what} (expected unique; also used by nodes[0])" in line


def test_schematics_sharing_the_iso_name_prefix(config_dir: ConfigDir) -> None:
    other = SCHEMATIC_A[:12] + "0" * 52
    config_dir.write(BASE_CLUSTER, [node("a", 0), node("b", 1, schematic_id=other)])
    assert "nodes[1].schematic_id: shares its first 12 characters" in one_problem(config_dir)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"proxmox_api_url": "pve.example.com:8006"},
            "proxmox_api_url: 'pve.example.com:8006' is not valid (expected a URL such as 'https://pve.example.com:8006/api2/json')",
        ),
        ({"proxmox_api_url": "ftp://pve/api2/json"}, "proxmox_api_url: 'ftp://pve/api2/json' is not valid"),
        (
            {"proxmox_vm_defaults": {"memory": 0}},
            "proxmox_vm_defaults.memory: 0 is out of range (expected memory in MB",
        ),
        (
            {"proxmox_vm_worker_defaults": {"disk_size": -10}},
            "proxmox_vm_worker_defaults.disk_size: -10 is out of range",
        ),
        (
            {"proxmox_vm_controller_defaults": {"core": 2}},
            "proxmox_vm_controller_defaults.core: unknown key (did you mean 'cores'?)",
        ),
        (
            {"proxmox_vm_advanced": {"net_queue": 2}},
            "proxmox_vm_advanced.net_queue: unknown key (did you mean 'net_queues'?)",
        ),
        (
            {"proxmox_vm_advanced": {"zzz": 1}},
            "proxmox_vm_advanced.zzz: unknown key (expected one of: balloon, bios,",
        ),
        (
            {"proxmox_vm_advanced": {"tags": ["ok", "Not Ok"]}},
            "proxmox_vm_advanced.tags[1]: 'Not Ok' is not valid (expected a list of lower-case tags)",
        ),
        ({"proxmox_vm_advanced": "fast"}, "proxmox_vm_advanced: 'fast' is not a mapping"),
        ({"node_vlan_tag": "5000"}, "node_vlan_tag: 5000 is out of range (expected a VLAN id 1..4094)"),
        ({"node_cidr": "10.10.0.1/24"}, "node_cidr: '10.10.0.1/24' is not valid (expected an IPv4 network"),
        (
            {"tfstate_url": "tfstate.example.com"},
            "tfstate_url: 'tfstate.example.com' is not valid (expected an http(s):// URL",
        ),
        ({"tfstate_state_name": "a/b"}, "tfstate_state_name: 'a/b' is not valid (expected one path segment"),
        ({"talos_version": "latest"}, "talos_version: 'latest' is not valid (expected a Talos release"),
        (
            {"proxmox_api_token_id": "terraform"},
            "proxmox_api_token_id: 'terraform' is not valid (expected a token id",
        ),
        (
            {"proxmox_vm_advanced": {"bios": "uefi"}},
            "proxmox_vm_advanced.bios: 'uefi' is not valid (expected 'ovmf' or 'seabios')",
        ),
        (
            {"proxmox_vm_advanced": {"scsi_hw": "ide"}},
            "proxmox_vm_advanced.scsi_hw: 'ide' is not valid (expected a SCSI controller",
        ),
        (
            {"proxmox_vm_advanced": {"net_queues": 65}},
            "proxmox_vm_advanced.net_queues: 65 is out of range (expected a number of NIC queues 0..64)",
        ),
        (
            {"proxmox_vm_advanced": {"balloon": -1}},
            "proxmox_vm_advanced.balloon: -1 is out of range (expected minimum balloon memory in MB",
        ),
        ({"proxmox_insecure": "yes"}, "proxmox_insecure: 'yes' is not valid (expected true or false)"),
        (
            {"cloudflare_domain": "not a domain"},
            "cloudflare_domain: 'not a domain' is not valid (expected a domain name)",
        ),
        (
            {"node_default_gateway": "10.10.0"},
            "node_default_gateway: '10.10.0' is not valid (expected an IPv4 address)",
        ),
        ({"cluster_api_addr": 42}, "cluster_api_addr: 42 is not valid (expected an IPv4 address)"),
    ],
)
def test_cluster_field_rules(config_dir: ConfigDir, override: dict, expected: str) -> None:
    config_dir.write({**BASE_CLUSTER, **override}, GOOD_NODES)
    line = one_problem(config_dir)
    assert line.startswith(f"{config_dir.cluster}:"), line
    assert expected in line


def test_half_enabled_infrastructure(config_dir: ConfigDir) -> None:
    cluster = {k: v for k, v in BASE_CLUSTER.items() if k != "proxmox_node"}
    config_dir.write(cluster, GOOD_NODES)
    assert "proxmox_node: required key is missing (set it too, or remove proxmox_api_url" in (
        one_problem(config_dir)
    )


def test_no_nodes_while_enabled(config_dir: ConfigDir) -> None:
    config_dir.write(BASE_CLUSTER, "nodes: []\n")
    assert one_problem(config_dir) == (
        f"{config_dir.nodes}:1: nodes: no nodes (expected at least one node while infrastructure is enabled)"
    )


def test_no_nodes_is_fine_while_disabled(config_dir: ConfigDir) -> None:
    config_dir.write({"cloudflare_domain": "example.com"}, "")
    assert load_config(ConfigPaths(config_dir.cluster, config_dir.nodes)).config.vms == ()


def test_yaml_syntax_error_has_line_and_column(config_dir: ConfigDir) -> None:
    config_dir.write("proxmox_node: pve1\nproxmox_vm_defaults: {cores: 4\n", GOOD_NODES)
    line = one_problem(config_dir)
    assert line.startswith(f"{config_dir.cluster}:3: YAML syntax error, column 1:"), line


def test_duplicate_yaml_key(config_dir: ConfigDir) -> None:
    config_dir.write("proxmox_node: pve1\nproxmox_node: pve2\n", GOOD_NODES)
    found = problems(config_dir)
    assert f"{config_dir.cluster}:2: proxmox_node: duplicate key (each key once)" in found


def test_missing_file_says_which_and_points_to_examples(config_dir: ConfigDir) -> None:
    config_dir.write(BASE_CLUSTER, GOOD_NODES)
    config_dir.nodes.unlink()
    assert one_problem(config_dir) == (
        f"{config_dir.nodes}: file not found (copy one from examples/ to start)"
    )


def test_nodes_must_be_a_list(config_dir: ConfigDir) -> None:
    config_dir.write(BASE_CLUSTER, "nodes:\n  name: cp-0\n")
    assert (
        one_problem(config_dir)
        == f"{config_dir.nodes}:1: nodes: a mapping is not valid (expected a list of node mappings)"
    )


def test_file_must_be_a_mapping(config_dir: ConfigDir) -> None:
    config_dir.write("- just\n- a list\n", GOOD_NODES)
    assert one_problem(config_dir) == f"{config_dir.cluster}:1: the file must be a mapping of keys"


def test_every_problem_is_reported_at_once(config_dir: ConfigDir) -> None:
    config_dir.write(
        {**BASE_CLUSTER, "node_vlan_tag": 0},
        [node("cp-0", 0, mtu=1), node("cp-0", 1, vm_cores=0)],
    )
    found = problems(config_dir)
    assert len(found) == 4, found  # vlan, mtu, vm_cores, and the duplicate name beside them
    assert any("nodes[1].name: duplicate name cp-0" in line for line in found)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tfstate_url", "tfstate.example.com/u:hunter2-SENTINEL@x"),
        ("proxmox_api_token_id", "root@pam!tf=hunter2-SENTINEL"),
    ],
)
def test_values_that_may_carry_a_secret_are_not_echoed(config_dir: ConfigDir, key: str, value: str) -> None:
    config_dir.write({**BASE_CLUSTER, key: value}, GOOD_NODES)
    line = one_problem(config_dir)
    assert f"{key}: the value is not valid" in line and "hunter2" not in line


def test_secret_values_are_never_echoed(config_dir: ConfigDir) -> None:
    config_dir.write(
        {**BASE_CLUSTER, "tfstate_password": ["s3cr3t-sentinel"], "proxmox_api_token_secret": 12345},
        GOOD_NODES,
    )
    text = "\n".join(problems(config_dir))
    assert (
        "tfstate_password: YAML reads this value as a list, not as text (expected the secret in double"
        in text
    )
    assert "s3cr3t-sentinel" not in text and "12345" not in text


def test_unknown_own_prefix_key_is_a_warning(config_dir: ConfigDir) -> None:
    config_dir.write({**BASE_CLUSTER, "proxmox_nod": "pve1", "other_tool_key": 1}, GOOD_NODES)
    result = load_config(ConfigPaths(config_dir.cluster, config_dir.nodes))
    assert [str(w) for w in result.warnings] == [
        f"{config_dir.cluster}:7: proxmox_nod: warning: unknown key (did you mean 'proxmox_node'?)"
    ]


# --- through main.py: exit code, no traceback, nothing written -----------------------


def test_main_exits_2_without_traceback_and_leaves_output_untouched(config_dir: ConfigDir) -> None:
    config_dir.write(BASE_CLUSTER, GOOD_NODES)
    assert config_dir.run_main().returncode == 0
    stack = config_dir.outdir / "stacks" / "proxmox" / "cdk.tf.json"
    before = stack.read_bytes()
    config_dir.write({**BASE_CLUSTER, "proxmox_vm_advanced": {"biso": "ovmf"}}, [node("X", 0)])
    proc = config_dir.run_main()
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "2 problems found; nothing was written."
    assert all(line.startswith(str(config_dir.root)) for line in lines[:-1]), lines
    assert proc.stdout == ""
    assert stack.read_bytes() == before


def test_main_missing_files_use_env_paths(tmp_path: Path) -> None:
    d = ConfigDir(tmp_path)
    proc = d.run_main()
    assert proc.returncode == 2
    assert f"{d.cluster}: file not found (copy one from examples/ to start)" in proc.stderr
    assert f"{d.nodes}: file not found" in proc.stderr
    assert not d.outdir.exists()


def test_unwritable_output_directory_is_one_line(config_dir: ConfigDir) -> None:
    config_dir.write(BASE_CLUSTER, GOOD_NODES)
    blocker = config_dir.root / "a-file"
    blocker.write_text("not a directory")
    env = {**config_dir.env(), "CDKTF_OUTDIR": str(blocker / "out")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{blocker / 'out'}: cannot write the output directory (Not a directory)"
