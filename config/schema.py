"""The keys this app owns in cluster.yaml and nodes.yaml, as pydantic models.

`cluster.yaml` is shared with the rest of the cluster's tooling, so unknown top-level
keys are ignored; inside our own mappings (VM defaults, advanced settings, node entries)
unknown keys are errors, so that a typo cannot silently fall back to a default.
Each field's `expected` text is what an error message says was expected.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

NAME_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MAC_RE = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"
SCHEMATIC_RE = r"^[0-9a-f]{64}$"
STATE_NAME_RE = r"^[A-Za-z0-9._-]+$"
TOKEN_ID_RE = r"^[^@!\s]+@[^@!\s]+![^@!\s=]+$"
HOSTNAME_RE = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
# Every pattern spells out ASCII ranges: `\d` would also take Arabic-Indic or superscript digits.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"({_LABEL}(\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
# A host is required; no user:password@ (credentials come from the environment); the path
# takes URL characters only, so no `${` or `%{` (tofu templates) can reach the output.
URL_RE = rf"^https?://{_HOST}(:[0-9]{{1,5}})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
# Proxmox's own formats for node names, storage ids and bridges (pve-node, pve-storage-id,
# pve-bridge-id), which also keep tofu template syntax out of the generated JSON.
PVE_NODE_RE = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
STORAGE_RE = r"^[a-z]([a-z0-9._-]*[a-z0-9])?$"
BRIDGE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"
MACHINE_RE = r"^[a-z0-9][a-z0-9._+,=-]*$"
CPU_TYPE_RE = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
OSTYPE_RE = r"^(other|wxp|w2k|w2k3|w2k8|wvista|win7|win8|win10|win11|l24|l26|solaris)$"
VERSION_RE = r"^[0-9]+\.[0-9]+\.[0-9]+$"
# The state server's limit (tfstate_server/names.py); far below every filesystem's 255.
MAX_STATE_NAME = 128

# Keys whose values are never shown, not even in an error about themselves.
SECRET_KEYS = ("tfstate_password", "proxmox_api_token_secret", "tfstate_client_key")


def expect(text: str, **kwargs: Any) -> Any:
    """A Field whose error messages say `(expected <text>)`."""
    return Field(json_schema_extra={"expected": text}, **kwargs)


def _vlan(value: Any) -> Any:
    # The template layout writes the VLAN as a YAML string ("7"); accept both forms.
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,4}", value.strip()):
        return int(value.strip())
    return value


def _version(value: Any) -> Any:
    return value[1:] if isinstance(value, str) and value.startswith("v") else value


def _ipv4(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Address(value)
        except ValueError:
            pass
    return value


def _ipv4_net(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            pass
    return value


PositiveInt = Annotated[int, Field(strict=True, gt=0)]
PveHost = Annotated[str, Field(pattern=PVE_NODE_RE)]
IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_ipv4)]
IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_ipv4_net)]


class Strict(BaseModel):
    """Our own mappings: no unknown keys, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class VmSizing(Strict):
    """`proxmox_vm_defaults` and the role defaults: each key may be given alone."""

    cores: PositiveInt | None = expect("a whole number of CPU cores > 0", default=None)
    sockets: PositiveInt | None = expect("a whole number of CPU sockets > 0", default=None)
    memory: PositiveInt | None = expect("memory in MB, a whole number > 0", default=None)
    disk_size: PositiveInt | None = expect("disk size in GB, a whole number > 0", default=None)


