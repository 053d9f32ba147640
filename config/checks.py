"""Checks across keys and nodes that a per-field schema cannot express."""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from config.errors import Problem, show_key
from config.model import OWNER_TAG
from config.schema import OWN_PREFIXES, SECRET_KEYS, ClusterFile
from config.yaml_source import Ambiguous, YamlSource

# A node's valid fields by name: the validated NodeEntry's, or, for an entry with errors,
# those of its fields that are valid on their own (so checks across fields still run).
NodeView = Mapping[str, Any]


def cross_checks(
    cluster: ClusterFile,
    nodes: Sequence[NodeView],
    csrc: YamlSource,
    nsrc: YamlSource,
    cdisplay: str,
    ndisplay: str,
) -> list[Problem]:
    """Checks across keys and files. `cluster` holds the valid keys of cluster.yaml (an
    invalid key is left at its default) and `nodes` the valid fields of each node, so
    these run even when other keys have errors, and every problem shows up at once."""
    problems: list[Problem] = []
    raw = csrc.data if isinstance(csrc.data, dict) else {}
    url, node = raw.get("proxmox_api_url"), raw.get("proxmox_node")  # as written: set or not
    if (url is None) != (node is None):
        missing, present = (
            ("proxmox_node", "proxmox_api_url") if node is None else ("proxmox_api_url", "proxmox_node")
        )
        problems.append(
            Problem(
                cdisplay,
                csrc.line_of((present,)),
                missing,
                f"required key is missing (set it too, or remove {present} to keep infrastructure disabled)",
            )
        )
    raw_nodes = nsrc.data.get("nodes") if isinstance(nsrc.data, dict) else None
    if url is not None and node is not None and raw_nodes in (None, []):
        problems.append(
            Problem(
                ndisplay,
                nsrc.line_of(("nodes",)),
                "nodes",
                "no nodes (expected at least one node while infrastructure is enabled)",
            )
        )

    # The ISO file name keeps only 12 characters of the schematic: two schematics sharing
    # them would overwrite each other's ISO on the datastore.
    prefixes: dict[tuple[str, bool], str] = {}
    for i, n in enumerate(nodes):
        schematic = n.get("schematic_id")
        if schematic is None or "secureboot" not in n:
            continue
        key = (schematic[:12], n["secureboot"])
        if prefixes.setdefault(key, schematic) != schematic:
            problems.append(
                Problem(
                    ndisplay,
                    nsrc.line_of(("nodes", i, "schematic_id")),
                    f"nodes[{i}].schematic_id",
                    f"shares its first 12 characters with {prefixes[key]} (expected schematics "
                    "that differ in the first 12 characters: the ISO file name uses only those)",
                )
            )

    for i, n in enumerate(nodes):
        address = n.get("address")
        if address is None:
            continue
        what = _address_problem(address, cluster)
        if what:
            problems.append(
                Problem(ndisplay, nsrc.line_of(("nodes", i, "address")), f"nodes[{i}].address", what)
            )
        mac = n.get("mac_addr")
        what = _mac_problem(mac) if mac is not None else None
        if what:
            problems.append(
                Problem(ndisplay, nsrc.line_of(("nodes", i, "mac_addr")), f"nodes[{i}].mac_addr", what)
            )
    problems += _network_problems(cluster, csrc, cdisplay)
    problems += _role_problems(nodes, nsrc, ndisplay)
    problems += _tag_problems(raw, csrc, cdisplay)
    return problems


def _tag_problems(raw: Mapping[str, Any], csrc: YamlSource, cdisplay: str) -> list[Problem]:
    """Tags the stack adds itself: the role, and the ownership mark, which must mean "made
    by this stack" and nothing else."""
    advanced = raw.get("proxmox_vm_advanced")
    tags = advanced.get("tags") if isinstance(advanced, dict) else None
    out = []
    for i, tag in enumerate(tags if isinstance(tags, list) else []):
        if isinstance(tag, str) and tag.lower() == OWNER_TAG:
            out.append(
                Problem(
                    cdisplay,
                    csrc.line_of(("proxmox_vm_advanced", "tags", i)),
                    f"proxmox_vm_advanced.tags[{i}]",
                    f"'{tag}' is the tag the stack adds to every VM it makes, to tell them from the "
                    "other VMs on the Proxmox (expected your own tags only: remove it)",
                )
            )
    return out


