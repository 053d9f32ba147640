"""The committed provider lock file lands beside cdk.tf.json, unless the provider comes
from the registry (whose package the mirror build's checksum does not match)."""

from __future__ import annotations

import pytest

from tests.support import ROOT, ConfigDir

LOCK = ROOT / "stacks" / ".terraform.lock.hcl"


@pytest.mark.parametrize(("source", "copied"), [(None, True), ("mirror", True), ("registry", False)])
def test_lock_file_follows_the_provider_source(example_dir: ConfigDir, monkeypatch, source, copied) -> None:
    if source is None:
        monkeypatch.delenv("TALOS_PROVIDER_SOURCE", raising=False)
    else:
        monkeypatch.setenv("TALOS_PROVIDER_SOURCE", source)
    example_dir.synth()
    lock = example_dir.outdir / "stacks" / "proxmox" / ".terraform.lock.hcl"
    assert lock.exists() == copied
    if copied:
        assert lock.read_bytes() == LOCK.read_bytes()
        assert 'provider "registry.opentofu.org/bpg/proxmox"' in lock.read_text()
