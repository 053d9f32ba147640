"""Secrets never reach the output; the same input gives byte-identical output."""

from __future__ import annotations

from pathlib import Path

from tests.support import EXAMPLES, ConfigDir

SENTINELS = ("tfstate-pw-SENTINEL-8f3a1c", "pve-token-SENTINEL-42d9e7")


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_secrets_never_reach_the_output(config_dir: ConfigDir) -> None:
    cluster = EXAMPLES.joinpath("cluster.yaml").read_text() + (
        f'\ntfstate_password: "{SENTINELS[0]}"\ntfstate_url: "https://tfstate.example.com"\n'
        f'proxmox_api_token_secret: "{SENTINELS[1]}"\n'
    )
    config_dir.write(cluster, EXAMPLES.joinpath("nodes.yaml").read_text())
    proc = config_dir.run_main()
    assert proc.returncode == 0, proc.stderr
    written = files_under(config_dir.outdir)
    assert "stacks/proxmox/cdk.tf.json" in written
    for secret in SENTINELS:
        for chunk in (secret.encode(), secret.encode()[:12]):
            assert not any(chunk in data for data in written.values()), secret
        assert secret not in proc.stdout and secret not in proc.stderr


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    outputs = []
    for run in ("one", "two"):
        d = ConfigDir(tmp_path / run)
        d.root.mkdir()
        d.write(EXAMPLES.joinpath("cluster.yaml").read_text(), EXAMPLES.joinpath("nodes.yaml").read_text())
        proc = d.run_main()
        assert proc.returncode == 0, proc.stderr
        outputs.append(files_under(d.outdir))
    assert outputs[0] == outputs[1]
    assert outputs[0]["stacks/proxmox/cdk.tf.json"]
