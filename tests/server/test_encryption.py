"""OpenTofu's own state encryption (TF_ENCRYPTION) through the server, on both stores: the
server stores and versions the encrypted body, and keeps its serial/lineage guard."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tfstate_harness import Paths, Server, make_client

PASSPHRASE = "pp-" + uuid.uuid4().hex  # unique, so a leak anywhere would be seen

ENCRYPTION = f"""
key_provider "pbkdf2" "state" {{
  passphrase = "{PASSPHRASE}"
}}
method "aes_gcm" "state" {{
  keys = key_provider.pbkdf2.state
}}
state {{
  method   = method.aes_gcm.state
  enforced = true
}}
"""


def test_tofu_state_encryption_through_the_server(
    server: Server, p: Paths, tools_env: dict[str, str], tmp_path: Path
) -> None:
    tofu = make_client(tools_env["TOFU"], tmp_path / "work", tools_env, server, p.name)
    tofu.env["TF_ENCRYPTION"] = ENCRYPTION
    tofu.run("init", "-no-color")
    tofu.run("apply", "-no-color", "-auto-approve", "-var", "label=first-secret-label")
    first = server.request("GET", p.state).body
    tofu.run("apply", "-no-color", "-auto-approve", "-var", "label=second-secret-label")
    assert tofu.run("output", "-raw", "label").stdout == "second-secret-label"

    stored = server.request("GET", p.state).body
    data = json.loads(stored)
    # serial and lineage in clear beside the ciphertext; nothing else readable.
    assert isinstance(data["serial"], int) and isinstance(data["lineage"], str)
    assert "encrypted_data" in data and "resources" not in data and "outputs" not in data
    for readable in (b"secret-label", b"terraform_data", PASSPHRASE.encode()):
        assert readable not in stored and readable not in first
    assert json.loads(first)["lineage"] == data["lineage"]
    assert json.loads(first)["serial"] < data["serial"]

    # Every write kept as a version, encrypted as it was sent.
    versions = server.request("GET", p.versions).json()
    assert versions[0]["serial"] == data["serial"] and versions[0]["lineage"] == data["lineage"]
    assert server.request("GET", f"{p.versions}/{data['serial']}").body == stored
    older = json.loads(first)["serial"]
    assert server.request("GET", f"{p.versions}/{older}").body == first

    # The guard reads the clear serial and lineage: an older body, or another lineage, is
    # refused as for any state.
    assert server.request("POST", p.state, first).status == 409
    other_lineage = json.dumps({**data, "lineage": str(uuid.uuid4()), "serial": data["serial"] + 1})
    assert server.request("POST", p.state, other_lineage.encode()).status == 409
    assert server.request("GET", p.state).body == stored

    # Without the passphrase, tofu cannot read it (so it was encrypted for real).
    plain = make_client(tools_env["TOFU"], tmp_path / "plain", tools_env, server, p.name)
    plain.run("init", "-no-color", check=False)
    refused = plain.run("output", "-raw", "label", check=False)
    assert refused.returncode != 0 and "second-secret-label" not in refused.stdout
    assert PASSPHRASE not in server.log()
