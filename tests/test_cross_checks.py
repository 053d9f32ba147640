"""Every problem at once (checks across keys and files run on whatever is valid), the
address, URL and name rules, files swapped or given twice, and values that would be tofu
template syntax. Each case runs main.py: exit 2, exactly these lines, output untouched."""

from __future__ import annotations

import pytest

from config import ConfigPaths, load_config
from tests.rejects import CLUSTER, NODES, BadInput, cluster_with, node_text, nodes_with
from tests.support import SCHEMATIC_A

OUTSIDE = "{n}:3: nodes[0].address: 10.99.0.1 is outside node_cidr (expected an address in 10.10.0.0/24)"
BROADCAST = "is the broadcast address of node_cidr 10.10.0.0/24 (expected a host address)"

# (cluster.yaml, nodes.yaml, expected lines)
AT_ONCE = [
    (
        cluster_with("proxmox_vm_advanced: {bios: uefi}"),
        nodes_with(node_text(0, address='"10.99.0.1"'), node_text(1)),
        ["{c}:7: proxmox_vm_advanced.bios: 'uefi' is not valid (expected 'ovmf' or 'seabios')", OUTSIDE],
    ),
    (
        CLUSTER,
        nodes_with(node_text(0, address='"10.99.0.1"', mtu="1"), node_text(1)),
        [OUTSIDE, "{n}:9: nodes[0].mtu: 1 is out of range (expected an MTU 1450..9000)"],
    ),
    (
        cluster_with("node_vlan_tag: 0"),
        nodes_with(node_text(0, address='"10.10.0.1"'), node_text(1, "cp-0")),
        [
            "{c}:7: node_vlan_tag: 0 is out of range (expected a VLAN id 1..4094)",
            "{n}:3: nodes[0].address: 10.10.0.1 is also node_default_gateway (expected an address of the node's own)",
            "{n}:9: nodes[1].name: duplicate name cp-0 (expected unique; also used by nodes[0])",
        ],
    ),
    (
        cluster_with("talos_version: latest"),
        nodes_with(
            node_text(0), node_text(1, schematic_id=SCHEMATIC_A[:12] + "0" * 52, address='"10.10.0.255"')
        ),
        [
            "{c}:7: talos_version: 'latest' is not valid (expected a Talos release such as '1.12.0')",
            "{n}:10: nodes[1].address: 10.10.0.255 " + BROADCAST,
            f"{{n}}:14: nodes[1].schematic_id: shares its first 12 characters with {SCHEMATIC_A} (expected "
            "schematics that differ in the first 12 characters: the ISO file name uses only those)",
        ],
    ),
    (
        cluster_with('proxmox_api_url: "https://pve:0/api2/json"'),
        nodes_with(node_text(0, address='"10.10.0.255"')),
        [
            "{c}:5: proxmox_api_url: port 0 is not in 1..65535 (expected a URL such as 'https://pve.example.com:8006/api2/json')",
            "{n}:3: nodes[0].address: 10.10.0.255 " + BROADCAST,
        ],
    ),
    (
        CLUSTER,
        nodes_with(node_text(0, address='"10.99.0.1"', disk="[a]"), node_text(1, address='"10.10.0.100"')),
        [
            OUTSIDE,
            "{n}:5: nodes[0].disk: a list is not valid (expected an install disk path or serial)",
            "{n}:10: nodes[1].address: 10.10.0.100 is also cluster_api_addr (expected an address of the node's own)",
        ],
    ),
    (
        cluster_with('node_cidr: "10.10.0.1/24"'),
        nodes_with(node_text(0, address='"10.10.0.100"'), node_text(1, address='"10.99.0.0"')),
        [
            "{c}:1: node_cidr: '10.10.0.1/24' is not valid (expected an IPv4 network such as '10.0.0.0/24')",
            "{n}:3: nodes[0].address: 10.10.0.100 is also cluster_api_addr (expected an address of the node's own)",
        ],
    ),
]


@pytest.mark.parametrize(("cluster", "nodes", "expected"), AT_ONCE)
def test_every_problem_at_once(bad: BadInput, cluster: str, nodes: str, expected: list[str]) -> None:
    bad.write(cluster, nodes)
    bad.reject(expected)


ADDRESSES = [
    ('"10.10.0.0"', "10.10.0.0 is the network address of node_cidr 10.10.0.0/24 (expected a host address)"),
    ('"10.10.0.255"', "10.10.0.255 " + BROADCAST),
    ('"10.10.0.1"', "10.10.0.1 is also node_default_gateway (expected an address of the node's own)"),
    ('"10.10.0.100"', "10.10.0.100 is also cluster_api_addr (expected an address of the node's own)"),
]


@pytest.mark.parametrize(("address", "what"), ADDRESSES)
def test_node_address_rules(bad: BadInput, address: str, what: str) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0), node_text(1, address=address)))
    bad.reject(["{n}:10: nodes[1].address: " + what])


