"""YAML is read safely and as written: bounded, no tags, no control characters, merge
keys, no silent YAML 1.1 conversions, ASCII digits. Each bad case: one line, exit 2."""

# Non-ASCII digits and letters that look like ASCII ones are what these tests are about.
# ruff: noqa: RUF001

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import ConfigPaths, load_config
from config.yaml_source import MAX_FILE_BYTES
from tests.rejects import CLUSTER, NODES, BadInput, cluster_with, mkfifo, node_text, nodes_with
from tests.support import SCHEMATIC_A

BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9) if b else ', '.join(['lol'] * 9)}]\n"
    for a, b in zip("abcdefghij", ["", *"abcdefghi"], strict=True)
)

# --- 1. bounded ------------------------------------------------------------------------

# (what, cluster text or a path maker, nodes text or a path maker, expected lines)
BOUNDED = [
    (
        "over the size limit",
        CLUSTER + "# padding\n" * (MAX_FILE_BYTES // 10 + 1),
        NODES,
        ["{c}: larger than the limit of 5 MiB (expected a config file)"],
    ),
    (
        "billion laughs",
        CLUSTER + BOMB,
        NODES,
        ["{c}:7: aliases expand to far more values than the file holds (an alias bomb?)"],
    ),
    (
        "recursive sequence",
        CLUSTER + "loop: &l [1, *l]\n",
        NODES,
        ["{c}:7: recursive alias: it refers to a mapping or list that contains it"],
    ),
    (
        "recursive mapping in nodes",
        CLUSTER,
        NODES + "other:\n  &m\n  self:\n    inner: *m\n",
        ["{n}:19: recursive alias: it refers to a mapping or list that contains it"],
    ),
    (
        "deep flow nesting",
        CLUSTER + "deep: " + "[" * 200 + "]" * 200 + "\n",
        NODES,
        ["{c}:7: nested deeper than 64 levels (expected a config file)"],
    ),
    (
        "deep block nesting",
        CLUSTER + "".join(f"{'  ' * i}k{i}:\n" for i in range(80)),
        NODES,
        ["{c}:71: nested deeper than 64 levels (expected a config file)"],
    ),
    (
        "libyaml's own nesting limit",
        CLUSTER + "deep: " + "[" * 2000 + "\n",
        NODES,
        ["{c}:7: YAML syntax error, column 1006: exceeded maximum nesting depth"],
    ),
    (
        "undefined alias",
        CLUSTER + "x: *nowhere\n",
        NODES,
        ["{c}:7: alias (*name) to an anchor that is not defined above it"],
    ),
    (
        "two documents",
        CLUSTER + "---\nproxmox_node: pve2\n",
        NODES,
        ["{c}:7: a second YAML document (expected one document: remove the '---')"],
    ),
    (
        "not UTF-8",
        CLUSTER.encode() + b"proxmox_node: \xff\xfe\n",
        NODES,
        ["{c}:7: not UTF-8 text (expected a YAML file in UTF-8)"],
    ),
    (
        "/dev/zero",
        Path("/dev/zero"),
        NODES,
        ["{c}: not a regular file (expected a YAML file, not a FIFO or device)"],
    ),
    ("a directory", "DIR", NODES, ["{c}: a directory (expected a YAML file)"]),
    ("a FIFO", CLUSTER, "FIFO", ["{n}: not a regular file (expected a YAML file, not a FIFO or device)"]),
    ("a key that is a list", "? [a, b]\n: 1\n", NODES, ["{c}:1: a key must be text, not a list or mapping"]),
]


@pytest.mark.parametrize(("what", "cluster", "nodes", "expected"), BOUNDED, ids=[c[0] for c in BOUNDED])
def test_reading_is_bounded(bad: BadInput, what: str, cluster, nodes, expected: list[str]) -> None:
    paths: dict[str, Path] = {}
    for role, content in (("cluster", cluster), ("nodes", nodes)):
        path = bad.cluster if role == "cluster" else bad.nodes
        if isinstance(content, Path):
            paths[role] = content
        elif content == "DIR":
            path.mkdir()
        elif content == "FIFO":
            paths[role] = mkfifo(bad.root / "fifo.yaml")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    bad.reject(expected, **paths)


def test_a_file_at_the_limit_is_read(bad: BadInput) -> None:
    text = CLUSTER + "# padding\n" * ((MAX_FILE_BYTES - len(CLUSTER)) // 10)
    assert len(text) <= MAX_FILE_BYTES
    bad.write(text, NODES)
    assert load_config(ConfigPaths(bad.cluster, bad.nodes)).config.proxmox is not None


# --- 1. explicit tags and control characters --------------------------------------------

TAG = "explicit YAML tag (tags are not read here: remove it, and quote text)"

TAGS = [
    ("!!int in our key", CLUSTER + "node_vlan_tag: !!int 7\n", NODES, ["{c}:7: " + TAG]),
    ("!!float", CLUSTER + "other: !!float 1\n", NODES, ["{c}:7: " + TAG]),
    ("!!timestamp in an ignored key", CLUSTER + "when: !!timestamp 2024-01-01\n", NODES, ["{c}:7: " + TAG]),
    ("!!binary", CLUSTER + "blob: !!binary aGk=\n", NODES, ["{c}:7: " + TAG]),
    ("unknown local tag", CLUSTER + "x: !custom value\n", NODES, ["{c}:7: " + TAG]),
    ("python object tag", CLUSTER + "x: !!python/object:os.system {}\n", NODES, ["{c}:7: " + TAG]),
    ("tag on a key", CLUSTER + "!key proxmox_insecure: true\n", NODES, ["{c}:7: " + TAG]),
    ("!!map on a sequence", CLUSTER + "x: !!map [1]\n", NODES, ["{c}:7: " + TAG]),
    ("tag in nodes.yaml", CLUSTER, NODES + "  - !!set {a}\n", ["{n}:16: " + TAG]),
    (
        "tag handle undefined",
        CLUSTER + "x: !e!tag 1\n",
        NODES,
        ["{c}:7: YAML syntax error, column 4: found undefined tag handle"],
    ),
]

CONTROL = "control character in column {col} (YAML does not allow it; remove it)"

CONTROLS = [
    ("NUL in a value", CLUSTER + "proxmox_node: pv\x00e\n", NODES, ["{c}:7: " + CONTROL.format(col=17)]),
    ("ESC in an ignored key", CLUSTER + "other\x1b: 1\n", NODES, ["{c}:7: " + CONTROL.format(col=6)]),
    ("DEL in a quoted value", CLUSTER + 'x: "a\x7f"\n', NODES, ["{c}:7: " + CONTROL.format(col=6)]),
    ("C1 control", CLUSTER + "x: a\x9bb\n", NODES, ["{c}:7: " + CONTROL.format(col=5)]),
    (
        "backspace in nodes.yaml",
        CLUSTER,
        NODES.replace("/dev/sda", "/dev/s\x08da", 1),
        ["{n}:5: " + CONTROL.format(col=17)],
    ),
    ("vertical tab in a comment", CLUSTER + "# note\x0b\n", NODES, ["{c}:7: " + CONTROL.format(col=7)]),
]


@pytest.mark.parametrize(
    ("what", "cluster", "nodes", "expected"), TAGS + CONTROLS, ids=[c[0] for c in TAGS + CONTROLS]
)
def test_tags_and_control_characters(
    bad: BadInput, what: str, cluster: str, nodes: str, expected: list[str]
) -> None:
    bad.write(cluster, nodes)
    bad.reject(expected)


def test_str_tag_is_accepted_as_text(bad: BadInput) -> None:
    bad.write(CLUSTER + "tfstate_state_name: !!str 0700\n", NODES)
    assert load_config(ConfigPaths(bad.cluster, bad.nodes)).config.backend.state_name == "0700"


# --- 1. merge keys ------------------------------------------------------------------------

DEFAULTS = (
    "defaults: &d\n  controller: false\n  disk: /dev/sda\n  schematic_id: " + SCHEMATIC_A + "\n  mtu: 1500\n"
)


def _merged_node(index: int, *overrides: str) -> str:
    lines = [
        "  - <<: *d",
        f"    name: w-{index}",
        f'    address: "10.10.0.{20 + index}"',
        f'    mac_addr: "bc:24:11:00:01:{index:02x}"',
        *(f"    {o}" for o in overrides),
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        # the override written in the node wins over the merged mapping
        (
            DEFAULTS + "nodes:\n" + _merged_node(0, "mtu: 9000") + _merged_node(1, "controller: true"),
            [(False, 9000), (True, 1500)],
        ),
        (
            DEFAULTS + "nodes:\n" + _merged_node(0) + _merged_node(1, "controller: true"),
            [(False, 1500), (True, 1500)],
        ),
        # a list of mappings: the first that has a key wins, then the node's own keys
        (
            DEFAULTS
            + "more: &m {mtu: 4000, controller: true}\nnodes:\n"
            + _merged_node(0).replace("*d", "[*m, *d]"),
            [(True, 4000)],
        ),
        # the merge written after the override still loses to it
        (
            DEFAULTS
            + "nodes:\n  - mtu: 2000\n"
            + _merged_node(0).replace("  - <<", "    <<", 1)
            + _merged_node(1, "controller: true"),
            [(False, 2000), (True, 1500)],
        ),
    ],
    ids=["override", "two nodes", "list of mappings", "merge after override"],
)
def test_merge_keys(bad: BadInput, nodes: str, expected: list[tuple[bool, int]]) -> None:
    bad.write(CLUSTER, nodes)
    config = load_config(ConfigPaths(bad.cluster, bad.nodes)).config
    assert [(vm.controller, vm.mtu) for vm in config.vms] == expected


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        # an error in a merged value points at the line it is written on
        (
            DEFAULTS.replace("mtu: 1500", "mtu: 100") + "nodes:\n" + _merged_node(0, "controller: true"),
            ["{n}:5: nodes[0].mtu: 100 is out of range (expected an MTU 1450..9000)"],
        ),
        (
            DEFAULTS + "nodes:\n" + _merged_node(0, "mtuu: 1", "controller: true"),
            ["{n}:11: nodes[0].mtuu: unknown key (did you mean 'mtu'?)"],
        ),
        (
            DEFAULTS + "nodes:\n  - <<: 5\n",
            ["{n}:7: merge key '<<' takes a mapping or a list of them (such as *defaults)"],
        ),
        (
            DEFAULTS + "nodes:\n  - <<: [*d, [1]]\n",
            ["{n}:7: merge key '<<' takes a mapping or a list of them (such as *defaults)"],
        ),
    ],
    ids=["merged value out of range", "unknown key beside a merge", "merge of a number", "merge of a list"],
)
def test_merge_key_errors(bad: BadInput, nodes: str, expected: list[str]) -> None:
    bad.write(CLUSTER, nodes)
    bad.reject(expected)


