"""An https:// state server with a private CA and a client certificate: the backend block
gets addresses only; the PEM texts reach tofu through TF_HTTP_CLIENT_* in its environment,
the client key and TF_ENCRYPTION as SOPS secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config import ConfigPaths, load_config
from tests.support import BASE_CLUSTER, ConfigDir, node
from workflow.errors import WorkflowError
from workflow.secrets import Secrets, state_tls_env

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfakeCAfortest\n-----END CERTIFICATE-----\n"
CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfakeCLIENTcert\n-----END CERTIFICATE-----\n"
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMIGHfakeCLIENTkey0123\n-----END PRIVATE KEY-----\n"


def _write(config_dir: ConfigDir) -> ConfigDir:
    (config_dir.root / "pki").mkdir()
    (config_dir.root / "pki" / "state-ca.pem").write_text(CA_PEM)
    (config_dir.root / "pki" / "client.crt").write_text(CERT_PEM)
    cluster = {
        **BASE_CLUSTER,
        "tfstate_url": "https://tfstate.example.com:8443",
        "tfstate_password": "state-password-123",
        "tfstate_ca_file": "pki/state-ca.pem",
        "tfstate_client_certificate_file": "pki/client.crt",
        "tfstate_client_key": KEY_PEM,
    }
    return config_dir.write(cluster, [node("cp1", 1)])


def test_https_backend_holds_addresses_only(config_dir: ConfigDir) -> None:
    stack = _write(config_dir).synth()
    assert stack["terraform"]["backend"]["http"] == {
        "address": "https://tfstate.example.com:8443/states/proxmox",
        "lock_address": "https://tfstate.example.com:8443/states/proxmox/lock",
        "lock_method": "LOCK",
        "unlock_address": "https://tfstate.example.com:8443/states/proxmox/lock",
        "unlock_method": "UNLOCK",
    }
    written = "".join(p.read_text(errors="replace") for p in config_dir.outdir.rglob("*") if p.is_file())
    for never in ("BEGIN", "fakeCA", "fakeCLIENT", "state-ca.pem", "client.crt", "pki/", "state-password"):
        assert never not in written


def test_pem_texts_reach_tofu_through_its_environment(config_dir: ConfigDir) -> None:
    _write(config_dir)
    cluster = load_config(ConfigPaths(config_dir.cluster, config_dir.nodes)).config.cluster
    secrets = Secrets.from_cluster(cluster)
    env = {**state_tls_env(cluster, config_dir.root), **secrets.tofu_env()}
    assert env["TF_HTTP_CLIENT_CA_CERTIFICATE_PEM"] == CA_PEM
    assert env["TF_HTTP_CLIENT_CERTIFICATE_PEM"] == CERT_PEM
    assert env["TF_HTTP_CLIENT_PRIVATE_KEY_PEM"] == KEY_PEM
    assert env["TF_HTTP_PASSWORD"] == "state-password-123"
    # The key is a secret (encrypted by `task configure`), never shown.
    assert secrets.as_dict()["tfstate_client_key"] == KEY_PEM
    assert "fakeCLIENTkey" not in repr(secrets) and "tfstate_client_key" in repr(secrets)


def test_state_encryption_config_is_a_secret_for_tofu() -> None:
    hcl = 'key_provider "pbkdf2" "state" {\n  passphrase = "correct horse battery staple"\n}\n'
    secrets = Secrets(tf_encryption=hcl)
    assert secrets.tofu_env() == {"TF_ENCRYPTION": hcl}
    assert "horse" not in repr(secrets)
    assert Secrets().tofu_env() == {}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "is not a regular file"),
        ("fifo", "is not a regular file"),
        ("huge", "is larger than 1 MiB"),
        ("not a certificate\n", "holds no PEM certificate"),
        (b"\xff\xfe", "not ASCII"),
    ],
)
def test_unusable_ca_file_is_one_line(
    config_dir: ConfigDir, tmp_path: Path, content: str | bytes | None, needle: str
) -> None:
    _write(config_dir)
    cluster = load_config(ConfigPaths(config_dir.cluster, config_dir.nodes)).config.cluster
    ca = config_dir.root / "pki" / "state-ca.pem"
    if content is None:
        ca.unlink()
    elif content == "fifo":
        ca.unlink()
        os.mkfifo(ca)
    elif content == "huge":
        with ca.open("ab") as f:
            f.truncate(2 * 1024 * 1024)
    elif isinstance(content, bytes):
        ca.write_bytes(content)
    else:
        ca.write_text(content)
    with pytest.raises(WorkflowError) as caught:
        state_tls_env(cluster, config_dir.root)
    message = str(caught.value)
    assert message.startswith("tfstate_ca_file: ") and needle in message and "\n" not in message