# Addresses no host on a LAN can use: (block, what an address in it is, what a network
# overlapping it holds, what was expected). An address gets the first that applies.
# Loopback is the exception (_LOOPBACK): a test cluster whose node_cidr is in 127.0.0.0/8
# (the fake nodes of the rolling apply's tests and benches) runs on this machine alone.
_LOOPBACK = IPv4Network("127.0.0.0/8")
_NOT_FOR_HOSTS: tuple[tuple[IPv4Network, str, str, str], ...] = (
    (
        IPv4Network("0.0.0.0/8"),
        'an unspecified ("this network") address',
        'unspecified ("this network") addresses',
        "a host address, outside 0.0.0.0/8",
    ),
    (
        _LOOPBACK,
        "a loopback address",
        "loopback addresses",
        "an address on the LAN: loopback only in a test cluster whose node_cidr is in 127.0.0.0/8",
    ),
    (
        IPv4Network("169.254.0.0/16"),
        "a link-local address",
        "link-local addresses",
        "a routable address, outside 169.254.0.0/16",
    ),
    (
        IPv4Network("224.0.0.0/4"),
        "a multicast address",
        "multicast addresses",
        "a unicast address, outside 224.0.0.0/4",
    ),
    (
        IPv4Network("255.255.255.255/32"),
        "the limited broadcast address",
        "the limited broadcast address",
        "a host address",
    ),
    (
        IPv4Network("240.0.0.0/4"),
        "a reserved (class E) address",
        "reserved (class E) addresses",
        "a host address, outside 240.0.0.0/4",
    ),
)
# The addresses of cluster.yaml that hosts on node_cidr use besides the nodes' own, and
# why each belongs in it.
CLUSTER_ADDRESS_KEYS: dict[str, str] = {
    "node_default_gateway": "the nodes reach their gateway on their own network",
    "cluster_api_addr": "the controllers share this virtual IP on their own network",
}


def _loopback_cluster(cluster: ClusterFile) -> bool:
    return cluster.node_cidr is not None and cluster.node_cidr.subnet_of(_LOOPBACK)


def _class_problem(address: IPv4Address, cluster: ClusterFile) -> str | None:
    """An address of a kind no LAN host can use, whatever the cluster's network."""
    for block, what, _, expected in _NOT_FOR_HOSTS:
        if address in block and not (block is _LOOPBACK and _loopback_cluster(cluster)):
            return f"{address} is {what} (expected {expected})"
    return None


def _host_problem(address: IPv4Address, net: IPv4Network) -> str | None:
    if net.prefixlen <= 30 and address in (net.network_address, net.broadcast_address):
        which = "network" if address == net.network_address else "broadcast"
        return f"{address} is the {which} address of node_cidr {net} (expected a host address)"
    return None


def _address_problem(address: IPv4Address, cluster: ClusterFile) -> str | None:
    """What is wrong with a node address given the cluster's network, if anything."""
    what = _class_problem(address, cluster)
    if what:
        return what
    net = cluster.node_cidr
    if net is not None and address not in net:
        return f"{address} is outside node_cidr (expected an address in {net})"
    if net is not None and (what := _host_problem(address, net)):
        return what
    for key in CLUSTER_ADDRESS_KEYS:
        if getattr(cluster, key) == address:
            return f"{address} is also {key} (expected an address of the node's own)"
    return None