def test_merge_keys_in_every_node_of_a_big_file_stay_within_the_alias_budget(bad: BadInput) -> None:
    # 2,000 nodes, each merging a 10-key mapping (plus 2 lines of its own): 20,000 merged
    # values, far beyond what an alias bomb may add, yet well inside the budget.
    defaults = "defaults: &d\n" + "".join(
        f"  {k}: {v}\n"
        for k, v in {
            "controller": "false",
            "disk": "/dev/sda",
            "schematic_id": SCHEMATIC_A,
            "mtu": 1500,
            "vm_cores": 2,
            "vm_sockets": 1,
            "vm_memory": 4096,
            "vm_disk_size": 20,
            "vm_startup_delay": 5,
            "vm_shutdown_delay": 30,
        }.items()
    )
    nodes = "".join(
        f"  - {{<<: *d, name: n-{i}, {'controller: true, ' if i == 0 else ''}"
        f'address: "10.10.{i // 250 + 1}.{i % 250 + 2}", '
        f'mac_addr: "bc:24:11:00:{i // 256:02x}:{i % 256:02x}"}}\n'
        for i in range(2000)
    )
    bad.write(CLUSTER.replace("10.10.0.0/24", "10.10.0.0/16"), defaults + "nodes:\n" + nodes)
    vms = load_config(ConfigPaths(bad.cluster, bad.nodes)).config.vms
    assert len(vms) == 2000 and {vm.memory for vm in vms} == {4096}


