"""Which Proxmox host runs each VM, the checks of the placement keys, and the warnings
about a control plane that one host failure could take down.

The rule (docs/multi-host.md): a node with its own
`proxmox_node` runs there. Otherwise, with `proxmox_nodes` set, the k-th node of its
role in nodes.yaml (k counted from 0 over all nodes of that role, pinned ones included)
runs on `proxmox_nodes[k mod len(proxmox_nodes)]`; without the list, on `proxmox_node`.
A node's host depends only on the list and on the entries of its role above it, so
appending a node never moves an existing VM, and pinning a node to the host it already
runs on moves nothing else.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from config.checks import NodeView
from config.errors import Problem
from config.model import VmSpec
from config.schema import ClusterFile, NodeEntry
from config.yaml_source import YamlSource


def hosts_configured(cluster: ClusterFile, nodes: Sequence[NodeEntry]) -> bool:
    """True once any placement key is used: the output then names hosts and VMs migrate.
    Without them the output is exactly what a single-host configuration always gave."""
    return cluster.proxmox_nodes is not None or any(n.proxmox_node is not None for n in nodes)


def place(cluster: ClusterFile, nodes: Sequence[NodeEntry]) -> list[str]:
    """The host of each node, in nodes.yaml order (the rule in the module docstring)."""
    hosts = cluster.proxmox_nodes
    seen = {True: 0, False: 0}  # nodes of each role so far
    placed = []
    for node in nodes:
        index = seen[node.controller]
        seen[node.controller] += 1
        if node.proxmox_node is not None:
            placed.append(node.proxmox_node)
        elif hosts:
            placed.append(hosts[index % len(hosts)])
        else:
            placed.append(cluster.proxmox_node or "")
    return placed


def placement_problems(
    cluster: ClusterFile,
    nodes: Sequence[NodeView],
    csrc: YamlSource,
    nsrc: YamlSource,
    cdisplay: str,
    ndisplay: str,
) -> list[Problem]:
    """A host listed twice; a node's proxmox_node that is not in proxmox_nodes."""
    problems = []
    hosts = cluster.proxmox_nodes or []
    first: dict[str, int] = {}
    for i, host in enumerate(hosts):
        if host in first:
            problems.append(
                Problem(
                    cdisplay,
                    csrc.line_of(("proxmox_nodes", i)),
                    f"proxmox_nodes[{i}]",
                    f"duplicate host {host} (expected each host once; also proxmox_nodes[{first[host]}])",
                )
            )
        first.setdefault(host, i)
    if not hosts:
        return problems
    for i, node in enumerate(nodes):
        pinned = node.get("proxmox_node")
        if pinned is None or pinned in first:
            continue
        close = difflib.get_close_matches(pinned, list(first), n=1, cutoff=0.8)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(hosts)}"
        problems.append(
            Problem(
                ndisplay,
                nsrc.line_of(("nodes", i, "proxmox_node")),
                f"nodes[{i}].proxmox_node",
                f"{pinned!r} is not in proxmox_nodes ({hint})",
            )
        )
    return problems


def _names(vms: Sequence[VmSpec]) -> str:
    return ", ".join(vm.name for vm in vms)


def placement_warnings(
    cluster: ClusterFile,
    vms: Sequence[VmSpec],
    csrc: YamlSource,
    nsrc: YamlSource,
    cdisplay: str,
    ndisplay: str,
) -> list[Problem]:
    """Control-plane layouts that survive fewer failures than the operator may think.
    Warnings, not errors: a lab may mean it (and the single-host default has no choice)."""
    controllers = [vm for vm in vms if vm.controller]
    if not controllers:
        return []
    warnings = []
    nodes_line = nsrc.line_of(("nodes",))
    listed = cluster.proxmox_nodes or []
    on: dict[str, list[VmSpec]] = {}
    for vm in controllers:
        on.setdefault(vm.host, []).append(vm)
    all_on_one = len(set(listed)) > 1 and len(on) == 1
    if all_on_one:
        (host,) = on
        warnings.append(
            Problem(
                cdisplay,
                csrc.line_of(("proxmox_nodes",)),
                "proxmox_nodes",
                f"warning: every controller ({_names(controllers)}) runs on {host} although "
                f"proxmox_nodes lists {', '.join(listed)}: losing {host} stops the control plane "
                "(expected controllers spread over the hosts)",
            )
        )
    elif len({vm.host for vm in vms}) > 1:
        for host, here in sorted(on.items()):
            if 2 * len(here) >= len(controllers):
                warnings.append(
                    Problem(
                        ndisplay,
                        nodes_line,
                        "nodes",
                        f"warning: {host} runs {len(here)} of {len(controllers)} controllers "
                        f"({_names(here)}): losing {host} loses etcd quorum "
                        "(expected fewer than half of the controllers on any one host)",
                    )
                )
    if len(controllers) % 2 == 0:
        warnings.append(
            Problem(
                ndisplay,
                nodes_line,
                "nodes",
                f"warning: {len(controllers)} controllers ({_names(controllers)}) are an even number: "
                f"etcd survives no more failures than with {len(controllers) - 1} "
                "(expected an odd number of controllers)",
            )
        )
    return warnings
