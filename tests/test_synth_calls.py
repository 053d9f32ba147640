"""What synthesis costs in jsii round trips, and the shortcuts that keep it low.

Each round trip between Python and jsii's node process costs about a millisecond; at
hundreds of VMs they are most of the synthesis time. A VM costs two: its creation, and
the one callback in which cdktf asks Python for its attributes. The counts come from
jsii's own debug log (JSII_DEBUG=1: every request Python sends, callbacks answered
included), so anything that adds a call per VM fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cdktf
import pytest

from config import ConfigPaths, load_config
from main import synthesize
from stacks.proxmox_stack import ProxmoxStack
from tests.support import BASE_CLUSTER, EXAMPLES, ROOT, SCHEMATIC_A, SCHEMATIC_B, ConfigDir, node

# Per VM: `create` of the resource, `complete` of its synthesizeAttributes callback.
ROUND_TRIPS_PER_VM = Counter({"create": 1, "complete": 1})


def jsii_requests(d: ConfigDir) -> Counter[str]:
    """The requests `python main.py` sends to jsii's kernel, by API (create, invoke, get,
    complete = the answer to a callback, ...), from jsii's debug log."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        env={**d.env(), "JSII_DEBUG": "1"},
        cwd=d.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts: Counter[str] = Counter()
    for line in proc.stderr.splitlines():
        if not line.startswith("> {"):
            continue
        request = json.loads(line[2:])
        if "exit" in request:
            continue
        counts[request.get("api") or request["complete"]["api"]] += 1
    assert counts["create"] > 0, "no jsii requests found in the debug log: " + proc.stderr[-1000:]
    return counts


def nodes_cycling(count: int, **extra: Any) -> list[dict[str, Any]]:
    """`count` nodes cycling through both schematics, SecureBoot on and off and both roles,
    so that two sizes >= 4 have the same ISOs and differ only in VMs."""
    return [
        node(
            f"n-{i}",
            i,
            controller=i % 2 == 0,
            schematic_id=(SCHEMATIC_A, SCHEMATIC_B)[i // 2 % 2],
            secureboot=i % 2 == 1,
            **extra,
        )
        for i in range(count)
    ]


CASES = {
    "defaults": ({}, {}),
    "vlan and advanced options": (
        {"node_vlan_tag": "42", "proxmox_vm_advanced": {"tags": ["lab"], "qemu_agent": False}},
        {},
    ),
    "per-node overrides": ({}, {"mtu": 9000, "vm_cores": 2, "vm_memory": 4096, "vm_startup_order": 3}),
    "http state backend": ({"tfstate_url": "http://127.0.0.1:8080/", "tfstate_state_name": "lab"}, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_round_trips_per_vm(tmp_path: Path, case: str) -> None:
    cluster_extra, node_extra = CASES[case]
    small, large = 4, 9
    counts = {}
    for count in (small, large):
        d = ConfigDir(tmp_path / str(count))
        d.root.mkdir()
        d.write({**BASE_CLUSTER, **cluster_extra}, nodes_cycling(count, **node_extra))
        counts[count] = jsii_requests(d)
    extra_vms = large - small
    per_vm = Counter({api: (counts[large][api] - counts[small][api]) / extra_vms for api in counts[large]})
    per_vm = +per_vm  # drop the APIs whose count does not grow with the VMs
    assert per_vm == ROUND_TRIPS_PER_VM, f"{case}: jsii requests per VM {dict(per_vm)}"


class CdktfPreparedStack(ProxmoxStack):
    """ProxmoxStack with cdktf's own preparing pass, which ProxmoxStack skips."""

    def prepare_stack(self) -> None:
        cdktf.TerraformStack.prepare_stack(self)


def synth_with_cdktf_prepare(d: ConfigDir, outdir: Path) -> bytes:
    config = load_config(ConfigPaths(d.cluster, d.nodes)).config
    app = cdktf.App(outdir=str(outdir))
    stack_dir = outdir / "stacks" / config.backend.state_name
    CdktfPreparedStack(app, config, stack_dir)
    app.synth()
    return (stack_dir / "cdk.tf.json").read_bytes()


CONFIGS = {
    "example": lambda: (
        EXAMPLES.joinpath("cluster.yaml").read_text(),
        EXAMPLES.joinpath("nodes.yaml").read_text(),
    ),
    "mixed ISOs": lambda: (BASE_CLUSTER, nodes_cycling(7)),
    "provisioning disabled": lambda: (
        {k: v for k, v in BASE_CLUSTER.items() if not k.startswith("proxmox_")},
        [node("cp-0", 0)],
    ),
    "http state backend": lambda: (
        {**BASE_CLUSTER, "tfstate_url": "http://127.0.0.1:8080/", "tfstate_state_name": "lab"},
        nodes_cycling(3),
    ),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_skipping_cdktf_prepare_pass_changes_no_byte(tmp_path: Path, name: str) -> None:
    d = ConfigDir(tmp_path)
    d.write(*CONFIGS[name]())
    ours = synthesize(load_config(ConfigPaths(d.cluster, d.nodes)).config, str(tmp_path / "ours"))
    assert synth_with_cdktf_prepare(d, tmp_path / "cdktf") == ours.read_bytes()


def test_vm_id_reference_is_what_the_token_renders_to(tmp_path: Path) -> None:
    """The outputs build `${<vm address>.vm_id}` themselves instead of asking cdktf."""
    d = ConfigDir(tmp_path)
    d.write(BASE_CLUSTER, nodes_cycling(2))
    config = load_config(ConfigPaths(d.cluster, d.nodes)).config
    app = cdktf.App(outdir=str(tmp_path / "out"))
    stack = ProxmoxStack(app, config, tmp_path / "out" / "stacks" / "proxmox")
    for vm in stack.vms:
        cdktf.TerraformOutput(stack, f"token_{vm.spec.logical_id}", value=vm.vm_id)
    app.synth()
    outputs = json.loads((tmp_path / "out" / "stacks" / "proxmox" / "cdk.tf.json").read_text())["output"]
    for vm in stack.vms:
        assert outputs[f"token_{vm.spec.logical_id}"]["value"] == vm.reference("vm_id")
        assert outputs["node_vm_ids"]["value"][vm.spec.name] == vm.reference("vm_id")


def test_main_leaves_no_process_or_temporary_file(tmp_path: Path, example_dir: ConfigDir) -> None:
    """main.py skips the interpreter's teardown; jsii's exit hook still stops node and
    removes the runtime it unpacked into the temporary directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        env={**example_dir.env(), "TMPDIR": str(tmp)},
        cwd=example_dir.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Synthesized stack 'proxmox'" in proc.stdout  # flushed before the quick exit
    assert list(tmp.iterdir()) == []
    assert processes_mentioning(str(tmp)) == []


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain `text` (jsii's node processes run a
    script unpacked under TMPDIR)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found