def test_merge_key_in_cluster_yaml(bad: BadInput) -> None:
    bad.write(
        CLUSTER + "sizes: &s {cores: 6, memory: 4096}\nproxmox_vm_worker_defaults:\n  <<: *s\n  cores: 2\n",
        NODES,
    )
    cluster = load_config(ConfigPaths(bad.cluster, bad.nodes)).config.cluster
    assert (cluster.proxmox_vm_worker_defaults.cores, cluster.proxmox_vm_worker_defaults.memory) == (2, 4096)


# --- 1. no silent YAML 1.1 conversions; ASCII digits ---------------------------------

OCTAL = "a leading zero makes it octal in YAML 1.1 (0700 is 448): write it without the leading zero, or quote it for text"
SEXAGESIMAL = "YAML 1.1 reads it as a base-60 number (1:30 is 90): write a plain number, or quote it for text (a MAC address, a time)"
BOOL11 = "YAML 1.1 reads it as true/false: write true or false, or quote it for text"

# node 0 of nodes.yaml: name 2, address 3, controller 4, disk 5, mac_addr 6, schematic 7,
# vm_id 8, then any other key on line 9.
AMBIGUOUS = [
    (
        "vm_id",
        "9" * 5000,  # beyond Python's int() limit for text: no traceback, one line
        "{n}:8: nodes[0].vm_id: " + "9" * 61 + "... is ambiguous: no key here takes a number this long "
        "(quote it for text) (expected a VM id 100..999999999)",
    ),
    (
        "vm_id",
        "0700",
        "{n}:8: nodes[0].vm_id: 0700 is ambiguous: " + OCTAL + " (expected a VM id 100..999999999)",
    ),
    (
        "vm_startup_delay",
        "1:30",
        "{n}:9: nodes[0].vm_startup_delay: 1:30 is ambiguous: " + SEXAGESIMAL + " (expected seconds >= 0)",
    ),
    (
        "mac_addr",
        "10:24:11:00:00:10",
        "{n}:6: nodes[0].mac_addr: 10:24:11:00:00:10 is ambiguous: "
        + SEXAGESIMAL
        + " (expected a lower-case MAC such as 'bc:24:11:00:00:01')",
    ),
    (
        "controller",
        "yes",
        "{n}:4: nodes[0].controller: yes is ambiguous: " + BOOL11 + " (expected true or false)",
    ),
    (
        "secureboot",
        "Off",
        "{n}:9: nodes[0].secureboot: Off is ambiguous: " + BOOL11 + " (expected true or false)",
    ),
    (
        "mtu",
        "1_500",
        "{n}:9: nodes[0].mtu: 1_500 is ambiguous: YAML 1.1 ignores the '_' in numbers: write plain digits, or quote it for text (expected an MTU 1450..9000)",
    ),
    (
        "vm_memory",
        "8e3",
        "{n}:9: nodes[0].vm_memory: 8e3 is ambiguous: YAML 1.2 reads it as a number, YAML 1.1 often as text: write the number out, or quote it for text (expected memory in MB, a whole number > 0)",
    ),
    (
        "vm_cores",
        "0o17",
        "{n}:9: nodes[0].vm_cores: 0o17 is ambiguous: YAML 1.1 and 1.2 read 0o/0b numbers differently: write a decimal number, or quote it for text (expected a whole number of CPU cores > 0)",
    ),
    (
        "disk",
        "2024-01-01",
        "{n}:5: nodes[0].disk: 2024-01-01 is ambiguous: YAML 1.1 reads it as a date: quote it (expected an install disk path or serial)",
    ),
]


