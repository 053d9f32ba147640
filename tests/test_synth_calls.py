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


def synth_beside_another_stack(
    d: ConfigDir, outdir: Path, stack_class: type[ProxmoxStack], refer: str
) -> dict:
    """The stack and a second one in one app; `refer`: which refers to the other's
    resources ("none", "to ours": the second outputs a VM's id, "from ours": this stack
    outputs the id of a file in the second). Returns both stacks' cdk.tf.json by name."""
    from constructs_lib.bindings.proxmox import DownloadFile, ProxmoxProvider

    config = load_config(ConfigPaths(d.cluster, d.nodes)).config
    app = cdktf.App(outdir=str(outdir))
    ours = stack_class(app, config, outdir / "stacks" / config.backend.state_name)
    other = cdktf.TerraformStack(app, "other")
    cdktf.LocalBackend(other, path="other.tfstate")
    if refer == "to ours":
        cdktf.TerraformOutput(other, "first_vm", value=ours.vms[0].vm_id)
    elif refer == "from ours":
        ProxmoxProvider(other, "provider", endpoint="https://127.0.0.1:8006/")
        file = DownloadFile(
            other,
            "file",
            content_type="iso",
            datastore_id="local",
            node_name="pve1",
            url="https://example.com/x.iso",
        )
        cdktf.TerraformOutput(ours, "other_file", value=file.id)
    app.synth()
    return {
        name: json.loads((outdir / "stacks" / name / "cdk.tf.json").read_bytes())
        for name in ("proxmox", "other")
    }


@pytest.mark.parametrize("refer", ["none", "to ours", "from ours"])
def test_a_second_stack_and_references_between_stacks_work(tmp_path: Path, refer: str) -> None:
    """ProxmoxStack skips cdktf's preparing pass only when alone in its app: beside
    another stack, references between the two are what that pass is for."""
    d = ConfigDir(tmp_path)
    d.write(BASE_CLUSTER, nodes_cycling(2))
    ours = synth_beside_another_stack(d, tmp_path / "ours", ProxmoxStack, refer)
    with_cdktf = synth_beside_another_stack(d, tmp_path / "cdktf", CdktfPreparedStack, refer)
    assert ours == with_cdktf, f"{refer}: the stacks differ from what cdktf's own preparing pass makes"
    consumer = {"none": None, "to ours": "other", "from ours": "proxmox"}[refer]
    if consumer is not None:  # the reference went through remote state, not a bare address
        assert "terraform_remote_state" in ours[consumer].get("data", {}), ours[consumer]


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


# Values with template syntax, and what cdktf's own escaping (Fn.rawString, made for HCL
# expressions) writes for them where it differs from a literal for tofu's JSON syntax.
LITERALS = ["a${var.x}b", "${path.module}", "$${kept}", "x${a}${b}y"]
RAW_STRING_DIFFERS = {
    "x%{ if true }y": "x%{ if true }y",  # a template directive, left for tofu to evaluate
    'q"uote': 'q\\"uote',  # a backslash added to the value
    "nl\nx": "nl\\nx",  # a newline turned into backslash and n
}


def test_bindings_escape_as_cdktf_does_where_cdktf_can(tmp_path: Path) -> None:
    """The bindings write every string as a literal (`$${`, `%%{`: _base.to_terraform).
    cdktf leaves a plain string as it is, so the escape is done once; its Fn.rawString
    escapes `${` the same way but not `%{`, and it rewrites quotes and newlines, so it
    cannot replace the bindings' escape (which also costs no jsii round trip)."""
    from constructs_lib.bindings.proxmox import DownloadFile, ProxmoxProvider

    app = cdktf.App(outdir=str(tmp_path))
    stack = cdktf.TerraformStack(app, "s")
    ProxmoxProvider(stack, "provider")
    values = [*LITERALS, *RAW_STRING_DIFFERS]
    for i, value in enumerate(values):
        DownloadFile(stack, f"ours{i}", content_type="iso", datastore_id=value, node_name="n", url="u")
        raw = cdktf.Fn.raw_string(value)
        DownloadFile(stack, f"cdktf{i}", content_type="iso", datastore_id=raw, node_name="n", url="u")
        cdktf.TerraformOutput(stack, f"plain{i}", value=value)
    app.synth()
    synthesized = json.loads((tmp_path / "stacks" / "s" / "cdk.tf.json").read_text())
    files = synthesized["resource"]["proxmox_download_file"]
    for i, value in enumerate(values):
        ours, theirs = files[f"ours{i}"]["datastore_id"], files[f"cdktf{i}"]["datastore_id"]
        assert ours == value.replace("${", "$${").replace("%{", "%%{"), value
        assert synthesized["output"][f"plain{i}"]["value"] == value, (
            f"cdktf now escapes a plain string itself ({value!r}): the bindings' escape would be doubled"
        )
        if value in RAW_STRING_DIFFERS:
            assert theirs == RAW_STRING_DIFFERS[value], (
                f"cdktf's Fn.rawString changed for {value!r} ({theirs!r}): check whether the bindings "
                "can escape through it now"
            )
        else:
            assert ours == theirs, f"the bindings escape {value!r} unlike cdktf's Fn.rawString ({theirs!r})"


# main.py as it runs (its quick exit), and main() left to the interpreter's own exit.
EXITS = {
    "quick exit": [str(ROOT / "main.py")],
    "interpreter's exit": [
        "-c",
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import main; sys.exit(main.main())",
    ],
}


def test_quick_exit_leaves_what_the_interpreters_exit_leaves(tmp_path: Path, example_dir: ConfigDir) -> None:
    """main.py skips the interpreter's teardown (node_flags.exit_now); jsii's exit hook
    still stops node and removes the runtime it unpacked into the temporary directory,
    and the exit code, the messages and the output are those of an ordinary exit."""
    results = {}
    for name, args in EXITS.items():
        tmp = tmp_path / name
        tmp.mkdir()
        proc = subprocess.run(
            [sys.executable, *args],
            env={**example_dir.env(), "TMPDIR": str(tmp)},
            cwd=example_dir.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Synthesized stack 'proxmox'" in proc.stdout, name  # flushed before the quick exit
        assert list(tmp.iterdir()) == [], f"{name}: jsii's temporary files are left"
        assert processes_mentioning(str(tmp)) == [], f"{name}: jsii's node is still running"
        stack = example_dir.outdir / "stacks" / "proxmox"
        results[name] = (proc.returncode, proc.stdout, proc.stderr, sorted(p.name for p in stack.iterdir()))
        results[name] += ((stack / "cdk.tf.json").read_bytes(),)
    assert results["quick exit"] == results["interpreter's exit"], "the quick exit changes what a run leaves"


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
