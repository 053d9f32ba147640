"""The resume file: nodes a rollout changed and did not yet see healthy, so that a run that
stopped (a timeout, a Proxmox fault, Ctrl-C) deals with them first when run again.

`rollout-state.json` in the stack directory, written whole (temporary file and rename),
deleted once empty. Format, version 2:

    {"format": "talos-cdktf rollout resume", "version": 2,
     "nodes": [{"name": "k8s-work-0", "host": "pve1", "vm_id": 8020, "agent": true,
                "address": "10.10.0.20", "talos": true, "boot_id": "…" or null,
                "expect_new_boot": true, "controller": false, "uncordon": true,
                "replaced": false, "apply_interrupted": false}]}

`apply_interrupted`: the step's apply failed part way, so the VM may be stopped or hold
configuration Proxmox keeps pending until a restart. Version 1 (no `format`; the nodes
under `restarted_not_yet_healthy`, the fields of the time's `health.Node`) is read too. A
file of any other form is refused in one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.errors import WorkflowError
from workflow.rollout.health import Node

FILE = "rollout-state.json"
FORMAT = "talos-cdktf rollout resume"
VERSION = 2
READS = (1, 2)


@dataclass(frozen=True)
class Pending:
    node: Node
    interrupted: bool = False


def _node_to_json(p: Pending) -> dict[str, Any]:
    n = p.node
    return {
        "name": n.name,
        "host": n.host,
        "vm_id": n.vm_id,
        "agent": n.agent,
        "address": n.address,
        "talos": n.talos,
        "boot_id": n.boot_id,
        "expect_new_boot": n.new_boot,
        "controller": n.controller,
        "uncordon": n.uncordon,
        "replaced": n.replaced,
        "apply_interrupted": p.interrupted,
    }


def _node_from_json(d: Mapping[str, Any], new_boot_key: str) -> Pending:
    vm_id = d.get("vm_id")
    if vm_id is not None and (not isinstance(vm_id, int) or isinstance(vm_id, bool)):
        raise ValueError(f"vm_id {vm_id!r} is not a number")
    name, host = d["name"], d["host"]
    if not isinstance(name, str) or not isinstance(host, str):
        raise ValueError("name and host must be text")
    node = Node(
        name=name,
        host=host,
        vm_id=vm_id,
        agent=bool(d.get("agent")),
        address=d.get("address") if isinstance(d.get("address"), str) else None,
        talos=bool(d.get("talos")),
        boot_id=d.get("boot_id") if isinstance(d.get("boot_id"), str) else None,
        new_boot=bool(d.get(new_boot_key, True)),
        controller=bool(d.get("controller")),
        uncordon=bool(d.get("uncordon")),
        replaced=bool(d.get("replaced")),
    )
    return Pending(node, bool(d.get("apply_interrupted")))


class ResumeFile:
    def __init__(self, stack_dir: Path) -> None:
        self.path = stack_dir / FILE

    def load(self) -> list[Pending]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WorkflowError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if "restarted_not_yet_healthy" in data and "format" not in data:  # version 1
                return [_node_from_json(n, "new_boot") for n in data["restarted_not_yet_healthy"]]
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {FORMAT!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkflowError(
                f"{self.path} is not a rollout resume file ({exc}); delete it to go on"
            ) from exc
        version = data.get("version")
        if version not in READS:
            raise WorkflowError(
                f"{self.path} is a rollout resume file of version {version!r}, and this version reads "
                f"{' and '.join(map(str, READS))}: finish the rollout with the version that wrote it, "
                "or delete the file to go on (the nodes it lists are then not checked first)"
            )
        try:
            return [_node_from_json(n, "expect_new_boot") for n in data["nodes"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkflowError(
                f"{self.path} is not a rollout resume file ({exc}); delete it to go on"
            ) from exc

    def remember(self, nodes: Iterable[Node], interrupted: bool = False) -> None:
        entries = {p.node.name: p for p in self.load()}
        entries.update({n.name: Pending(n, interrupted) for n in nodes})
        self._write(list(entries.values()))

    def forget(self, names: Iterable[str]) -> None:
        drop = set(names)
        self._write([p for p in self.load() if p.node.name not in drop])

    def _write(self, entries: list[Pending]) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        body = {"format": FORMAT, "version": VERSION, "nodes": [_node_to_json(p) for p in entries]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(tmp, self.path)
