"""Which Proxmox privileges, on which ACL paths, what a config does needs; and whether a
token holds them (from `GET /access/permissions`).

Read from Proxmox VE's API schema (each endpoint's `permissions`) for the calls the bpg
provider and the workflow make:

- ISO downloads: `query-url-metadata` and `download-url` need Sys.Audit and Sys.Modify on
  `/` (or, on PVE 9, Sys.AccessNetwork on `/nodes/<host>`), and Datastore.AllocateTemplate
  on the ISO storage; refreshing an ISO lists the storage (Datastore.Audit); deleting one
  needs Datastore.Allocate.
- VMs: create and delete (VM.Allocate), read (VM.Audit), each config group the VM sets
  (VM.Config.*), start, shutdown and reboot (VM.PowerMgmt), a move between hosts
  (VM.Migrate, and Sys.Audit on `/` for the HA status the provider asks first), the guest
  agent (VM.GuestAgent.Audit on PVE 9, VM.Monitor before), disks on the disk storage
  (Datastore.AllocateSpace), and the bridge (SDN.Use on its local zone, PVE 8 and later).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config import InfraConfig

# The role the getting-started guide tells users to create (docs/getting-started.md, checked
# by tests/test_docs.py): every privilege `needs` can ask for is in it.
ROLE_NAME = "TerraformProv"
DOCUMENTED_ROLE = (
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Pool.Allocate",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Modify",
    "SDN.Use",
    "VM.Allocate",
    "VM.Audit",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.Cloudinit",
    "VM.Config.CPU",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.Migrate",
    "VM.PowerMgmt",
)
VM_PRIVS = (
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.PowerMgmt",
)


@dataclass(frozen=True)
class Need:
    """Privileges `privs` on `path`, for `why`; or else `alternative` (path, privs)."""

    path: str
    privs: tuple[str, ...]
    why: str
    grant_path: str  # where the fix grants them (a parent of path, for all VMs at once)
    alternative: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Missing:
    grant_path: str
    privs: tuple[str, ...]
    why: tuple[str, ...]


def needs(config: InfraConfig, pve_major: int, vm_ids: Sequence[int | None]) -> list[Need]:
    """What this config does, as privileges. `vm_ids`: the ids of every VM the stack has or
    makes (None: Proxmox picks it, so the privileges must hold on `/vms` itself)."""
    proxmox = config.proxmox
    if proxmox is None:
        return []
    out: list[Need] = []
    iso_hosts = sorted({iso.host or proxmox.node for iso in config.isos})
    for host in iso_hosts:
        out.append(
            Need(
                "/",
                ("Sys.Audit", "Sys.Modify"),
                "ISO downloads (query-url-metadata, download-url)",
                "/",
                (f"/nodes/{host}", ("Sys.AccessNetwork",)) if pve_major >= 9 else None,
            )
        )
    out.append(
        Need(
            f"/storage/{proxmox.iso_storage}",
            ("Datastore.AllocateTemplate", "Datastore.Audit", "Datastore.Allocate"),
            "downloading, reading and deleting the Talos ISOs",
            f"/storage/{proxmox.iso_storage}",
        )
    )
    for storage in sorted({vm.disk_storage for vm in config.vms}):
        out.append(
            Need(
                f"/storage/{storage}",
                ("Datastore.AllocateSpace",),
                "VM disks and EFI disks",
                f"/storage/{storage}",
            )
        )
    privs = list(VM_PRIVS)
    why = ["creating, changing, restarting and deleting the VMs"]
    if config.multi_host:
        privs.append("VM.Migrate")
        why.append("moving VMs between hosts")
        out.append(Need("/", ("Sys.Audit",), "the HA status the provider reads before a move", "/"))
    if config.advanced.qemu_agent:
        privs.append("VM.GuestAgent.Audit" if pve_major >= 9 else "VM.Monitor")
        why.append("reading the guest agent's network interfaces")
    for vm_id in sorted({v for v in vm_ids if v is not None}) + ([None] if None in vm_ids else []):
        path = "/vms" if vm_id is None else f"/vms/{vm_id}"
        out.append(Need(path, tuple(privs), ", ".join(why), "/vms"))
    if pve_major >= 8:
        bridge = config.advanced.network_bridge
        path = f"/sdn/zones/localnetwork/{bridge}"
        out.append(Need(path, ("SDN.Use",), f"VM network interfaces on bridge {bridge}", path))
    return out


def holds(held: Mapping[str, Mapping[str, int]], path: str, priv: str) -> bool:
    """Whether `priv` holds on `path`: given there, or propagated from a parent path
    (`/access/permissions` maps path -> privilege -> 1 when it propagates)."""
    if priv in held.get(path, {}):
        return True
    parts = path.strip("/").split("/") if path != "/" else []
    for depth in range(len(parts)):
        parent = "/" + "/".join(parts[:depth])
        if held.get(parent, {}).get(priv) == 1:
            return True
    return False


def missing(held: Mapping[str, Mapping[str, int]], wanted: Sequence[Need]) -> list[Missing]:
    """The privileges the token lacks, grouped by where the fix grants them."""
    by_path: dict[str, tuple[list[str], list[str]]] = {}
    for need in wanted:
        lacking = [p for p in need.privs if not holds(held, need.path, p)]
        if not lacking:
            continue
        if need.alternative and all(holds(held, need.alternative[0], p) for p in need.alternative[1]):
            continue
        privs, whys = by_path.setdefault(need.grant_path, ([], []))
        privs.extend(p for p in lacking if p not in privs)
        if need.why not in whys:
            whys.append(need.why)
    return [Missing(path, tuple(privs), tuple(whys)) for path, (privs, whys) in sorted(by_path.items())]


def fix_command(token_id: str, lack: Missing) -> str:
    """The pveum commands that grant what is missing, for a message."""
    quoted = "'" + token_id.replace("'", "'\\''") + "'"
    return (
        f"`pveum aclmod {lack.grant_path} -token {quoted} -role {ROLE_NAME}` (the role from the "
        f"getting-started guide); if your role lacks them: `pveum role modify <role> -append 1 "
        f"-privs '{','.join(lack.privs)}'`"
    )
