"""The output directory is replaced whole or not at all (output_dir.py).

A good previous output (with what tofu and the workflow keep in it) stays byte for byte
when synthesis fails: output path taken by a file, a name too long, the runtime's temp
files refused (RLIMIT_FSIZE), a full disk and a read-only one (a small tmpfs, in a mount
namespace of its own). When synthesis succeeds, tofu's files survive the swap.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, ConfigDir

STAGING = ".cdktf-new-"


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every directory (None) under root."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() and not p.is_symlink() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(STAGING)]


@pytest.fixture
def previous(example_dir: ConfigDir) -> ConfigDir:
    """A synthesized example plus what tofu and the workflow add; then a config change,
    so that a new synthesis would write a different cdk.tf.json."""
    assert example_dir.run_main().returncode == 0
    stack = example_dir.outdir / "stacks" / "proxmox"
    (stack / ".terraform" / "providers").mkdir(parents=True)
    (stack / ".terraform" / "providers" / "marker").write_bytes(b"provider binary")
    (stack / ".terraform" / "terraform.tfstate").write_text('{"backend": {}}')
    (stack / "tfplan").write_bytes(b"PK\x03\x04 saved plan")
    (stack / "tfplan.config-sha256").write_text("0" * 64 + "\n")
    (example_dir.outdir / ".inputs-sha256").write_text("1" * 64 + "\n")
    (example_dir.outdir / "stacks" / "older").mkdir()
    (example_dir.outdir / "stacks" / "older" / "cdk.tf.json").write_text("{}")
    example_dir.nodes.write_text(
        example_dir.nodes.read_text().replace("vm_memory: 12288", "vm_memory: 16384")
    )
    return example_dir


KEPT = [
    "stacks/proxmox/.terraform/providers/marker",
    "stacks/proxmox/.terraform/terraform.tfstate",
    "stacks/proxmox/tfplan",
    "stacks/proxmox/tfplan.config-sha256",
    ".inputs-sha256",
    "stacks/older/cdk.tf.json",
]


@pytest.mark.parametrize(
    ("provider_source", "lock_kept"),
    [("mirror", False), ("registry", True)],  # registry: the lock file is tofu's own
)
def test_success_swaps_in_the_new_output_and_keeps_tofus_files(
    previous: ConfigDir, provider_source: str, lock_kept: bool
) -> None:
    lock = previous.outdir / "stacks" / "proxmox" / ".terraform.lock.hcl"
    lock.write_text("# written by tofu init\n")
    before = tree(previous.outdir)
    env = {**previous.env(), "TALOS_PROVIDER_SOURCE": provider_source}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    after = tree(previous.outdir)
    for path in KEPT:
        assert after[path] == before[path], path
    new_stack = json.loads(after["stacks/proxmox/cdk.tf.json"])
    vm = new_stack["resource"]["proxmox_virtual_environment_vm"]["talos_node_k8s_ctrl_2"]
    assert vm["memory"]["dedicated"] == 16384
    assert (after["stacks/proxmox/.terraform.lock.hcl"] == b"# written by tofu init\n") is lock_kept
    manifest = after["manifest.json"]
    assert manifest == before["manifest.json"] and b"/" + STAGING.encode() not in manifest
    assert str(previous.root).encode() not in manifest
    assert leftovers(previous.root) == []


def test_a_killed_runs_staging_directory_is_removed_by_the_next(previous: ConfigDir) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = previous.root / f"{STAGING}{dead.pid}-0a1b2c"
    concurrent = previous.root / f"{STAGING}{os.getpid()}-3d4e5f"  # a live process
    for path in (abandoned, concurrent):
        (path / "stacks").mkdir(parents=True)
    assert previous.run_main().returncode == 0
    assert leftovers(previous.root) == [concurrent.name]


def run_limited(
    d: ConfigDir, env: dict[str, str], fsize: int | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [*prefix, sys.executable, str(ROOT / "main.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


# Root may write anywhere; without these capabilities it obeys a directory's mode.
NO_DAC_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")


@pytest.mark.parametrize(
    "case", ["output is a file", "name too long", "runtime temp files refused", "permission denied"]
)
def test_failure_is_one_line_and_leaves_the_previous_output(previous: ConfigDir, case: str) -> None:
    scratch = previous.root / "tmp"
    scratch.mkdir()
    env = {**previous.env(), "TMPDIR": str(scratch)}
    fsize, prefix = None, ()
    if case == "permission denied":
        if os.getuid() == 0 and not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: root writes into any directory")
        prefix = NO_DAC_OVERRIDE if os.getuid() == 0 else ()
        previous.root.chmod(0o555)  # the output's parent: no new directory beside it
        expected = f"{previous.outdir}: cannot write the output directory (Permission denied)"
    elif case == "output is a file":
        target = previous.root / "plain-file"
        target.write_text("not a directory")
        env["CDKTF_OUTDIR"] = str(target)
        expected = f"{target}: cannot write the output directory (Not a directory)"
    elif case == "name too long":
        target = previous.root / ("x" * 300)
        env["CDKTF_OUTDIR"] = str(target)
        expected = f"{target}: cannot write the output directory (File name too long)"
    else:  # jsii writes its runtime (> 50 kB files) to TMPDIR before anything else
        fsize = 40_000
        expected = (
            "cannot start cdktf's runtime: cannot write its files (File too large); "
            "check the free space of the temp directory (TMPDIR)"
        )
    before, root_before = tree(previous.outdir), sorted(os.listdir(previous.root))
    try:
        proc = run_limited(previous, env, fsize, prefix)
    finally:
        previous.root.chmod(0o755)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", expected + "\n")
    assert tree(previous.outdir) == before
    assert sorted(os.listdir(previous.root)) == root_before
    assert list(scratch.iterdir()) == []  # jsii's runtime files removed too


# Runs inside `unshare -m`: a small tmpfs holds a copy of the previous output; main.py
# synthesizes into it; the resulting tree goes to a JSON file outside the tmpfs.
IN_NAMESPACE = r"""
import json, os, shutil, subprocess, sys
from pathlib import Path
case, mnt, previous, report = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
shutil.copytree(previous, mnt / "out", symlinks=True)
if case == "disk full":
    with open(mnt / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(mnt / "filler", os.path.getsize(mnt / "filler") - 8192)  # cdk.tf.json: ~21 kB
else:
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
env = dict(os.environ, CDKTF_OUTDIR=str(mnt / "out"))
proc = subprocess.run([sys.executable, sys.argv[5]], env=env, capture_output=True, text=True)
files = {
    str(p.relative_to(mnt)): None if p.is_dir() else p.read_bytes().hex()
    for p in sorted(mnt.rglob("*")) if p.name != "filler"
}
report.write_text(json.dumps({"code": proc.returncode, "out": proc.stdout, "err": proc.stderr, "files": files}))
"""


@pytest.mark.parametrize(
    ("case", "reason"),
    [("disk full", "ENOSPC: no space left on device, write"), ("read-only", "Read-only file system")],
)
def test_full_or_read_only_filesystem(previous: ConfigDir, case: str, reason: str) -> None:
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-m", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.skip(
            "needs `unshare -m` (a mount namespace) to mount a small tmpfs; RLIMIT case covers the rest"
        )
    mnt = previous.root / "mnt"
    mnt.mkdir()
    report = previous.root / "report.json"
    script = previous.root / "in_namespace.py"
    script.write_text(IN_NAMESPACE)
    subprocess.run(
        [unshare, "-m", "--propagation", "private", sys.executable, str(script), case, str(mnt),
         str(previous.outdir), str(report), str(ROOT / "main.py")],
        env=previous.env(),
        check=True,
        timeout=180,
    )  # fmt: skip
    result = json.loads(report.read_text())
    expected = f"{mnt / 'out'}: cannot write the output directory ({reason})\n"
    assert (result["code"], result["out"], result["err"]) == (2, "", expected)
    want = {
        f"out/{k}" if k != "." else "out": (None if v is None else v.hex())
        for k, v in tree(previous.outdir).items()
    }
    assert result["files"] == {"out": None, **want}  # nothing else: no staging directory left