@pytest.mark.parametrize(("key", "value", "expected"), AMBIGUOUS, ids=[a[0] for a in AMBIGUOUS])
def test_yaml_11_forms_are_rejected_with_a_hint(bad: BadInput, key: str, value: str, expected: str) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, **{key: value})))
    bad.reject([expected])


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (
            "proxmox_insecure: on",
            "{c}:7: proxmox_insecure: on is ambiguous: " + BOOL11 + " (expected true or false)",
        ),
        (
            "node_vlan_tag: 07",
            "{c}:7: node_vlan_tag: 07 is ambiguous: " + OCTAL + " (expected a VLAN id 1..4094)",
        ),
        (
            "proxmox_vm_defaults: {cores: 010}",
            "{c}:7: proxmox_vm_defaults.cores: 010 is ambiguous: "
            + OCTAL
            + " (expected a whole number of CPU cores > 0)",
        ),
        (
            "proxmox_vm_advanced: {tags: [a, no]}",
            "{c}:7: proxmox_vm_advanced.tags[1]: no is ambiguous: "
            + BOOL11
            + " (expected a list of lower-case tags)",
        ),
    ],
    ids=["on", "vlan 07", "nested 010", "tag no"],
)
def test_yaml_11_forms_in_cluster_yaml(bad: BadInput, cluster: str, expected: str) -> None:
    bad.write(CLUSTER + cluster + "\n", NODES)
    bad.reject([expected])


def test_an_unknown_key_with_a_yaml_11_value_is_an_unknown_key(bad: BadInput) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, extra="    vm_memroy: 0700\n")))
    bad.reject(["{n}:9: nodes[0].vm_memroy: unknown key (did you mean 'vm_memory'?)"])


