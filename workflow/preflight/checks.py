"""The preflight's checks of the Proxmox cluster against the config (ownership apart:
ownership.py). Each returns findings, one line each: what, where, the fix."""

from __future__ import annotations

from collections.abc import Sequence

from config import InfraConfig
from workflow.preflight.ownership import Intent, Where
from workflow.preflight.report import BLOCK, OK, SKIPPED, WARN, Finding
from workflow.proxmox import privileges
from workflow.proxmox.inventory import Inventory, Storage

GIB = 1024**3
EFI_DISK_BYTES = 4 * 1024**2  # efi_disk type 4m
# Storage types whose volumes take space as they fill, not when they are made (raw files
# on file storages are sparse too); only LVM allocates the whole size at once.
THICK_TYPES = frozenset({"lvm", "iscsidirect"})
OLDEST_MAJOR = 8  # the bpg provider's releases are tested against Proxmox VE 8 and 9
LOCAL_ZONE = "/sdn/zones/localnetwork/"


def used_hosts(config: InfraConfig) -> list[str]:
    proxmox = config.proxmox
    assert proxmox is not None
    hosts = {vm.host for vm in config.vms} | {iso.host or proxmox.node for iso in config.isos}
    return sorted(hosts | {proxmox.node})


def check_version(inv: Inventory) -> list[Finding]:
    if inv.major and inv.major < OLDEST_MAJOR:
        return [
            Finding(
                "version",
                WARN,
                f"Proxmox VE {inv.version} is older than 8.0, the oldest release the bpg provider "
                "supports; upgrade Proxmox VE",
            )
        ]
    return [Finding("version", OK, f"Proxmox VE {inv.version}")]


def check_hosts(
    config: InfraConfig, inv: Inventory, where_cluster: str, extra: Sequence[str] = ()
) -> list[Finding]:
    """Every host the config (or the state) names exists and is online."""
    findings = []
    known = ", ".join(sorted(inv.hosts)) or "none"
    for host in sorted(set(used_hosts(config)) | set(extra)):
        if host not in inv.hosts:
            findings.append(
                Finding(
                    "hosts",
                    BLOCK,
                    f"host {host} ({where_cluster}) is not a host of this Proxmox cluster (its hosts: "
                    f"{known}); nothing was changed; correct the host's name",
                )
            )
        elif not inv.online(host):
            findings.append(
                Finding(
                    "hosts",
                    BLOCK,
                    f"host {host} is {inv.hosts[host].get('status') or 'not online'}: its VMs cannot be "
                    "read or changed; nothing was changed; run the task again once it is back online",
                )
            )
    if not findings:
        hosts = used_hosts(config)
        findings.append(Finding("hosts", OK, f"host{'s' * (len(hosts) != 1)} {', '.join(hosts)} online"))
    return findings


def check_quorum(inv: Inventory) -> list[Finding]:
    error = inv.errors.get("cluster")
    if error is not None:
        if error.denied:
            return [Finding("quorum", SKIPPED, "cannot read the cluster's status (needs Sys.Audit on /)")]
        return [Finding("quorum", BLOCK, f"cannot read the cluster's status: {error}")]
    entry = next((i for i in inv.cluster_status or [] if i.get("type") == "cluster"), None)
    if entry is None:
        return [Finding("quorum", OK, "a single Proxmox host (no cluster)")]
    if not entry.get("quorate"):
        return [
            Finding(
                "quorum",
                BLOCK,
                f"the Proxmox cluster {entry.get('name') or ''} has no quorum: its configuration is "
                "read-only, so every VM change would fail; nothing was changed; run the task again "
                "once `pvecm status` shows it quorate",
            )
        ]
    return [Finding("quorum", OK, f"cluster {entry.get('name') or ''} quorate")]


def check_privileges(
    config: InfraConfig, inv: Inventory, intended: Sequence[Intent], token_id: str, state_ids: Sequence[int]
) -> list[Finding]:
    if inv.permissions is None:
        why = inv.errors.get("permissions")
        return [
            Finding("privileges", BLOCK, f"cannot read the token's privileges (/access/permissions): {why}")
        ]
    ids: list[int | None] = [
        i.vm.vm_id if i.creates else (i.state.vm_id if i.state else None) for i in intended
    ]
    ids += list(state_ids)
    wanted = privileges.needs(config, inv.major, ids)
    lacking = privileges.missing(inv.permissions, wanted)
    if not lacking:
        return [Finding("privileges", OK, f"the token {token_id} holds every privilege this config needs")]
    return [
        Finding(
            "privileges",
            BLOCK,
            f"the token {token_id} lacks {', '.join(lack.privs)} on {lack.grant_path} (for "
            f"{'; '.join(lack.why)}); nothing was changed; grant them: "
            + privileges.fix_command(token_id, lack),
        )
        for lack in lacking
    ]


