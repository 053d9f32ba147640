"""What a working cluster needs beyond types: addresses a LAN can use (node addresses,
node_default_gateway, cluster_api_addr, node_cidr itself) and MAC addresses a NIC can
have. Each bad case runs main.py: exit 2, exactly these lines, no traceback, a previous
cdktf.out untouched. Loopback stays valid for a test cluster whose node_cidr is in
127.0.0.0/8 (the rolling apply's tests run whole clusters there)."""

from __future__ import annotations

import pytest

from config import ConfigPaths, load_config
from tests.rejects import CLUSTER, NODES, BadInput, cluster_with, node_text, nodes_with

MULTICAST = "is a multicast address (expected a unicast address, outside 224.0.0.0/4)"
UNSPECIFIED = 'is an unspecified ("this network") address (expected a host address, outside 0.0.0.0/8)'
LIMITED = "is the limited broadcast address (expected a host address)"
CLASS_E = "is a reserved (class E) address (expected a host address, outside 240.0.0.0/4)"
LINK_LOCAL = "is a link-local address (expected a routable address, outside 169.254.0.0/16)"
LOOPBACK = (
    "is a loopback address (expected an address on the LAN: "
    "loopback only in a test cluster whose node_cidr is in 127.0.0.0/8)"
)

# (address, what is wrong with it): refused wherever a host would use it.
BAD_ADDRESSES = [
    ("224.0.0.5", MULTICAST),
    ("239.255.255.250", MULTICAST),
    ("230.10.0.11", MULTICAST),
    ("0.0.0.0", UNSPECIFIED),
    ("0.10.0.11", UNSPECIFIED),
    ("255.255.255.255", LIMITED),
    ("240.0.0.1", CLASS_E),
    ("254.10.0.11", CLASS_E),
    ("169.254.0.10", LINK_LOCAL),
    ("169.254.169.254", LINK_LOCAL),
    ("127.0.0.1", LOOPBACK),
    ("127.10.0.11", LOOPBACK),
]
IDS = [a for a, _ in BAD_ADDRESSES]


@pytest.mark.parametrize(("address", "what"), BAD_ADDRESSES, ids=IDS)
def test_node_address_a_lan_cannot_use(bad: BadInput, address: str, what: str) -> None:
    # one line per key: the kind of address, not also "outside node_cidr"
    bad.write(CLUSTER, nodes_with(node_text(0), node_text(1, address=f'"{address}"')))
    bad.reject([f"{{n}}:10: nodes[1].address: {address} {what}"])


@pytest.mark.parametrize(("address", "what"), BAD_ADDRESSES, ids=IDS)
def test_gateway_a_lan_cannot_use(bad: BadInput, address: str, what: str) -> None:
    bad.write(cluster_with(f'node_default_gateway: "{address}"'), NODES)
    bad.reject([f"{{c}}:3: node_default_gateway: {address} {what}"])


@pytest.mark.parametrize(("address", "what"), BAD_ADDRESSES, ids=IDS)
def test_api_address_a_lan_cannot_use(bad: BadInput, address: str, what: str) -> None:
    bad.write(cluster_with(f'cluster_api_addr: "{address}"'), NODES)
    bad.reject([f"{{c}}:2: cluster_api_addr: {address} {what}"])


def test_loopback_without_node_cidr_is_refused(bad: BadInput) -> None:
    cluster = "".join(line for line in CLUSTER.splitlines(keepends=True) if line.startswith("proxmox_"))
    bad.write(cluster, nodes_with(node_text(0, address='"127.0.0.10"'), node_text(1)))
    bad.reject(["{n}:3: nodes[0].address: 127.0.0.10 " + LOOPBACK])