def test_yaml_11_forms_in_keys_of_other_tools_are_left_alone(bad: BadInput) -> None:
    bad.write(
        CLUSTER + "other_mode: 0700\nother_time: 1:30\nother_flag: yes\nother_date: 2024-01-01\n", NODES
    )
    assert load_config(ConfigPaths(bad.cluster, bad.nodes)).config.proxmox is not None


@pytest.mark.parametrize(
    ("key", "written", "attribute", "value"),
    [
        ("vm_id", "700", "vm_id", 700),
        ("vm_id", "+700", "vm_id", 700),
        ("vm_id", "0x2BC", "vm_id", 700),  # hexadecimal: the same in YAML 1.1 and 1.2
        ("vm_startup_delay", "90", "startup_delay", 90),
        ("mac_addr", '"10:24:11:00:00:10"', "mac_address", "10:24:11:00:00:10".upper()),
        ("mac_addr", "bc:24:11:00:00:10", "mac_address", "BC:24:11:00:00:10"),  # not base 60: text
        ("mtu", "null", "mtu", None),
        ("mtu", "~", "mtu", None),
    ],
)
def test_values_are_read_as_written(
    bad: BadInput, key: str, written: str, attribute: str, value: object
) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, **{key: written})))
    vm = load_config(ConfigPaths(bad.cluster, bad.nodes)).config.vms[0]
    assert getattr(vm, attribute) == value


def test_a_quoted_number_is_text(bad: BadInput) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, vm_id='"700"')))
    bad.reject(["{n}:8: nodes[0].vm_id: '700' is not valid (expected a VM id 100..999999999)"])


DIGITS = [
    (
        'talos_version: "١.١٢.٠"',
        "{c}:7: talos_version: '١.١٢.٠' is not valid (expected a Talos release such as '1.12.0')",
    ),
    (
        'talos_version: "v1.1².0"',
        "{c}:7: talos_version: '1.1².0' is not valid (expected a Talos release such as '1.12.0')",
    ),
    ('node_vlan_tag: "²"', "{c}:7: node_vlan_tag: '²' is not valid (expected a VLAN id 1..4094)"),
    ('node_vlan_tag: "٣"', "{c}:7: node_vlan_tag: '٣' is not valid (expected a VLAN id 1..4094)"),
    ('node_vlan_tag: "１２"', "{c}:7: node_vlan_tag: '１２' is not valid (expected a VLAN id 1..4094)"),
    (
        'node_cidr: "١٠.10.0.0/24"',
        "{c}:1: node_cidr: '١٠.10.0.0/24' is not valid (expected an IPv4 network such as '10.0.0.0/24')",
    ),
    (
        'proxmox_api_url: "https://pve:８００６"',
        "{c}:5: proxmox_api_url: 'https://pve:８００６' is not valid (expected a URL such as 'https://pve.example.com:8006/api2/json')",
    ),
    (
        'tfstate_url: "https://pve:٨٠"',
        "{c}:7: tfstate_url: 'https://pve:٨٠' is not valid (expected an http(s):// URL such as 'https://tfstate.example.com')",
    ),
    (
        "proxmox_vm_defaults: {cores: ４}",
        "{c}:7: proxmox_vm_defaults.cores: '４' is not valid (expected a whole number of CPU cores > 0)",
    ),
]


@pytest.mark.parametrize(("line", "expected"), DIGITS, ids=[d[0] for d in DIGITS])
def test_digits_are_ascii(bad: BadInput, line: str, expected: str) -> None:
    bad.write(cluster_with(line), NODES)
    bad.reject([expected])


@pytest.mark.parametrize("name", ["cp-١", "cp-²", "ｃｐ"])
def test_node_name_digits_are_ascii(bad: BadInput, name: str) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, f'"{name}"')))
    bad.reject(
        [f"{{n}}:2: nodes[0].name: '{name}' is not valid (expected a lower-case host name: a-z, 0-9 and '-')"]
    )


def test_fifo_is_not_opened_for_reading(bad: BadInput) -> None:
    # Nothing ever writes to the FIFO: a reader would block forever (run() has a timeout).
    fifo = mkfifo(bad.root / "cluster.fifo")
    bad.write(CLUSTER, NODES)
    outcome = bad.run(cluster=fifo)
    assert outcome.code == 2 and os.path.exists(fifo)
