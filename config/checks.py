"""Checks across keys and nodes that a per-field schema cannot express."""

from __future__ import annotations

import difflib
from collections.abc import Hashable
from typing import Any

from config.errors import Problem
from config.schema import OWN_PREFIXES, ClusterFile, NodesFile
from config.yaml_source import YamlSource


def cross_checks(
    cluster: ClusterFile,
    nodes: NodesFile,
    csrc: YamlSource,
    nsrc: YamlSource,
    cdisplay: str,
    ndisplay: str,
) -> list[Problem]:
    problems: list[Problem] = []
    url, node = cluster.proxmox_api_url, cluster.proxmox_node
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
    if url is not None and node is not None and not nodes.nodes:
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
    for i, n in enumerate(nodes.nodes):
        key = (n.schematic_id[:12], n.secureboot)
        if prefixes.setdefault(key, n.schematic_id) != n.schematic_id:
            problems.append(
                Problem(
                    ndisplay,
                    nsrc.line_of(("nodes", i, "schematic_id")),
                    f"nodes[{i}].schematic_id",
                    f"shares its first 12 characters with {prefixes[key]} (expected schematics "
                    "that differ in the first 12 characters: the ISO file name uses only those)",
                )
            )

    if cluster.node_cidr is not None:
        for i, n in enumerate(nodes.nodes):
            if n.address not in cluster.node_cidr:
                problems.append(
                    Problem(
                        ndisplay,
                        nsrc.line_of(("nodes", i, "address")),
                        f"nodes[{i}].address",
                        f"{n.address} is outside node_cidr (expected an address in {cluster.node_cidr})",
                    )
                )
    return problems


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
            warnings.append(Problem(cdisplay, csrc.line_of((key,)), key, f"warning: unknown key ({hint})"))
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
                        f"duplicate {what} {value} "
                        f"(expected unique; also used by nodes[{first[norm(value)]}])",
                    )
                )
            else:
                first[norm(value)] = i
    return problems