NETWORK = "(expected a host address)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'node_default_gateway: "10.10.0.0"',
            "{c}:3: node_default_gateway: 10.10.0.0 is the network address of node_cidr 10.10.0.0/24 "
            + NETWORK,
        ),
        (
            'node_default_gateway: "10.10.0.255"',
            "{c}:3: node_default_gateway: 10.10.0.255 is the broadcast address of node_cidr 10.10.0.0/24 "
            + NETWORK,
        ),
        (
            'cluster_api_addr: "10.10.0.0"',
            "{c}:2: cluster_api_addr: 10.10.0.0 is the network address of node_cidr 10.10.0.0/24 " + NETWORK,
        ),
        (
            'cluster_api_addr: "10.10.0.255"',
            "{c}:2: cluster_api_addr: 10.10.0.255 is the broadcast address of node_cidr 10.10.0.0/24 "
            + NETWORK,
        ),
        (
            'cluster_api_addr: "10.10.0.1"',
            "{c}:2: cluster_api_addr: 10.10.0.1 is also node_default_gateway (expected an address of its own)",
        ),
    ],
)
def test_gateway_and_api_address_in_node_cidr(bad: BadInput, line: str, expected: str) -> None:
    bad.write(cluster_with(line), NODES)
    bad.reject([expected])


def test_network_and_broadcast_of_a_small_network(bad: BadInput) -> None:
    bad.write(
        cluster_with(
            'node_cidr: "10.10.0.8/29"', 'node_default_gateway: "10.10.0.15"', 'cluster_api_addr: "10.10.0.8"'
        ),
        nodes_with(node_text(0, address='"10.10.0.9"'), node_text(1, address='"10.10.0.10"')),
    )
    bad.reject(
        [
            "{c}:2: cluster_api_addr: 10.10.0.8 is the network address of node_cidr 10.10.0.8/29 " + NETWORK,
            "{c}:3: node_default_gateway: 10.10.0.15 is the broadcast address of node_cidr 10.10.0.8/29 "
            + NETWORK,
        ]
    )


def in_network(cidr: str, prefix: str) -> tuple[str, str]:
    """cluster.yaml and nodes.yaml with node_cidr `cidr` and every address `prefix`.x."""
    cluster = cluster_with(
        f'node_cidr: "{cidr}"',
        f'cluster_api_addr: "{prefix}.100"',
        f'node_default_gateway: "{prefix}.1"',
    )
    nodes = nodes_with(node_text(0, address=f'"{prefix}.10"'), node_text(1, address=f'"{prefix}.11"'))
    return cluster, nodes


LAN = "(expected a LAN network such as '10.0.0.0/24')"


@pytest.mark.parametrize(
    ("cidr", "prefix", "expected"),
    [
        ("0.0.0.0/0", "10.10.0", 'includes 0.0.0.0/8, unspecified ("this network") addresses'),
        ("0.0.0.0/4", "10.10.0", 'includes 0.0.0.0/8, unspecified ("this network") addresses'),
        ("96.0.0.0/3", "100.10.0", "includes 127.0.0.0/8, loopback addresses"),
        ("169.0.0.0/8", "169.1.0", "includes 169.254.0.0/16, link-local addresses"),
        ("192.0.0.0/2", "192.168.0", "includes 224.0.0.0/4, multicast addresses"),
        ("128.0.0.0/1", "192.168.0", "includes 169.254.0.0/16, link-local addresses"),
    ],
)
def test_node_cidr_that_includes_addresses_a_lan_cannot_use(
    bad: BadInput, cidr: str, prefix: str, expected: str
) -> None:
    # every address is a good one in the network, so node_cidr is the one problem
    bad.write(*in_network(cidr, prefix))
    bad.reject([f"{{c}}:1: node_cidr: {cidr} {expected} {LAN}"])


@pytest.mark.parametrize(
    ("cidr", "prefix", "network", "what"),
    [
        ("224.1.2.0/24", "224.1.2", "is in 224.0.0.0/4, multicast addresses", MULTICAST),
        ("239.0.0.0/16", "239.0.0", "is in 224.0.0.0/4, multicast addresses", MULTICAST),
        ("169.254.7.0/24", "169.254.7", "is in 169.254.0.0/16, link-local addresses", LINK_LOCAL),
        ("240.10.0.0/24", "240.10.0", "is in 240.0.0.0/4, reserved (class E) addresses", CLASS_E),
        ("0.10.0.0/24", "0.10.0", 'is in 0.0.0.0/8, unspecified ("this network") addresses', UNSPECIFIED),
    ],
)
def test_node_cidr_a_lan_cannot_use(bad: BadInput, cidr: str, prefix: str, network: str, what: str) -> None:
    # every problem at once: the network, the API address, the gateway, each node
    bad.write(*in_network(cidr, prefix))
    bad.reject(
        [
            f"{{c}}:1: node_cidr: {cidr} {network} {LAN}",
            f"{{c}}:2: cluster_api_addr: {prefix}.100 {what}",
            f"{{c}}:3: node_default_gateway: {prefix}.1 {what}",
            f"{{n}}:3: nodes[0].address: {prefix}.10 {what}",
            f"{{n}}:10: nodes[1].address: {prefix}.11 {what}",
        ]
    )


