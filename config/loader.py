"""cluster.yaml + nodes.yaml -> a validated, fully resolved InfraConfig."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from config.checks import (
    NodeView,
    cross_checks,
    mixed_up_files,
    prefix_warnings,
    secret_problems,
    uniqueness,
)
from config.defaults import resolve_sizing, resolve_startup
from config.errors import ConfigError, Problem
from config.messages import problems_from
from config.migration_notice import migration_warnings
from config.model import InfraConfig, IsoSpec, ProxmoxSpec, StateBackendSpec, VmSpec
from config.placement import hosts_configured, place, placement_problems, placement_warnings
from config.schema import SECRET_KEYS, ClusterFile, NodeEntry, NodesFile
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


@dataclass(frozen=True)
class KeyLocator:
    """Where a key was written, for messages about the config that come later (the
    workflow's preflight): `nodes.yaml line 12 (nodes[0].vm_id)`."""

    cluster: YamlSource
    nodes: YamlSource
    cluster_display: str
    nodes_display: str

    def cluster_key(self, key: str) -> str:
        return f"{self.cluster_display} line {self.cluster.line_of((key,))} ({key})"

    def node_has(self, name: str, key: str) -> bool:
        entries = self.nodes.data.get("nodes") if isinstance(self.nodes.data, dict) else None
        return any(
            isinstance(e, dict) and e.get("name") == name and key in e
            for e in (entries if isinstance(entries, list) else [])
        )

    def node_key(self, name: str, key: str) -> str:
        entries = self.nodes.data.get("nodes") if isinstance(self.nodes.data, dict) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and entry.get("name") == name:
                loc = ("nodes", i, key) if key in entry else ("nodes", i)
                return f"{self.nodes_display} line {self.nodes.line_of(loc)} (nodes[{i}].{key})"
        return f"{self.nodes_display} (node {name})"


@dataclass
class LoadResult:
    config: InfraConfig
    warnings: list[Problem] = field(default_factory=list)
    where: KeyLocator | None = None


def _display(path: Path) -> str:
    # Messages name the file as the operator wrote it (relative stays relative).
    return str(path)


def _validate(
    model: type[BaseModel], src: YamlSource, display: str
) -> tuple[BaseModel | None, list[Problem], ValidationError | None]:
    data = {} if src.data is None else src.data
    try:
        return model.model_validate(data), [], None
    except ValidationError as exc:
        return None, problems_from(exc, model, src, display), exc


def _valid_cluster_keys(src: YamlSource, exc: ValidationError) -> ClusterFile:
    """cluster.yaml without its invalid keys (every key has a default), for the checks
    across keys and files."""
    data = src.data if isinstance(src.data, dict) else {}
    bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
    try:
        return ClusterFile.model_validate({k: v for k, v in data.items() if k not in bad})
    except ValidationError:
        return ClusterFile()


@functools.cache
def _field_adapter(name: str) -> TypeAdapter[Any]:
    info = NodeEntry.model_fields[name]
    annotated: Any = Annotated[info.annotation, info]  # a type built at run time
    return TypeAdapter(annotated, config=ConfigDict(strict=True))


def _node_views(src: YamlSource, nodes: NodesFile | None) -> list[NodeView]:
    """Each node's valid fields by name; for an entry with errors, the fields that are
    valid on their own (a node with a bad `mtu` is still checked against node_cidr)."""
    if nodes is not None:
        return [dict(n) for n in nodes.nodes]
    entries = src.data.get("nodes") if isinstance(src.data, dict) else None
    views: list[NodeView] = []
    for entry in entries if isinstance(entries, list) else []:
        view: dict[str, Any] = {}
        for key, value in entry.items() if isinstance(entry, dict) else ():
            if key in NodeEntry.model_fields:
                with contextlib.suppress(ValidationError):
                    view[key] = _field_adapter(key).validate_python(value)
        if isinstance(entry, dict) and "secureboot" not in entry:
            view["secureboot"] = NodeEntry.model_fields["secureboot"].default
        views.append(view)
    return views


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
    if _same_file(paths):
        raise ConfigError(
            [
                Problem(
                    ndisplay,
                    None,
                    "",
                    f"is the same file as the cluster file {cdisplay} (expected two files: "
                    "CLUSTER_CONFIG=cluster.yaml and NODES_CONFIG=nodes.yaml)",
                )
            ]
        )
    csrc, cproblems = load_yaml(paths.cluster, cdisplay, SECRET_KEYS)
    nsrc, nproblems = load_yaml(paths.nodes, ndisplay)
    problems = cproblems + nproblems
    if csrc is not None and nsrc is not None:
        mixed = mixed_up_files(csrc, nsrc, cdisplay, ndisplay)
        if mixed is not None:
            raise ConfigError([mixed])  # every other message would follow from it
    cluster = nodes = None
    if csrc is not None:
        cluster, found, cexc = _validate(ClusterFile, csrc, cdisplay)
        problems += found + secret_problems(csrc, cdisplay)
    if nsrc is not None:
        nodes, found, _ = _validate(NodesFile, nsrc, ndisplay)
        problems += found + uniqueness(nsrc, ndisplay)
    if csrc is not None and nsrc is not None:
        partial = cluster if isinstance(cluster, ClusterFile) else None
        if partial is None:
            assert cexc is not None
            partial = _valid_cluster_keys(csrc, cexc)
        views = _node_views(nsrc, nodes if isinstance(nodes, NodesFile) else None)
        problems += cross_checks(partial, views, csrc, nsrc, cdisplay, ndisplay)
        problems += placement_problems(partial, views, csrc, nsrc, cdisplay, ndisplay)
    if problems:
        raise ConfigError(problems)
    assert isinstance(cluster, ClusterFile) and isinstance(nodes, NodesFile) and csrc and nsrc
    config = _resolve(cluster, nodes, paths.cluster)
    warnings = prefix_warnings(csrc, cdisplay)
    warnings += placement_warnings(cluster, config.vms, csrc, nsrc, cdisplay, ndisplay)
    warnings += migration_warnings(cluster, nodes, csrc, cdisplay)
    return LoadResult(config, warnings, KeyLocator(csrc, nsrc, cdisplay, ndisplay))


def _same_file(paths: ConfigPaths) -> bool:
    try:
        return paths.cluster.samefile(paths.nodes)
    except OSError:
        return False


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
