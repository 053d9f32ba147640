"""What a Proxmox cluster holds, read in two rounds of parallel requests: first the
cluster-wide lists, then what each host and guest has (storages, bridges, configs).

Every read that fails is kept as its ProxmoxError, for the check that needs it to report
(a missing privilege, an offline host); nothing here decides what is a problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from workflow.proxmox.api import ProxmoxApi, ProxmoxError

NET_KEY = re.compile(r"^net\d+$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


@dataclass(frozen=True)
class Guest:
    """A VM or container, as `/cluster/resources` lists it."""

    vm_id: int
    kind: str  # qemu or lxc
    name: str
    host: str
    tags: tuple[str, ...]
    status: str
    lock: str | None
    template: bool

    @property
    def label(self) -> str:
        what = "VM" if self.kind == "qemu" else "container"
        return f"{what} {self.vm_id} '{self.name}' on {self.host}"


@dataclass(frozen=True)
class Storage:
    """A storage as one host sees it (`/nodes/<host>/storage`)."""

    name: str
    type: str
    content: frozenset[str]
    enabled: bool
    active: bool
    shared: bool
    avail: int | None  # bytes
    total: int | None


@dataclass
class Inventory:
    version: str | None = None
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> /nodes entry
    cluster_status: list[dict[str, Any]] | None = None
    guests: dict[int, Guest] = field(default_factory=dict)
    permissions: dict[str, dict[str, int]] | None = None
    storages: dict[str, dict[str, Storage]] = field(default_factory=dict)  # host -> name -> storage
    bridges: dict[str, set[str]] = field(default_factory=dict)  # host -> bridge names
    macs: dict[int, frozenset[str]] = field(default_factory=dict)  # guest id -> MACs (upper case)
    url_metadata: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (host, url)
    taken_ids: dict[int, str] = field(default_factory=dict)  # id -> Proxmox's answer to nextid
    errors: dict[str, ProxmoxError] = field(default_factory=dict)  # what -> why it could not be read

    @property
    def major(self) -> int:
        try:
            return int(str(self.version).split(".")[0])
        except ValueError:
            return 0

    def online(self, host: str) -> bool:
        return str(self.hosts.get(host, {}).get("status")) == "online"


def parse_tags(value: Any) -> tuple[str, ...]:
    """Proxmox's tag list: `a;b;c` (older releases also wrote `,` or spaces)."""
    return tuple(t for t in re.split(r"[;, ]+", str(value or "")) if t)


def guest_macs(config: dict[str, Any]) -> frozenset[str]:
    """The MAC of each NIC: qemu `virtio=BC:24:...,bridge=...` or `macaddr=...`, lxc
    `name=eth0,hwaddr=BC:24:...`."""
    out = set()
    for key, value in config.items():
        if not NET_KEY.match(key):
            continue
        for part in str(value).split(","):
            _, _, val = part.partition("=")
            if MAC.match(val):
                out.add(val.upper())
    return frozenset(out)


def _guest(item: dict[str, Any]) -> Guest | None:
    try:
        vm_id = int(item["vmid"])
    except (KeyError, TypeError, ValueError):
        return None
    return Guest(
        vm_id=vm_id,
        kind=str(item.get("type") or "qemu"),
        name=str(item.get("name") or ""),
        host=str(item.get("node") or ""),
        tags=parse_tags(item.get("tags")),
        status=str(item.get("status") or ""),
        lock=str(item["lock"]) if item.get("lock") else None,
        template=bool(item.get("template")),
    )


def _storage(item: dict[str, Any]) -> Storage:
    def number(key: str) -> int | None:
        value = item.get(key)
        return int(value) if isinstance(value, int | float) else None

    return Storage(
        name=str(item.get("storage")),
        type=str(item.get("type") or ""),
        content=frozenset(c for c in str(item.get("content") or "").split(",") if c),
        enabled=bool(item.get("enabled", 1)),
        active=bool(item.get("active", 0)),
        shared=bool(item.get("shared", 0)),
        avail=number("avail"),
        total=number("total"),
    )