UNICAST = "(expected a unicast MAC: the first octet's lowest bit 0)"


@pytest.mark.parametrize(
    ("mac", "what"),
    [
        ("01:00:5e:00:00:01", "is a multicast MAC address " + UNICAST),  # IPv4 multicast
        ("33:33:00:00:00:01", "is a multicast MAC address " + UNICAST),  # IPv6 multicast
        ("bd:24:11:00:00:11", "is a multicast MAC address " + UNICAST),  # bc:24:11 (Proxmox) mistyped
        ("03:00:00:00:00:01", "is a multicast MAC address " + UNICAST),  # locally administered too
        ("ff:ff:ff:ff:ff:ff", "is the broadcast MAC address " + UNICAST),
        ("00:00:00:00:00:00", "is the all-zero MAC address (expected a MAC of the VM's own, not all zeros)"),
    ],
)
def test_mac_a_nic_cannot_have(bad: BadInput, mac: str, what: str) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0), node_text(1, mac_addr=f'"{mac}"')))
    bad.reject([f"{{n}}:13: nodes[1].mac_addr: {mac} {what}"])


def test_every_problem_at_once(bad: BadInput) -> None:
    # a node with an invalid mtu still has its MAC and address checked
    bad.write(
        cluster_with('node_default_gateway: "169.254.1.1"'),
        nodes_with(
            node_text(0, mac_addr='"01:00:5e:00:00:01"', mtu="1"),
            node_text(1, address='"224.0.0.251"', mac_addr='"01:00:5e:00:00:01"'),
        ),
    )
    bad.reject(
        [
            "{c}:3: node_default_gateway: 169.254.1.1 " + LINK_LOCAL,
            "{n}:6: nodes[0].mac_addr: 01:00:5e:00:00:01 is a multicast MAC address " + UNICAST,
            "{n}:9: nodes[0].mtu: 1 is out of range (expected an MTU 1450..9000)",
            "{n}:11: nodes[1].address: 224.0.0.251 " + MULTICAST,
            "{n}:14: nodes[1].mac_addr: 01:00:5e:00:00:01 is a multicast MAC address " + UNICAST,
            "{n}:14: nodes[1].mac_addr: duplicate MAC address 01:00:5e:00:00:01 "
            "(expected unique; also used by nodes[0])",
        ]
    )


# --- what must stay valid ---------------------------------------------------------------


def loads(bad: BadInput, cluster: str, nodes: str) -> list[tuple[str, str]]:
    bad.write(cluster, nodes)
    result = load_config(ConfigPaths(bad.cluster, bad.nodes))
    assert [w for w in result.warnings if "node_cidr" in str(w) or "mac_addr" in str(w)] == []
    return [(vm.address, vm.mac_address) for vm in result.config.vms]


@pytest.mark.parametrize(
    "mac",
    [
        "02:00:00:00:00:01",  # locally administered (0x02 of the first octet), unicast
        "52:54:00:12:34:56",  # QEMU's default prefix, locally administered
        "de:ad:be:ef:00:01",  # locally administered
        "bc:24:11:ab:cd:ef",  # Proxmox's own OUI: universally administered, unicast
        "00:00:00:00:00:01",  # not all zeros
        "fe:ff:ff:ff:ff:ff",  # not the broadcast MAC: bit 0 of the first octet is 0
    ],
)
def test_unicast_macs_are_valid(bad: BadInput, mac: str) -> None:
    nodes = nodes_with(node_text(0), node_text(1, mac_addr=f'"{mac}"'))
    assert loads(bad, CLUSTER, nodes)[1] == ("10.10.0.11", mac.upper())