def check_storages(
    config: InfraConfig,
    inv: Inventory,
    intended: Sequence[Intent],
    where_iso: str,
    where_disk: Where,
    iso_bytes: dict[tuple[str, str], int],
) -> list[Finding]:
    """The ISO and disk storages: on each host that uses them, enabled, active, the right
    content, shared as the config says, with room for what the apply adds."""
    proxmox = config.proxmox
    assert proxmox is not None
    findings: list[Finding] = []
    uses: dict[tuple[str, str], tuple[str, str]] = {}  # (host, storage) -> (content, where)
    for iso in config.isos:
        uses[(iso.host or proxmox.node, proxmox.iso_storage)] = ("iso", where_iso)
    for vm in config.vms:
        uses.setdefault((vm.host, proxmox.iso_storage), ("iso", where_iso))  # it boots the ISO there
        uses.setdefault((vm.host, vm.disk_storage), ("images", where_disk(vm.name, "proxmox_disk_storage")))
    # Bytes the apply adds per storage (a shared storage counts once, across its hosts).
    need: dict[tuple[str, str], int] = {}
    for intent in intended:
        key = (intent.vm.host, intent.vm.disk_storage)
        if intent.creates:
            need[key] = need.get(key, 0) + intent.vm.disk_size * GIB + EFI_DISK_BYTES
        elif intent.state is not None:
            grown = intent.vm.disk_size - intent.state.disk_sizes.get("scsi0", intent.vm.disk_size)
            if grown > 0:
                need[key] = need.get(key, 0) + grown * GIB
    for (host, name), size in iso_bytes.items():
        need[(host, name)] = need.get((host, name), 0) + size
    seen_shared: dict[str, int] = {}
    for (host, name), (content, where) in sorted(uses.items()):
        if not inv.online(host):
            continue  # said by the hosts check
        listing = inv.storages.get(host)
        if listing is None:
            error = inv.errors.get(f"storage:{host}")
            findings.append(Finding("storages", BLOCK, f"cannot list the storages of {host}: {error}"))
            continue
        store = listing.get(name)
        if store is None:
            findings.append(
                Finding(
                    "storages",
                    BLOCK,
                    f"storage {name} ({where}) does not exist on {host}, or the token cannot see it "
                    f"(its storages: {', '.join(sorted(listing)) or 'none'}); nothing was changed; "
                    f"name a storage {host} has, or add {name} to {host} (Datacenter > Storage > Nodes)",
                )
            )
            continue
        problem = _storage_problem(store, content, host)
        if problem:
            findings.append(Finding("storages", BLOCK, f"storage {name} on {host} ({where}) {problem}"))
            continue
        if (
            content == "iso"
            and len({iso.host or proxmox.node for iso in config.isos} | {vm.host for vm in config.vms}) > 1
        ):
            if store.shared and not proxmox.iso_storage_shared:
                findings.append(
                    Finding(
                        "storages",
                        BLOCK,
                        f"storage {name} is shared by the hosts, but proxmox_iso_storage_shared is not "
                        f"true ({where}): each host would download the same files to it; nothing was "
                        "changed; set proxmox_iso_storage_shared: true",
                    )
                )
            elif not store.shared and proxmox.iso_storage_shared:
                findings.append(
                    Finding(
                        "storages",
                        BLOCK,
                        f"proxmox_iso_storage_shared is true, but storage {name} on {host} is that host's "
                        f"own ({where}): VMs on other hosts would not find their ISO; nothing was "
                        "changed; set proxmox_iso_storage_shared: false, or use a shared storage",
                    )
                )
        wanted = need.get((host, name), 0)
        if store.shared:
            seen_shared[name] = seen_shared.get(name, 0) + wanted
            if host != max(h for (h, n) in uses if n == name):
                continue  # the last host of a shared storage checks the sum
            wanted = seen_shared[name]
        if wanted and store.avail is not None and wanted > store.avail:
            text = (
                f"storage {name} on {host} has {_size(store.avail)} free, and this apply adds {_size(wanted)}"
            )
            if store.type in THICK_TYPES or content == "iso":
                findings.append(
                    Finding(
                        "storages", BLOCK, f"{text}; nothing was changed; free space or use another storage"
                    )
                )
            else:
                findings.append(
                    Finding(
                        "storages",
                        WARN,
                        f"{text} ({store.type} is thin-provisioned: fine until the disks fill up)",
                    )
                )
    if not any(f.level == BLOCK for f in findings):
        names = sorted({n for _, n in uses})
        findings.append(
            Finding(
                "storages",
                OK,
                f"storage{'s' * (len(names) != 1)} {', '.join(names)} ready on every host that uses them",
            )
        )
    return findings


