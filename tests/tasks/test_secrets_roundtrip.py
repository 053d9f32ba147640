"""A secret's bytes survive `task configure` -> sops -> tofu's environment exactly.

Observed where they arrive: our state server, started with the very password, accepts
tofu's Basic Auth only if TF_HTTP_PASSWORD holds the same bytes (`task configure` ends in
`tofu init`, which reads the state). Values that YAML 1.1 or 1.2 would read as numbers,
booleans or null, spaces, quotes, unicode; and a value typed without quotes in
`secrets-edit` is refused in one line that shows no value.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml

from devenv.scan import find_secrets
from devenv.state_server import StateServer
from devenv.workspace import example_cluster
from tests.support import EXAMPLES
from tests.tasks.taskrun import TaskWorkspace
from workflow import secrets as sec
from workflow.setup_tools import tools_env

pytestmark = pytest.mark.e2e

DENIED = "HTTP remote state endpoint requires auth"
TOKEN = f"tok-{secrets.token_hex(6)}"


def workspace_for(tmp_path: Path, url: str, password_yaml: str) -> TaskWorkspace:
    ws = TaskWorkspace(tmp_path / "ws")
    ws.root.mkdir()
    cluster = {**example_cluster(), "tfstate_url": url}
    ws.cluster.write_text(
        yaml.safe_dump(cluster, sort_keys=False)
        + f"tfstate_password: {password_yaml}\nproxmox_api_token_secret: {password_yaml}\n"
    )
    ws.nodes.write_text(EXAMPLES.joinpath("nodes.yaml").read_text())
    return ws


def written_files(ws: TaskWorkspace) -> list[Path]:
    return [p for p in ws.root.rglob("*") if p.is_file() and p != ws.cluster]


@pytest.mark.parametrize(
    "password",
    [
        "6e06",  # YAML 1.2 float; PyYAML leaves it unquoted
        "0o17",  # YAML 1.2 octal
        "1e3",
        "007",
        "0x1F",
        "1_000",
        "true",
        "null",
        "~",
        "yes",
        ".inf",
        "  spaces inside and around  ",
        "quotes \" and ' and \\ backslash",
        "ünïcødé-密码-🔑",
        "#not-a-comment: {a: [b]} &anchor *alias !tag",
    ],
)
def test_secret_reaches_tofu_byte_for_byte(tmp_path: Path, password: str) -> None:
    with StateServer(tmp_path / "state", password=password) as state:
        ws = workspace_for(tmp_path, state.url, json.dumps(password, ensure_ascii=False))
        proc = ws.task("configure")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert DENIED not in proc.stdout + proc.stderr
        # the next task decrypts them again and reads the state with them
        listed = ws.task("infra:state-list")  # the server answered: there is no state yet
        assert "No state file was found!" in listed.stdout + listed.stderr, listed.stderr[-2000:]
        assert DENIED not in listed.stdout + listed.stderr
    encrypted = (ws.root / "secrets.sops.yaml").read_text()
    assert encrypted.count("type:str]") >= 3 and "type:float" not in encrypted and "type:int" not in encrypted
    got = sec.decrypt(ws.paths, tools_env())
    assert got.tfstate_password == password and got.proxmox_api_token_secret == password
    assert got.tofu_env()["TF_HTTP_PASSWORD"] == password
    if len(password) >= 6:  # shorter ones ("true", "007") occur in any file by chance
        assert find_secrets(written_files(ws), [password]) == []
        assert not [out for out in ws.log if password in out]


def test_control_the_server_refuses_other_bytes(tmp_path: Path) -> None:
    """The observation can fail: a server expecting 6000000 refuses "6e06"."""
    with StateServer(tmp_path / "state", password="6000000") as state:
        ws = workspace_for(tmp_path, state.url, '"6e06"')
        proc = ws.task("configure")
    assert proc.returncode != 0 and DENIED in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("typed", "kind"),
    [("6e06", "a number"), ("0o17", "a number"), ("true", "a boolean"), ("[a, b]", "a list or mapping")],
)
def test_unquoted_value_from_secrets_edit_is_one_line(tmp_path: Path, typed: str, kind: str) -> None:
    ws = workspace_for(tmp_path, "http://127.0.0.1:9", f'"{TOKEN}"')  # nothing listens: never contacted
    ws.cluster.write_text(ws.cluster.read_text().replace("tfstate_url: http://127.0.0.1:9\n", ""))
    assert ws.task("synth").returncode == 0
    env = tools_env()
    sec.encrypt(sec.Secrets(tfstate_password=TOKEN), ws.paths, env)
    editor = tmp_path / "editor"
    editor.write_text(
        "#!/usr/bin/env python3\nimport os, re, sys\ntext = open(sys.argv[1]).read()\n"
        "text = re.sub(r'(?m)^tfstate_password:.*$', 'tfstate_password: ' + os.environ['TYPED'], text)\n"
        "open(sys.argv[1], 'w').write(text)\n"
    )
    editor.chmod(0o755)
    assert ws.task("infra:secrets-edit", env={"EDITOR": str(editor), "TYPED": typed}).returncode == 0
    proc = ws.task("infra:output")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and errors == [
        f"error: {ws.root / 'secrets.sops.yaml'}: tfstate_password is not a string once decrypted "
        f'(YAML read it as {kind}); quote it with `task infra:secrets-edit`, e.g. tfstate_password: "..."'
    ]
    assert "Traceback" not in proc.stderr
    for shown in (typed, "6000000", "15", "True"):
        assert shown not in proc.stdout + errors[0].replace("tfstate_password", "")