@pytest.mark.parametrize(
    ("cidr", "prefix"),
    [
        ("127.77.5.0/24", "127.77.5"),  # the rolling apply's tests: a /24 of loopback per run
        ("127.0.0.0/8", "127.0.0"),
        ("1.0.0.0/24", "1.0.0"),  # next to 0.0.0.0/8
        ("126.255.255.0/24", "126.255.255"),  # next to loopback
        ("128.0.0.0/24", "128.0.0"),
        ("169.253.0.0/16", "169.253.0"),  # next to link-local
        ("169.255.0.0/24", "169.255.0"),
        ("100.64.0.0/10", "100.64.0"),  # carrier-grade NAT space
        ("223.255.255.0/24", "223.255.255"),  # the last unicast /24 below multicast
    ],
)
def test_usable_networks_are_valid(bad: BadInput, cidr: str, prefix: str) -> None:
    assert [a for a, _ in loads(bad, *in_network(cidr, prefix))] == [f"{prefix}.10", f"{prefix}.11"]


def test_loopback_test_cluster_synthesizes_without_warnings(bad: BadInput) -> None:
    cluster, _ = in_network("127.77.5.0/24", "127.77.5")
    nodes = nodes_with(
        node_text(0, address='"127.77.5.10"'), node_text(1, address='"127.77.5.11"', controller="false")
    )
    bad.write(cluster, nodes)
    outcome = bad.run()
    assert outcome.code == 0, outcome
    assert outcome.stdout.startswith("Synthesized stack 'proxmox': 2 nodes (1 controllers, 1 workers)")
    assert outcome.stderr == ""  # no warning either


def test_loopback_nodes_with_gateway_and_api_address_elsewhere(bad: BadInput) -> None:
    # as the task tests write it: the example's gateway and API address, loopback nodes
    cluster = cluster_with('node_cidr: "127.0.0.0/8"')
    nodes = nodes_with(node_text(0, address='"127.0.0.3"'), node_text(1, address='"127.0.0.4"'))
    assert [a for a, _ in loads(bad, cluster, nodes)] == ["127.0.0.3", "127.0.0.4"]


@pytest.mark.parametrize(
    ("lines", "addresses"),
    [
        # a /30 holds two hosts: two nodes and no gateway or API address in it
        (['node_cidr: "10.10.0.8/30"'], ["10.10.0.9", "10.10.0.10"]),
        # or one node and the gateway
        (['node_cidr: "10.10.0.8/30"', 'node_default_gateway: "10.10.0.9"'], ["10.10.0.10"]),
    ],
)
def test_a_30_network(bad: BadInput, lines: list[str], addresses: list[str]) -> None:
    keep = ("proxmox_", "cluster_svc_cidr")
    cluster = "".join(line for line in CLUSTER.splitlines(keepends=True) if line.startswith(keep))
    cluster += "".join(line + "\n" for line in lines)
    nodes = nodes_with(*(node_text(i, address=f'"{a}"') for i, a in enumerate(addresses)))
    assert [a for a, _ in loads(bad, cluster, nodes)] == addresses


# --- a control plane, and a network it can work on ---------------------------------------

NO_CONTROLLER = (
    "controller: false (expected at least one node with controller: true: "
    "Talos runs etcd and the Kubernetes API on the controllers)"
)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        (nodes_with(node_text(0, "w-0", controller="false")), "no controller: the node has " + NO_CONTROLLER),
        (
            nodes_with(node_text(0, controller="false"), node_text(1, controller="false")),
            "no controller: all 2 nodes have " + NO_CONTROLLER,
        ),
        (
            nodes_with(*(node_text(i, f"w-{i}", controller="false") for i in range(5))),
            "no controller: all 5 nodes have " + NO_CONTROLLER,
        ),
    ],
    ids=["one worker", "two workers", "five workers"],
)
def test_no_controller(bad: BadInput, nodes: str, expected: str) -> None:
    bad.write(CLUSTER, nodes)
    bad.reject(["{n}:1: nodes: " + expected])


def test_no_controller_with_other_problems(bad: BadInput) -> None:
    # infrastructure disabled changes nothing: nodes.yaml serves the Talos tooling too
    cluster = "".join(line for line in CLUSTER.splitlines(keepends=True) if not line.startswith("proxmox_"))
    bad.write(cluster, nodes_with(node_text(0, controller="false", mtu="1")))
    bad.reject(
        [
            "{n}:1: nodes: no controller: the node has " + NO_CONTROLLER,
            "{n}:9: nodes[0].mtu: 1 is out of range (expected an MTU 1450..9000)",
        ]
    )


