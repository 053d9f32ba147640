"""Several Proxmox hosts in one fakepve: what fakepve 0.5.0 lacks for them (a mixin of
devenv.fakepve.HarnessPve; each gap is listed in docs/e2e.md).

- Storage content per host. fakepve keeps one global set of storages, so an ISO
  downloaded to `local` on one host was visible on every host, and deleting it on one
  deleted it everywhere. Proxmox's `local` and `local-lvm` are each host's own disks.
  Here every host has its own copy of each storage that is not shared (`shared: 1`, or
  a network type such as NFS or RBD): the storage options are the cluster's, the
  content (ISOs, VM volumes, free space) is the host's. A request works on the storages
  of the host in its path (`/nodes/<host>/...`); a request without a host, and
  `pve.storages` read by a test, see the first host's. `storages_on(host)` reads another.
- The HA status the provider asks before a migration. fakepve answered
  `GET /cluster/ha/resources/vm:<id>` from its schema ("illegal HA resource type
  'fake'"), so every host change failed. Here it answers as Proxmox does: the resource
  of an HA-managed VM, else "no such resource" (which the provider reads as "not HA").
- `POST /nodes/<host>/qemu/<id>/migrate`. Missing in fakepve (its `migrate()` scenario
  helper has no route). Here it runs a `qmigrate` task that moves the VM and its own
  volumes to the target host, after Proxmox's checks: the target is another known host,
  a running VM needs `online`, the VM is not locked, its storages exist on the target,
  and a CD-ROM holding an ISO on a storage that is not shared fails the migration
  (Proxmox: "can't migrate local cdrom"), as it does on a real cluster.
"""

from __future__ import annotations

import contextvars
from typing import Any

from fakepve.model import PveError, TaskError
from fakepve.qemu import drives_of, is_cdrom, volume_ref

# The host of the request being served (None: no host in the path, or a test's call).
_HOST: contextvars.ContextVar[str | None] = contextvars.ContextVar("devenv_fakepve_host", default=None)

# pve-storage types that are shared by nature; others are shared only with `shared: 1`.
SHARED_TYPES = frozenset({"nfs", "cifs", "cephfs", "rbd", "iscsi", "iscsidirect", "zfs", "pbs", "glusterfs"})
# Keys of a fakepve storage entry that are its content, not storage.cfg options.
CONTENT_KEYS = ("files", "volumes", "avail", "total")
MIGRATE_SECS = 10  # PVE seconds a migration takes (real time only with time_scale > 0)


def is_shared(store: dict[str, Any]) -> bool:
    return bool(store.get("shared")) or store.get("type") in SHARED_TYPES


def _empty_copy(store: dict[str, Any]) -> dict[str, Any]:
    """The same storage on another host: its options, no content, its full capacity."""
    copy = {k: v for k, v in store.items() if k not in CONTENT_KEYS}
    copy.update(files=set(), volumes={})
    if "avail" in store:
        used = sum(int(vol.get("size") or 0) for vol in store.get("volumes", {}).values())
        copy["avail"] = store.get("total", store["avail"] + used)
    if "total" in store:
        copy["total"] = store["total"]  # each host's own disk of the same size
    return copy