class VmAdvanced(Strict):
    """`proxmox_vm_advanced`: hardware settings shared by every VM."""

    bios: str = expect("'ovmf' or 'seabios'", default="ovmf", pattern=r"^(ovmf|seabios)$")
    machine: str = expect("a QEMU machine type such as 'q35'", default="q35", pattern=MACHINE_RE)
    cpu_type: str = expect("a CPU type such as 'host'", default="host", pattern=CPU_TYPE_RE)
    scsi_hw: str = expect(
        "a SCSI controller such as 'virtio-scsi-pci'",
        default="virtio-scsi-pci",
        pattern=r"^(lsi|lsi53c810|virtio-scsi-pci|virtio-scsi-single|megasas|pvscsi)$",
    )
    balloon: int = expect("minimum balloon memory in MB, 0 = off", default=0, ge=0)
    numa: bool = expect("true or false", default=True)
    qemu_agent: bool = expect("true or false", default=True)
    net_queues: int = expect("a number of NIC queues 0..64", default=4, ge=0, le=64)
    disk_discard: bool = expect("true or false", default=True)
    disk_ssd: bool = expect("true or false", default=True)
    tags: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.+-]*$")]] = expect(
        "a list of lower-case tags", default=["kubernetes", "linux", "talos"]
    )
    network_bridge: str = expect(
        "a bridge name such as 'vmbr0' (up to 15 letters, digits, '_', '.', '-')",
        default="vmbr0",
        pattern=BRIDGE_RE,
    )
    ostype: str = expect("a Proxmox OS type such as 'l26'", default="l26", pattern=OSTYPE_RE)
    disk_backup: bool = expect("true or false", default=False)
    disk_replicate: bool = expect("true or false", default=False)