def _network_problems(cluster: ClusterFile, csrc: YamlSource, cdisplay: str) -> list[Problem]:
    """node_cidr, the gateway and the API address: each usable on a LAN, and in place."""
    problems = []
    net = cluster.node_cidr
    if net is not None:
        what = _cidr_problem(net)
        if what:
            problems.append(Problem(cdisplay, csrc.line_of(("node_cidr",)), "node_cidr", what))
    for key, why in CLUSTER_ADDRESS_KEYS.items():
        address = getattr(cluster, key)
        if address is None:
            continue
        what = _class_problem(address, cluster)
        # A test cluster on loopback reaches no gateway and needs no VIP: anything goes.
        if what is None and net is not None and not _loopback_cluster(cluster) and address not in net:
            what = f"{address} is outside node_cidr (expected an address in {net}: {why})"
        if what is None and net is not None:
            what = _host_problem(address, net)
        if what is None and key == "cluster_api_addr" and address == cluster.node_default_gateway:
            what = f"{address} is also node_default_gateway (expected an address of its own)"
        if what:
            problems.append(Problem(cdisplay, csrc.line_of((key,)), key, what))
    return problems


def _cidr_problem(net: IPv4Network) -> str | None:
    """A node network that no LAN can use, or too small for nodes and a gateway."""
    for block, _, held, _ in _NOT_FOR_HOSTS:
        if block.prefixlen == 32 or not net.overlaps(block):
            continue  # (the limited broadcast address is also in 240.0.0.0/4)
        if block is _LOOPBACK and net.subnet_of(block):
            return None  # a test cluster on this machine
        where = "is in" if net.subnet_of(block) else "includes"
        return f"{net} {where} {block}, {held} (expected a LAN network such as '10.0.0.0/24')"
    if net.prefixlen >= 31:
        room = "one address" if net.prefixlen == 32 else "two addresses"
        return (
            f"{net} holds {room} (expected a network with room for the nodes and a gateway: "
            "a prefix of /30 or shorter)"
        )
    return None


def _mac_problem(mac: str) -> str | None:
    """A MAC address that cannot be a NIC's own (mac_addr matched MAC_RE: lower-case)."""
    if mac == "ff:ff:ff:ff:ff:ff":
        return f"{mac} is the broadcast MAC address (expected a unicast MAC: the first octet's lowest bit 0)"
    if int(mac[:2], 16) & 1:
        return f"{mac} is a multicast MAC address (expected a unicast MAC: the first octet's lowest bit 0)"
    if mac == "00:00:00:00:00:00":
        return f"{mac} is the all-zero MAC address (expected a MAC of the VM's own, not all zeros)"
    return None


def _role_problems(nodes: Sequence[NodeView], nsrc: YamlSource, ndisplay: str) -> list[Problem]:
    """Talos needs a control plane: etcd and the Kubernetes API run on the controllers.
    None is an error; an even number of them a warning (config/placement.py)."""
    roles = [n.get("controller") for n in nodes]
    if not roles or None in roles or any(roles):
        return []  # no nodes, or a node whose role is itself an error
    which = "the node has" if len(roles) == 1 else f"all {len(roles)} nodes have"
    return [
        Problem(
            ndisplay,
            nsrc.line_of(("nodes",)),
            "nodes",
            f"no controller: {which} controller: false (expected at least one node with "
            "controller: true: Talos runs etcd and the Kubernetes API on the controllers)",
        )
    ]


def mixed_up_files(csrc: YamlSource, nsrc: YamlSource, cdisplay: str, ndisplay: str) -> Problem | None:
    """cluster.yaml and nodes.yaml swapped (or one passed for both): one line with a hint,
    instead of an empty node list and a silent "infrastructure disabled"."""
    own = set(ClusterFile.model_fields)
    cdata = csrc.data if isinstance(csrc.data, dict) else {}
    ndata = nsrc.data if isinstance(nsrc.data, dict) else {}
    cluster_is_nodes = "nodes" in cdata and not own.intersection(cdata)
    nodes_is_cluster = "nodes" not in ndata and bool(own.intersection(ndata))
    if cluster_is_nodes and nodes_is_cluster:
        return Problem(
            cdisplay,
            None,
            "",
            f"holds the node list and {ndisplay} the cluster keys: the two files are swapped "
            "(expected CLUSTER_CONFIG=cluster.yaml and NODES_CONFIG=nodes.yaml)",
        )
    if cluster_is_nodes:
        return Problem(
            cdisplay,
            csrc.line_of(("nodes",)),
            "nodes",
            "a node list in the cluster file "
            "(expected cluster.yaml here; is this nodes.yaml? check CLUSTER_CONFIG)",
        )
    if nodes_is_cluster:
        keys = ", ".join(sorted(own.intersection(ndata))[:3])
        return Problem(
            ndisplay,
            None,
            "",
            f"has cluster keys ({keys}) and no 'nodes:' list "
            "(expected nodes.yaml here; is this cluster.yaml? check NODES_CONFIG)",
        )
    return None