Task = tuple[str, Callable[[], Any]]


def _run(api: ProxmoxApi, inv: Inventory, tasks: Iterable[Task]) -> dict[str, Any]:
    """Each task's result by name; a failure goes to inv.errors instead."""

    def one(task: Task) -> tuple[str, Any, ProxmoxError | None]:
        name, fn = task
        try:
            return name, fn(), None
        except ProxmoxError as exc:
            return name, None, exc

    out = {}
    for name, result, error in api.many(one, tasks):
        if error is not None:
            inv.errors[name] = error
        else:
            out[name] = result
    return out


def read_cluster(api: ProxmoxApi) -> Inventory:
    """The first round: version (the token's check), hosts, quorum, guests, privileges."""
    inv = Inventory()
    got = _run(
        api,
        inv,
        [
            ("version", lambda: api.get("/version")),
            ("hosts", lambda: api.get("/nodes")),
            ("cluster", lambda: api.get("/cluster/status")),
            ("guests", api.guests),
            ("permissions", lambda: api.get("/access/permissions")),
        ],
    )
    if isinstance(got.get("version"), dict):
        inv.version = str(got["version"].get("version") or "")
    for item in got.get("hosts") or []:
        if isinstance(item, dict) and item.get("node"):
            inv.hosts[str(item["node"])] = item
    if isinstance(got.get("cluster"), list):
        inv.cluster_status = [i for i in got["cluster"] if isinstance(i, dict)]
    for item in got.get("guests") or []:
        guest = _guest(item)
        if guest is not None:
            inv.guests[guest.vm_id] = guest
    if isinstance(got.get("permissions"), dict):
        inv.permissions = {
            str(path): {str(p): int(v or 0) for p, v in privs.items()}
            for path, privs in got["permissions"].items()
            if isinstance(privs, dict)
        }
    return inv


def read_details(
    api: ProxmoxApi,
    inv: Inventory,
    *,
    hosts: Iterable[str],
    downloads: Iterable[tuple[str, str]],
    ids_to_confirm: Iterable[int],
) -> None:
    """The second round: each host's storages and bridges, each online guest's MACs, the
    metadata of each (host, URL) download, and `nextid` for ids the guest list lacks."""
    tasks: list[Task] = []
    for host in sorted(set(hosts)):
        if not inv.online(host):
            continue
        tasks.append((f"storage:{host}", partial(api.get, f"/nodes/{host}/storage")))
        tasks.append((f"network:{host}", partial(api.get, f"/nodes/{host}/network")))
    for guest in inv.guests.values():
        if inv.online(guest.host):
            tasks.append(
                (f"config:{guest.vm_id}", partial(api.vm_config, guest.host, guest.vm_id, guest.kind))
            )
    for host, url in sorted(set(downloads)):
        if inv.online(host):
            tasks.append(
                (f"url:{host}:{url}", partial(api.get, f"/nodes/{host}/query-url-metadata", url=url))
            )
    for vm_id in sorted(set(ids_to_confirm)):
        tasks.append((f"nextid:{vm_id}", partial(api.get, "/cluster/nextid", vmid=vm_id)))
    got = _run(api, inv, tasks)
    for name, value in got.items():
        kind, _, rest = name.partition(":")
        if kind == "storage":
            inv.storages[rest] = {
                s.name: s for s in (_storage(i) for i in value or [] if isinstance(i, dict))
            }
        elif kind == "network":
            inv.bridges[rest] = {
                str(i.get("iface"))
                for i in value or []
                if isinstance(i, dict) and str(i.get("type")) in ("bridge", "OVSBridge", "vnet")
            }
        elif kind == "config":
            inv.macs[int(rest)] = guest_macs(value if isinstance(value, dict) else {})
        elif kind == "url":
            host, _, url = rest.partition(":")
            inv.url_metadata[(host, url)] = value if isinstance(value, dict) else {}
    for name, error in list(inv.errors.items()):
        if name.startswith("nextid:") and error.status == 400:
            inv.taken_ids[int(name.split(":", 1)[1])] = error.message