def test_a_31_network_is_too_small(bad: BadInput) -> None:
    # no room for a gateway or the API address; its two addresses are not called network
    # and broadcast address (nodes[0] and nodes[1] have no problem of their own)
    bad.write(cluster_with('node_cidr: "10.10.0.10/31"', "node_default_gateway: 10.10.0.9"), NODES)
    bad.reject(
        [
            "{c}:1: node_cidr: 10.10.0.10/31 holds two addresses (expected a network with room for "
            "the nodes and a gateway: a prefix of /30 or shorter)",
            "{c}:2: cluster_api_addr: 10.10.0.100 is outside node_cidr (expected an address in "
            "10.10.0.10/31: the controllers share this virtual IP on their own network)",
            "{c}:3: node_default_gateway: 10.10.0.9 is outside node_cidr (expected an address in "
            "10.10.0.10/31: the nodes reach their gateway on their own network)",
        ]
    )


API = "(expected a URL such as 'https://pve.example.com:8006/api2/json')"
STATE = "(expected an http(s):// URL such as 'https://tfstate.example.com')"

URLS = [
    (
        'proxmox_api_url: "https://:8006/api2/json"',
        "{c}:5: proxmox_api_url: 'https://:8006/api2/json' is not valid " + API,
    ),
    (
        'proxmox_api_url: "https://pve.example.com:0/api2/json"',
        "{c}:5: proxmox_api_url: port 0 is not in 1..65535 " + API,
    ),
    (
        'proxmox_api_url: "https://pve.example.com:65536/api2/json"',
        "{c}:5: proxmox_api_url: port 65536 is not in 1..65535 " + API,
    ),
    (
        'proxmox_api_url: "https://[::1]:99999/"',
        "{c}:5: proxmox_api_url: port 99999 is not in 1..65535 " + API,
    ),
    (
        'proxmox_api_url: "https://pve.example.com:/api2/json"',
        "{c}:5: proxmox_api_url: 'https://pve.example.com:/api2/json' is not valid " + API,
    ),
    (
        'proxmox_api_url: "https://pve..example.com/api2/json"',
        "{c}:5: proxmox_api_url: 'https://pve..example.com/api2/json' is not valid " + API,
    ),
    (
        'proxmox_api_url: "https://pve.example.com:8006/api2/json?x=1"',
        "{c}:5: proxmox_api_url: the value is not valid " + API,
    ),
    ('tfstate_url: "http://"', "{c}:7: tfstate_url: 'http://' is not valid " + STATE),
    ('tfstate_url: "http://127.0.0.1:0"', "{c}:7: tfstate_url: port 0 is not in 1..65535 " + STATE),
    ('tfstate_url: "https://u@tfstate.example.com"', "{c}:7: tfstate_url: the value is not valid " + STATE),
]


@pytest.mark.parametrize(("line", "expected"), URLS, ids=[u[0] for u in URLS])
def test_url_rules(bad: BadInput, line: str, expected: str) -> None:
    bad.write(cluster_with(line), NODES)
    bad.reject([expected])


@pytest.mark.parametrize(
    ("line", "endpoint"),
    [
        ('proxmox_api_url: "https://[::1]:8006"', "https://[::1]:8006"),
        ('proxmox_api_url: "http://127.0.0.1:65535/api2/json/"', "http://127.0.0.1:65535"),
        ('proxmox_api_url: "https://pve.example.com/api2/json"', "https://pve.example.com"),
        ('proxmox_api_url: "https://pve:1"', "https://pve:1"),
    ],
)
def test_good_urls(bad: BadInput, line: str, endpoint: str) -> None:
    bad.write(cluster_with(line), NODES)
    proxmox = load_config(ConfigPaths(bad.cluster, bad.nodes)).config.proxmox
    assert proxmox is not None and proxmox.endpoint == endpoint


def test_state_name_length(bad: BadInput) -> None:
    bad.write(cluster_with("tfstate_state_name: " + "a" * 128), NODES)
    assert load_config(ConfigPaths(bad.cluster, bad.nodes)).config.backend.state_name == "a" * 128
    bad.write(cluster_with("tfstate_state_name: " + "b" * 129), NODES)
    bad.reject(
        [
            "{c}:7: tfstate_state_name: '" + "b" * 61 + "...' is not valid "
            "(expected one path segment of up to 128 letters, digits, '.', '_' or '-')"
        ]
    )


SWAPPED = "{c}: holds the node list and {n} the cluster keys: the two files are swapped (expected CLUSTER_CONFIG=cluster.yaml and NODES_CONFIG=nodes.yaml)"
NOT_NODES = "{n}: has cluster keys (cluster_api_addr, cluster_svc_cidr, node_cidr) and no 'nodes:' list (expected nodes.yaml here; is this cluster.yaml? check NODES_CONFIG)"
NOT_CLUSTER = "{c}:1: nodes: a node list in the cluster file (expected cluster.yaml here; is this nodes.yaml? check CLUSTER_CONFIG)"