class SeveralHosts:
    """Per-host storage content, the HA status route and the qemu migrate route."""

    nodes: dict[str, dict[str, Any]]
    vms: list[Any]
    _host_storages: dict[str, dict[str, dict[str, Any]]]
    _home: str

    # ------------------------------------------------------------ storages

    @property
    def storages(self) -> dict[str, dict[str, Any]]:
        return self.storages_on(_HOST.get())

    @storages.setter
    def storages(self, value: dict[str, dict[str, Any]]) -> None:
        # fakepve's Model sets this once, after its first node.
        self._home = next(iter(self.nodes), "pve1")
        self._host_storages = {self._home: value}

    def storages_on(self, host: str | None) -> dict[str, dict[str, Any]]:
        """The storages as `host` sees them (None: the first host)."""
        home = self._host_storages[self._home]
        if host is None or host == self._home:
            return home
        if host not in self.nodes:
            return {}  # no such host: nothing to find (the API refuses the host anyway)
        view = self._host_storages.setdefault(host, {})
        for name, store in home.items():  # storage.cfg is the cluster's: follow it
            if name not in view:
                view[name] = store if is_shared(store) else _empty_copy(store)
        for name in [n for n in view if n not in home]:
            del view[name]
        return view

    def add_host(self, name: str) -> None:
        """A host joins the cluster (fakepve's add_node), with its own local storages."""
        self.add_node(name)  # type: ignore[attr-defined]

    def iso_files(self) -> dict[str, dict[str, set[str]]]:
        """host -> storage -> ISO file names, for every host (shared storages under each)."""
        return {
            host: {name: set(store.get("files", ())) for name, store in self.storages_on(host).items()}
            for host in sorted(self.nodes)
        }

    async def _answer(self, request: Any, handler: Any, generic: Any, path_node: str | None) -> Any:
        # Each request runs in its own asyncio task, so the host set here is this request's
        # (tasks it starts copy it).
        _HOST.set(path_node if path_node in self.nodes else None)
        return await super()._answer(request, handler, generic, path_node)  # type: ignore[misc]

    # -------------------------------------------------------------- routes

    def _routes_hosts(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/cluster/ha/resources/{sid}", self._ha_resource),
            ("POST", "/nodes/{node}/qemu/{vmid}/migrate", self._qm_migrate),
        ]

    async def _ha_resource(self, values: dict[str, Any], user: str) -> dict[str, Any]:
        sid = str(values["sid"])
        kind, _, ident = sid.rpartition(":")
        vm = self.vm(int(ident)) if ident.isdigit() and kind in ("", "vm") else None  # type: ignore[attr-defined]
        if vm is None or not vm.ha_managed:
            raise PveError(500, f"no such resource '{sid if kind else 'vm:' + sid}'")
        return {"sid": f"vm:{vm.vmid}", "type": "vm", "state": vm.ha_state, "digest": "0" * 40}

    async def _qm_migrate(self, values: dict[str, Any], user: str) -> str:
        source, vmid, target = values["node"], int(values["vmid"]), str(values["target"])
        vm = self.find(source, vmid)  # type: ignore[attr-defined]
        self.require(user, f"/vms/{vmid}", "VM.Migrate")  # type: ignore[attr-defined]
        if target == source:
            raise PveError(500, "target is local node.")
        if target not in self.nodes:
            raise PveError(500, f"no such cluster node '{target}'")
        if vm.status == "running" and not _true(values.get("online")):
            raise PveError(500, "can't migrate running VM without --online")
        if vm.lock:
            raise PveError(500, f"VM is locked ({vm.lock})")

        # Proxmox scans the volumes first thing in the task; the outcome is the same here.
        problems, local = self._migration_scan(vm, source, target)
        log = [f"starting migration of VM {vmid} to node '{target}'"]
        log += [f"can't migrate local disk '{volume}': {why}" for volume, why in problems]
        if problems:
            log.append(
                "ERROR: migration aborted (duration 00:00:00): "
                "Problem found while scanning volumes - can't migrate VM - check log"
            )

        async def body() -> str:
            if problems:
                raise TaskError("migration aborted")
            vm.lock = "migrate"
            try:
                await self.pause(MIGRATE_SECS)  # type: ignore[attr-defined]
                for sid, name in local:
                    self._move_volume(sid, name, source, target)
                vm.node = target
            finally:
                vm.lock = None
            return "migration finished successfully"

        upid: str = await self.task(source, "qmigrate", vmid, user, body, vm=vm, log=log)  # type: ignore[attr-defined]
        return upid

    def _migration_scan(
        self, vm: Any, source: str, target: str
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(problems as (volume, reason), the VM's own volumes on local storages)."""
        problems, local = [], []
        src, dst = self.storages_on(source), self.storages_on(target)
        for _key, volume, props in drives_of(vm.config):
            if volume in ("none", ""):
                continue
            if volume == "cdrom":
                problems.append((volume, "can't migrate local cdrom drive"))
                continue
            sid, name = volume_ref(volume)
            if sid is None:
                continue
            if sid not in src or sid not in dst:
                problems.append((volume, f"storage '{sid}' is not available on node '{target}'"))
            elif is_shared(src[sid]):
                continue
            elif is_cdrom(volume, props):
                problems.append((volume, "local cdrom image"))
            else:
                local.append((sid, name))
        return problems, local

    def _move_volume(self, sid: str, name: str, source: str, target: str) -> None:
        src, dst = self.storages_on(source)[sid], self.storages_on(target)[sid]
        vol = src.get("volumes", {}).pop(name, None)
        if vol is None:
            return
        size = int(vol.get("size") or 0)
        if "avail" in src:
            src["avail"] += size
        if "avail" in dst:
            dst["avail"] -= size
        dst.setdefault("volumes", {})[name] = vol


def _true(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")