def secret_problems(csrc: YamlSource, cdisplay: str) -> list[Problem]:
    """A secret must be read as non-empty text. What YAML made of it instead is named,
    the value never (a YAML number, `null`, or `&x` (an anchor) left as an empty value)."""
    raw = csrc.data if isinstance(csrc.data, dict) else {}
    problems = []
    for key in SECRET_KEYS:
        if key not in raw or (isinstance(raw[key], str) and raw[key]):
            continue
        value = raw[key]
        if value is None:
            what = (
                "has no value as YAML reads it (an unquoted &, *, !, # or | starts YAML syntax; "
                "expected the secret in double quotes, or remove the key)"
            )
        elif value == "":
            what = "is empty (expected the secret in double quotes, or remove the key)"
        else:
            kind = _kind(value)
            what = (
                f"YAML reads this value as {kind}, not as text "
                "(expected the secret in double quotes; value not shown)"
            )
        problems.append(Problem(cdisplay, csrc.line_of((key,)), key, what))
    return problems


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, Ambiguous):
        return "a number or true/false (in YAML 1.1 or 1.2)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "something other than text"


def prefix_warnings(csrc: YamlSource, cdisplay: str) -> list[Problem]:
    """Unknown keys with our prefixes: likely typos, but other tools may own some."""
    if not isinstance(csrc.data, dict):
        return []
    known = sorted(ClusterFile.model_fields)
    warnings = []
    for key in csrc.data:
        if isinstance(key, str) and key.startswith(OWN_PREFIXES) and key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            hint = f"did you mean '{close[0]}'?" if close else "not used by this app"
            line = csrc.line_of((key,))
            warnings.append(Problem(cdisplay, line, show_key(key), f"warning: unknown key ({hint})"))
    return warnings


# (key, what it is called, how values compare): MACs compare case-insensitively.
UNIQUE_KEYS: tuple[tuple[str, str, Any], ...] = (
    ("name", "name", lambda v: v),
    ("mac_addr", "MAC address", lambda v: v.lower() if isinstance(v, str) else v),
    ("address", "address", lambda v: v),
    ("vm_id", "vm_id", lambda v: v),
)


def uniqueness(nsrc: YamlSource, ndisplay: str) -> list[Problem]:
    """Duplicate names, MACs, addresses and VM ids, on the YAML as written: this runs even
    when other keys of the same nodes are invalid, so all problems show up at once."""
    data = nsrc.data.get("nodes") if isinstance(nsrc.data, dict) else None
    if not isinstance(data, list):
        return []
    problems = []
    for key, what, norm in UNIQUE_KEYS:
        first: dict[Hashable, int] = {}
        for i, entry in enumerate(data):
            value = entry.get(key) if isinstance(entry, dict) else None
            if value is None or not isinstance(value, str | int) or isinstance(value, bool):
                continue
            if norm(value) in first:
                problems.append(
                    Problem(
                        ndisplay,
                        nsrc.line_of(("nodes", i, key)),
                        f"nodes[{i}].{key}",
                        f"duplicate {what} {show_key(value)} "
                        f"(expected unique; also used by nodes[{first[norm(value)]}])",
                    )
                )
            else:
                first[norm(value)] = i
    return problems