def _storage_problem(store: Storage, content: str, host: str) -> str | None:
    if not store.enabled:
        return (
            f"is disabled on this host (disabled, or not enabled for {host} in Datacenter > Storage > "
            "Nodes); nothing was changed; enable it"
        )
    if not store.active:
        return (
            "is not active (unreachable or not mounted); nothing was changed; run the task again "
            "once `pvesm status` shows it active"
        )
    if content not in store.content:
        kind = "ISO images" if content == "iso" else "disk images"
        return (
            f"does not hold {kind} (content: {','.join(sorted(store.content)) or 'none'}); nothing was "
            f"changed; add the content type '{content}' to it (Datacenter > Storage > Edit: Content), "
            "or name another storage"
        )
    return None


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def check_bridges(config: InfraConfig, inv: Inventory, where: str) -> list[Finding]:
    bridge = config.advanced.network_bridge
    findings = []
    for host in sorted({vm.host for vm in config.vms}):
        if not inv.online(host):
            continue
        found = inv.bridges.get(host)
        if found is None:
            findings.append(
                Finding(
                    "bridges",
                    BLOCK,
                    f"cannot list the network of {host}: {inv.errors.get('network:' + host)}",
                )
            )
        elif bridge not in found:
            findings.append(
                Finding(
                    "bridges",
                    BLOCK,
                    f"bridge {bridge} ({where}) does not exist on {host} (its bridges: "
                    f"{', '.join(sorted(found)) or 'none'}); nothing was changed; create it on {host}, "
                    "or set proxmox_vm_advanced.network_bridge to one it has",
                )
            )
    return findings or [Finding("bridges", OK, f"bridge {bridge} on every host that runs a VM")]


def check_cpus(config: InfraConfig, inv: Inventory, where: Where) -> list[Finding]:
    findings = []
    for vm in config.vms:
        cpus = inv.hosts.get(vm.host, {}).get("maxcpu")
        if not isinstance(cpus, int) or cpus <= 0:
            continue
        if vm.cores * vm.sockets > cpus:
            findings.append(
                Finding(
                    "cpus",
                    BLOCK,
                    f"{vm.name} ({where(vm.name, 'vm_cores')}): {vm.cores} cores x {vm.sockets} "
                    f"socket{'s' * (vm.sockets != 1)} = {vm.cores * vm.sockets} vCPUs, more than the "
                    f"{cpus} CPUs of its host {vm.host}: Proxmox would refuse to start it; nothing was "
                    "changed; give it fewer cores or sockets, or a larger host",
                )
            )
    return findings or [Finding("cpus", OK, "every VM's vCPUs fit its host")]


def check_images(config: InfraConfig, inv: Inventory) -> list[Finding]:
    proxmox = config.proxmox
    assert proxmox is not None
    findings = []
    for iso in config.isos:
        host = iso.host or proxmox.node
        if not inv.online(host):
            continue
        error = inv.errors.get(f"url:{host}:{iso.url}")
        if error is None:
            continue
        if error.denied:
            continue  # the privileges check names what is missing
        findings.append(
            Finding(
                "images",
                BLOCK,
                f"host {host} cannot fetch {iso.url} ({error}); nothing was changed; check the host's "
                "DNS, proxy and firewall, and the node's schematic_id and talos_version",
            )
        )
    count = len(config.isos)
    return findings or [
        Finding(
            "images",
            OK,
            f"{count} Talos image{'s' * (count != 1)} reachable from the hosts that download them",
        )
    ]
