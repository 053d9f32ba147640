"""Before a VM moves to another host: take a Talos ISO on host-local storage out of its
CD-ROM drive, or Proxmox refuses the migration ("can't migrate local cdrom").

Talos boots from its disk once installed (the disk is first in the boot order), and the
stack ignores the CD-ROM after creation, so the eject shows in no later plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from workflow.errors import WorkflowError
from workflow.proxmox.api import ProxmoxApi
from workflow.rollout.classify import VmChange
from workflow.rollout.health import reason

DRIVE_RE = re.compile(r"^(ide|sata|scsi)[0-9]+$")
NO_MEDIA = ("none", "cdrom", "")


def local_isos(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(drive, volume) of each CD-ROM drive that holds an image."""
    out = []
    for key in sorted(config):
        if not DRIVE_RE.match(key):
            continue
        value = str(config[key])
        volume, *options = value.split(",")
        if "media=cdrom" in options and volume not in NO_MEDIA:
            out.append((key, volume))
    return out


def eject_local_iso(api: ProxmoxApi, change: VmChange, say: Callable[[str], None]) -> None:
    if change.vm_id is None or change.from_host == change.host:
        return
    try:
        drives = local_isos(api.vm_config(change.from_host, change.vm_id))
        for drive, volume in drives:
            say(
                f"{change.name}: ejecting {volume} from {drive} before the move from {change.from_host} "
                f"to {change.host} (the ISO datastore is each host's own; Talos boots from its disk)"
            )
            api.set_vm_config(change.from_host, change.vm_id, {drive: "none,media=cdrom"})
    except OSError as exc:
        raise WorkflowError(
            f"{change.name}: could not eject the ISO before moving it to {change.host} ({reason(exc)}); "
            "nothing more was applied"
        ) from exc
