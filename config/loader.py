"""cluster.yaml + nodes.yaml -> a validated, fully resolved InfraConfig."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from config.checks import cross_checks, prefix_warnings, uniqueness
from config.defaults import resolve_sizing, resolve_startup
from config.errors import ConfigError, Problem
from config.messages import problems_from
from config.model import InfraConfig, IsoSpec, ProxmoxSpec, StateBackendSpec, VmSpec
from config.placement import hosts_configured, place, placement_problems, placement_warnings
from config.schema import ClusterFile, NodesFile
from config.yaml_source import YamlSource, load_yaml

API_SUFFIX = "/api2/json"
LOCAL_STATE_DIR = ".state"


@dataclass(frozen=True)
class ConfigPaths:
    cluster: Path
    nodes: Path

    @classmethod
    def from_env(cls) -> ConfigPaths:
        return cls(
            Path(os.environ.get("CLUSTER_CONFIG") or "cluster.yaml"),
            Path(os.environ.get("NODES_CONFIG") or "nodes.yaml"),
        )


@dataclass
class LoadResult:
    config: InfraConfig
    warnings: list[Problem] = field(default_factory=list)


def _display(path: Path) -> str:
    # Messages name the file as the operator wrote it (relative stays relative).
    return str(path)


def _validate(
    model: type[BaseModel], src: YamlSource, display: str
) -> tuple[BaseModel | None, list[Problem]]:
    data = {} if src.data is None else src.data
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from(exc, model, src, display)


def endpoint_from(api_url: str) -> str:
    """The bpg provider wants the base URL; operators copy the API URL with /api2/json."""
    base = api_url.rstrip("/")
    if base.endswith(API_SUFFIX):
        base = base[: -len(API_SUFFIX)]
    return base.rstrip("/")


def backend_from(cluster: ClusterFile, cluster_path: Path) -> StateBackendSpec:
    name = cluster.tfstate_state_name
    base = cluster.tfstate_url
    if base is None and cluster.cloudflare_domain:
        base = f"https://tfstate.{cluster.cloudflare_domain}"
    if base is not None:
        return StateBackendSpec(name, http_address=f"{base.rstrip('/')}/states/{name}")
    local = cluster_path.resolve().parent / LOCAL_STATE_DIR / f"{name}.tfstate"
    return StateBackendSpec(name, local_path=local)


def load_config(paths: ConfigPaths | None = None) -> LoadResult:
    """Read and validate both files; raise ConfigError listing every problem found."""
    paths = paths or ConfigPaths.from_env()
    cdisplay, ndisplay = _display(paths.cluster), _display(paths.nodes)
    csrc, cproblems = load_yaml(paths.cluster, cdisplay)
    nsrc, nproblems = load_yaml(paths.nodes, ndisplay)
    problems = cproblems + nproblems
    cluster = nodes = None
    if csrc is not None:
        cluster, found = _validate(ClusterFile, csrc, cdisplay)
        problems += found
    if nsrc is not None:
        nodes, found = _validate(NodesFile, nsrc, ndisplay)
        problems += found + uniqueness(nsrc, ndisplay)
    if isinstance(cluster, ClusterFile) and isinstance(nodes, NodesFile):
        assert csrc is not None and nsrc is not None
        problems += cross_checks(cluster, nodes, csrc, nsrc, cdisplay, ndisplay)
        problems += placement_problems(cluster, nodes.nodes, csrc, nsrc, cdisplay, ndisplay)
    if problems:
        raise ConfigError(problems)
    assert isinstance(cluster, ClusterFile) and isinstance(nodes, NodesFile) and csrc and nsrc
    config = _resolve(cluster, nodes, paths.cluster)
    warnings = prefix_warnings(csrc, cdisplay)
    warnings += placement_warnings(cluster, config.vms, csrc, nsrc, cdisplay, ndisplay)
    return LoadResult(config, warnings)


def _resolve(cluster: ClusterFile, nodes: NodesFile, cluster_path: Path) -> InfraConfig:
    proxmox = None
    if cluster.proxmox_api_url and cluster.proxmox_node:
        proxmox = ProxmoxSpec(
            endpoint=endpoint_from(cluster.proxmox_api_url),
            node=cluster.proxmox_node,
            insecure=cluster.proxmox_insecure,
            iso_storage=cluster.proxmox_iso_storage,
            disk_storage=cluster.proxmox_disk_storage,
            multi_host=hosts_configured(cluster, nodes.nodes),
            iso_storage_shared=cluster.proxmox_iso_storage_shared,
        )
    vms: list[VmSpec] = []
    isos: dict[str, IsoSpec] = {}
    if proxmox is not None:
        hosts = place(cluster, nodes.nodes)
        for position, (node, host) in enumerate(zip(nodes.nodes, hosts, strict=True), start=1):
            # One download per (host, schematic, secureboot): a VM boots only an ISO its own
            # host has. A shared datastore holds one copy for all, downloaded on proxmox_node.
            iso_host = proxmox.node if proxmox.iso_storage_shared else host
            iso = IsoSpec(
                node.schematic_id, node.secureboot, cluster.talos_version, iso_host, iso_host != proxmox.node
            )
            iso = isos.setdefault(iso.key, iso)
            sizing = resolve_sizing(node, cluster)
            order, up, down = resolve_startup(node, position)
            vms.append(
                VmSpec(
                    name=node.name,
                    address=str(node.address),
                    controller=node.controller,
                    vm_id=node.vm_id,
                    startup_order=order,
                    startup_delay=up,
                    shutdown_delay=down,
                    mac_address=node.mac_addr.upper(),
                    mtu=node.mtu,
                    iso=iso,
                    host=host,
                    disk_storage=node.proxmox_disk_storage or cluster.proxmox_disk_storage,
                    **sizing,
                )
            )
    return InfraConfig(
        cluster=cluster,
        backend=backend_from(cluster, cluster_path),
        proxmox=proxmox,
        advanced=cluster.proxmox_vm_advanced,
        vlan_id=cluster.node_vlan_tag,
        vms=tuple(vms),
        isos=tuple(sorted(isos.values(), key=lambda iso: iso.key)),
    )