class ClusterFile(BaseModel):
    """The keys of cluster.yaml this app reads; every other key belongs to other tools."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    proxmox_api_url: str | None = expect(
        "a URL such as 'https://pve.example.com:8006/api2/json'",
        default=None,
        pattern=URL_RE,
    )
    proxmox_node: str | None = expect(
        "a Proxmox node name (letters, digits and '-')", default=None, pattern=PVE_NODE_RE
    )
    proxmox_insecure: bool = expect("true or false", default=False)
    proxmox_iso_storage: str = expect(
        "a datastore id such as 'local' (a-z, 0-9, '.', '_', '-')", default="local", pattern=STORAGE_RE
    )
    proxmox_disk_storage: str = expect(
        "a datastore id such as 'local-lvm' (a-z, 0-9, '.', '_', '-')",
        default="local-lvm",
        pattern=STORAGE_RE,
    )
    # Several Proxmox hosts (config/placement.py): the hosts nodes are spread over, and
    # whether the ISO datastore is shared by all of them (one download) or not (one per host).
    proxmox_nodes: list[PveHost] | None = expect(
        "a non-empty list of Proxmox node names (letters, digits and '-')", default=None, min_length=1
    )
    proxmox_iso_storage_shared: bool = expect("true or false", default=False)
    proxmox_vm_defaults: VmSizing = expect("a mapping", default=VmSizing())
    proxmox_vm_controller_defaults: VmSizing = expect("a mapping", default=VmSizing())
    proxmox_vm_worker_defaults: VmSizing = expect("a mapping", default=VmSizing())
    proxmox_vm_advanced: VmAdvanced = expect("a mapping", default=VmAdvanced())
    talos_version: Annotated[str, BeforeValidator(_version)] = expect(
        "a Talos release such as '1.12.0'", default="1.12.0", pattern=VERSION_RE
    )
    node_vlan_tag: Annotated[int | None, BeforeValidator(_vlan)] = expect(
        "a VLAN id 1..4094", default=None, ge=1, le=4094
    )
    node_cidr: IPv4Net | None = expect("an IPv4 network such as '10.0.0.0/24'", default=None)
    node_default_gateway: IPv4 | None = expect("an IPv4 address", default=None)
    cluster_api_addr: IPv4 | None = expect("an IPv4 address", default=None)
    cluster_pod_cidr: IPv4Net | None = expect("an IPv4 network", default=None)
    cluster_svc_cidr: IPv4Net | None = expect("an IPv4 network", default=None)
    cloudflare_domain: str | None = expect("a domain name", default=None, pattern=HOSTNAME_RE)
    tfstate_url: str | None = expect(
        "an http(s):// URL such as 'https://tfstate.example.com'", default=None, pattern=URL_RE
    )
    tfstate_state_name: str = expect(
        f"one path segment of up to {MAX_STATE_NAME} letters, digits, '.', '_' or '-'",
        default="proxmox",
        pattern=STATE_NAME_RE,
        max_length=MAX_STATE_NAME,
    )
    tfstate_username: str = expect("a user name", default="terraform", min_length=1)
    tfstate_password: SecretStr | None = expect("a string", default=None)
    # TLS to the state server: a private CA, and a client certificate for mutual TLS. The
    # PEM texts reach tofu through TF_HTTP_CLIENT_* in its environment, never cdktf.out.
    tfstate_ca_file: str | None = expect(
        "a path (relative to cluster.yaml) to a PEM file of the state server's CA", default=None, min_length=1
    )
    tfstate_client_certificate_file: str | None = expect(
        "a path (relative to cluster.yaml) to a PEM client certificate", default=None, min_length=1
    )
    tfstate_client_key: SecretStr | None = expect("the client certificate's PEM private key", default=None)
    proxmox_api_token_id: str | None = expect(
        "a token id such as 'root@pam!terraform'", default=None, pattern=TOKEN_ID_RE
    )
    proxmox_api_token_secret: SecretStr | None = expect("a string", default=None)

    @field_validator("proxmox_api_url", "tfstate_url")
    @classmethod
    def _port(cls, value: str | None) -> str | None:
        port = re.search(r"^[a-z]+://(\[[^\]]*\]|[^/:]*):([0-9]+)", value or "")
        if port and not 1 <= int(port.group(2)) <= 65535:
            raise ValueError(f"port {int(port.group(2))} is not in 1..65535")
        return value

    @field_validator("tfstate_state_name")
    @classmethod
    def _not_dots(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError("'.' and '..' are not state names")
        return value


class NodeEntry(Strict):
    """One entry of `nodes:` in nodes.yaml."""

    name: str = expect("a lower-case host name: a-z, 0-9 and '-'", pattern=NAME_RE)
    address: IPv4 = expect("an IPv4 address")
    controller: bool = expect("true or false")
    disk: str = expect("an install disk path or serial", min_length=1)
    mac_addr: str = expect("a lower-case MAC such as 'bc:24:11:00:00:01'", pattern=MAC_RE)
    schematic_id: str = expect(
        "64 lower-case hex characters from the Talos Image Factory", pattern=SCHEMATIC_RE
    )
    mtu: int | None = expect("an MTU 1450..9000", default=None, ge=1450, le=9000)
    secureboot: bool = expect("true or false", default=False)
    encrypt_disk: bool | None = expect("true or false", default=None)
    kernel_modules: list[str] | None = expect("a list of module names", default=None)
    vm_id: int | None = expect("a VM id 100..999999999", default=None, ge=100, le=999_999_999)
    vm_cores: PositiveInt | None = expect("a whole number of CPU cores > 0", default=None)
    vm_sockets: PositiveInt | None = expect("a whole number of CPU sockets > 0", default=None)
    vm_memory: PositiveInt | None = expect("memory in MB, a whole number > 0", default=None)
    vm_disk_size: PositiveInt | None = expect("disk size in GB, a whole number > 0", default=None)
    vm_startup_order: int | None = expect("a startup order >= 0", default=None, ge=0)
    vm_startup_delay: int | None = expect("seconds >= 0", default=None, ge=0)
    vm_shutdown_delay: int | None = expect("seconds >= 0", default=None, ge=0)
    proxmox_node: str | None = expect(
        "a Proxmox node name (letters, digits and '-')", default=None, pattern=PVE_NODE_RE
    )
    proxmox_disk_storage: str | None = expect(
        "a datastore id such as 'local-lvm' (a-z, 0-9, '.', '_', '-')", default=None, pattern=STORAGE_RE
    )


class NodesFile(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    nodes: list[NodeEntry] = expect("a list of node mappings", default=[])


# Keys with our prefixes that we do not know are probably typos of ours; other tools
# may own some, so they are warnings rather than errors.
OWN_PREFIXES = ("proxmox_", "tfstate_")


def expected_text(model: type[BaseModel], key: str) -> str | None:
    info = model.model_fields.get(key)
    extra = info.json_schema_extra if info else None
    return extra.get("expected") if isinstance(extra, dict) else None  # type: ignore[return-value]