def test_a_role_that_is_itself_an_error_is_not_also_no_controller(bad: BadInput) -> None:
    bad.write(CLUSTER, nodes_with(node_text(0, controller="false"), node_text(1, controller='"yes"')))
    bad.reject(["{n}:11: nodes[1].controller: 'yes' is not valid (expected true or false)"])


def test_one_controller_and_workers_is_a_cluster(bad: BadInput) -> None:
    nodes = nodes_with(node_text(0, controller="false"), node_text(1), node_text(2, controller="false"))
    assert len(loads(bad, CLUSTER, nodes)) == 3


TOO_SMALL = "(expected a network with room for the nodes and a gateway: a prefix of /30 or shorter)"


@pytest.mark.parametrize(
    ("cidr", "addresses", "room"),
    [
        ("10.10.0.10/31", ["10.10.0.10", "10.10.0.11"], "two addresses"),
        ("10.10.0.10/31", ["10.10.0.10"], "two addresses"),
        ("192.168.1.0/31", ["192.168.1.1"], "two addresses"),
        ("10.10.0.10/32", ["10.10.0.10"], "one address"),
        ("172.16.5.9/32", ["172.16.5.9"], "one address"),
    ],
)
def test_node_cidr_too_small(bad: BadInput, cidr: str, addresses: list[str], room: str) -> None:
    # without a gateway or API address: the network alone is the problem
    cluster = "".join(line for line in CLUSTER.splitlines(keepends=True) if line.startswith("proxmox_"))
    cluster += f'node_cidr: "{cidr}"\n'
    bad.write(cluster, nodes_with(*(node_text(i, address=f'"{a}"') for i, a in enumerate(addresses))))
    bad.reject([f"{{c}}:3: node_cidr: {cidr} holds {room} {TOO_SMALL}"])


GATEWAY_WHY = "the nodes reach their gateway on their own network"
VIP_WHY = "the controllers share this virtual IP on their own network"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'node_default_gateway: "10.10.1.1"',
            f"{{c}}:3: node_default_gateway: 10.10.1.1 is outside node_cidr (expected an address in 10.10.0.0/24: {GATEWAY_WHY})",
        ),
        (
            'node_default_gateway: "192.168.0.1"',
            f"{{c}}:3: node_default_gateway: 192.168.0.1 is outside node_cidr (expected an address in 10.10.0.0/24: {GATEWAY_WHY})",
        ),
        (
            'cluster_api_addr: "10.10.1.100"',
            f"{{c}}:2: cluster_api_addr: 10.10.1.100 is outside node_cidr (expected an address in 10.10.0.0/24: {VIP_WHY})",
        ),
        (
            'cluster_api_addr: "8.8.8.8"',
            f"{{c}}:2: cluster_api_addr: 8.8.8.8 is outside node_cidr (expected an address in 10.10.0.0/24: {VIP_WHY})",
        ),
    ],
)
def test_gateway_and_api_address_outside_node_cidr(bad: BadInput, line: str, expected: str) -> None:
    bad.write(cluster_with(line), NODES)
    bad.reject([expected])


def test_a_wrong_node_cidr_shows_everything_outside_it(bad: BadInput) -> None:
    # 10.10.1.0/24 written for 10.10.0.0/24: each address says where it was expected
    bad.write(cluster_with('node_cidr: "10.10.1.0/24"'), NODES)
    bad.reject(
        [
            f"{{c}}:2: cluster_api_addr: 10.10.0.100 is outside node_cidr (expected an address in 10.10.1.0/24: {VIP_WHY})",
            f"{{c}}:3: node_default_gateway: 10.10.0.1 is outside node_cidr (expected an address in 10.10.1.0/24: {GATEWAY_WHY})",
            "{n}:3: nodes[0].address: 10.10.0.10 is outside node_cidr (expected an address in 10.10.1.0/24)",
            "{n}:10: nodes[1].address: 10.10.0.11 is outside node_cidr (expected an address in 10.10.1.0/24)",
        ]
    )