@pytest.mark.parametrize(
    ("cluster", "nodes", "expected"),
    [
        (NODES, CLUSTER, SWAPPED),
        (CLUSTER, CLUSTER, NOT_NODES),
        (NODES, NODES, NOT_CLUSTER),
        (NODES, "", NOT_CLUSTER),
        (
            CLUSTER + "extra_tool: 1\n",
            "proxmox_node: pve1\n",
            NOT_NODES.replace("cluster_api_addr, cluster_svc_cidr, node_cidr", "proxmox_node"),
        ),
    ],
    ids=["swapped", "cluster twice", "nodes twice", "nodes as cluster", "nodes file with a cluster key"],
)
def test_files_mixed_up(bad: BadInput, cluster: str, nodes: str, expected: str) -> None:
    bad.write(cluster, nodes)
    bad.reject([expected])


@pytest.mark.parametrize("how", ["same path", "symlink"])
def test_the_same_file_twice(bad: BadInput, how: str) -> None:
    bad.write(CLUSTER, NODES)
    other = bad.cluster
    if how == "symlink":
        other = bad.root / "link.yaml"
        other.symlink_to(bad.cluster)
    bad.reject(
        [
            "{n}: is the same file as the cluster file {c} (expected two files: "
            "CLUSTER_CONFIG=cluster.yaml and NODES_CONFIG=nodes.yaml)"
        ],
        nodes=other,
    )


# Values that tofu would read as template syntax: refused by the field's own format.
INJECTION = [
    ('proxmox_node: "pve${path.module}"', 6, "proxmox_node", "a Proxmox node name (letters, digits and '-')"),
    (
        'proxmox_iso_storage: "local%{ if true }x%{ endif }"',
        7,
        "proxmox_iso_storage",
        "a datastore id such as 'local' (a-z, 0-9, '.', '_', '-')",
    ),
    (
        'proxmox_disk_storage: "lvm${var.x}"',
        7,
        "proxmox_disk_storage",
        "a datastore id such as 'local-lvm' (a-z, 0-9, '.', '_', '-')",
    ),
    (
        'proxmox_vm_advanced: {network_bridge: "vmbr${x}"}',
        7,
        "proxmox_vm_advanced.network_bridge",
        "a bridge name such as 'vmbr0' (up to 15 letters, digits, '_', '.', '-')",
    ),
    (
        'proxmox_vm_advanced: {machine: "q35${x}"}',
        7,
        "proxmox_vm_advanced.machine",
        "a QEMU machine type such as 'q35'",
    ),
    (
        'proxmox_vm_advanced: {cpu_type: "host%{x}"}',
        7,
        "proxmox_vm_advanced.cpu_type",
        "a CPU type such as 'host'",
    ),
    (
        'proxmox_vm_advanced: {ostype: "l26${x}"}',
        7,
        "proxmox_vm_advanced.ostype",
        "a Proxmox OS type such as 'l26'",
    ),
    ('proxmox_vm_advanced: {tags: ["a${x}"]}', 7, "proxmox_vm_advanced.tags[0]", "a list of lower-case tags"),
    ('talos_version: "1.12.0${x}"', 7, "talos_version", "a Talos release such as '1.12.0'"),
    ('cloudflare_domain: "ex${x}.com"', 7, "cloudflare_domain", "a domain name"),
    (
        'tfstate_url: "https://tfstate.example.com/${x}"',
        7,
        "tfstate_url",
        "an http(s):// URL such as 'https://tfstate.example.com'",
    ),
]


@pytest.mark.parametrize(("line", "number", "key", "expected"), INJECTION, ids=[i[2] for i in INJECTION])
def test_template_syntax_is_refused(bad: BadInput, line: str, number: int, key: str, expected: str) -> None:
    bad.write(cluster_with(line), NODES)
    value = line.split(": ", 1)[1].strip("{}").split(": ", 1)[-1].strip("[]").strip('"')
    bad.reject([f"{{c}}:{number}: {key}: {value!r} is not valid (expected {expected})"])


def test_template_syntax_in_a_node_name_is_refused(bad: BadInput) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, '"cp-${x}"')))
    bad.reject(
        ["{n}:2: nodes[0].name: 'cp-${x}' is not valid (expected a lower-case host name: a-z, 0-9 and '-')"]
    )


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ('"a\\nb"', "'a\\nb'"),  # a line break in a value stays inside the one line
        ('"' + "x" * 100 + '"', "'" + "x" * 61 + "...'"),
        ('"two words"', "'two words'"),
    ],
)
def test_duplicate_values_are_shown_on_one_short_line(bad: BadInput, name: str, shown: str) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, name), node_text(1, name)))
    bad.reject(
        [
            f"{{n}}:2: nodes[0].name: {shown} is not valid (expected a lower-case host name: a-z, 0-9 and '-')",
            f"{{n}}:9: nodes[1].name: {shown} is not valid (expected a lower-case host name: a-z, 0-9 and '-')",
            f"{{n}}:9: nodes[1].name: duplicate name {shown} (expected unique; also used by nodes[0])",
        ]
    )
