"""Finding and reading the operator's kubeconfig (workflow/cluster/kubeconfig.py): which
file wins, and one line for every kind of bad file, never quoting its content (it holds
credentials)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflow.cluster import kubeconfig
from workflow.cluster.api import KubeApi
from workflow.cluster.kubeconfig import Found, KubeconfigError, locate, read

SECRET = "c2VjcmV0LWtleS1tYXRlcmlhbA-do-not-print"


def good(server: str = "https://127.0.0.1:6443", name: str = "admin@talos") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "talos", "cluster": {"server": server, "certificate-authority-data": "QUJD"}}],
        "users": [{"name": name, "user": {"token": SECRET}}],
        "contexts": [{"name": name, "context": {"cluster": "talos", "user": name}}],
        "current-context": name,
    }


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_option_then_env_then_the_template_default(tmp_path: Path) -> None:
    write(tmp_path / "kubeconfig", good())
    other = write(tmp_path / "other", good())
    env = {"KUBECONFIG": str(other)}
    assert locate("given.yaml", "auto", env, tmp_path) == Found((Path("given.yaml"),), "--kubeconfig")
    assert locate(None, "auto", env, tmp_path) == Found((other,), "KUBECONFIG")
    assert locate(None, "auto", {}, tmp_path) == Found((tmp_path / "kubeconfig",), "./kubeconfig")
    assert locate(None, "on", {}, tmp_path) == Found((tmp_path / "kubeconfig",), "./kubeconfig")
    assert locate("given.yaml", "off", env, tmp_path) is None


def test_none_found(tmp_path: Path) -> None:
    assert locate(None, "auto", {}, tmp_path) is None
    with pytest.raises(KubeconfigError) as info:
        locate(None, "on", {}, tmp_path)
    assert str(info.value) == (
        "--cluster-check on: no kubeconfig (none given with --kubeconfig, KUBECONFIG unset, no "
        "./kubeconfig); expected the one `task bootstrap:talos` writes"
    )


def test_kubeconfig_env_all_missing(tmp_path: Path) -> None:
    missing = f"{tmp_path}/a{os.pathsep}{tmp_path}/b"
    with pytest.raises(KubeconfigError) as info:
        locate(None, "auto", {"KUBECONFIG": missing}, tmp_path)
    assert str(info.value) == (
        f"KUBECONFIG names {missing}, which does not exist (expected a kubeconfig file; unset it, "
        "or pass --cluster-check off to apply without the cluster check)"
    )


def test_kubeconfig_list_merges_first_wins(tmp_path: Path) -> None:
    first = good("https://127.0.0.1:1111")
    first.pop("current-context")
    a = write(tmp_path / "a", first)
    b = write(tmp_path / "b", good("https://127.0.0.1:2222"))
    found = locate(None, "auto", {"KUBECONFIG": f"{a}{os.pathsep}{tmp_path}/gone{os.pathsep}{b}"}, tmp_path)
    assert found is not None and found.paths == (a, b)
    merged = read(found)
    assert merged["current-context"] == "admin@talos"  # from b: a set none
    assert kubeconfig.server_of(merged) == "https://127.0.0.1:1111"  # cluster "talos" from a


BAD: list[tuple[str, Any, str]] = [
    ("empty", "", "not a mapping (expected a kubeconfig)"),
    ("list", "- a\n- b\n", "not a mapping (expected a kubeconfig)"),
    ("scalar", f"{SECRET}\n", "not a mapping (expected a kubeconfig)"),
    ("broken-yaml", f"users:\n  - name: x\n    token: {SECRET}\n  bad: [\n", "line 4: not valid YAML"),
    ("binary", b"\x00\xff\xfe" + SECRET.encode(), "not UTF-8 text at byte 1 (expected a kubeconfig)"),
    ("recursive", "a: &a\n  b: *a\n", "nested too deeply or recursive (expected a kubeconfig)"),
    ("deep", "a: " + "[" * 40 + "]" * 40 + "\n", "nested too deeply or recursive (expected a kubeconfig)"),
    ("users-not-list", {"users": {"name": "x"}, "current-context": "x"}, "users: not a list of named"),
    ("unnamed", {"clusters": [{"cluster": {}}], "current-context": "x"}, "clusters: not a list of named"),
    (
        "no-context",
        {**good(), "current-context": ""},
        "no current-context (expected a kubeconfig with one set)",
    ),
    ("context-number", {**good(), "current-context": 7}, "current-context: not text (expected a kubeconfig)"),
    ("template", "current-context: ${HOME}\nclusters: []\n", "not a usable kubeconfig"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_kubeconfig_one_line_no_content(tmp_path: Path, case: str, content: Any, message: str) -> None:
    path = tmp_path / case
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write(path, content)
    with pytest.raises(KubeconfigError) as info:
        config = read(Found((path,), "--kubeconfig"))
        KubeApi(config, str(path)).close()
    line = str(info.value)
    assert line.startswith(f"{path}: ")
    assert message in line
    assert "\n" not in line and SECRET[:8] not in line


def test_huge_and_unreadable(tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    with huge.open("wb") as f:
        f.truncate(kubeconfig.MAX_BYTES + 1)
    with pytest.raises(KubeconfigError, match=r"huge: larger than 4 MiB \(expected a kubeconfig\)$"):
        read(Found((huge,), "x"))
    with pytest.raises(KubeconfigError, match=r"gone: not a regular file \(expected a kubeconfig\)$"):
        read(Found((tmp_path / "gone",), "x"))
    with pytest.raises(KubeconfigError, match=r": not a regular file"):
        read(Found((tmp_path,), "x"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(KubeconfigError, match=r"fifo: not a regular file"):
        read(Found((fifo,), "x"))  # never opened: a FIFO would block the read
    if os.geteuid() != 0:
        locked = write(tmp_path / "locked", good())
        locked.chmod(0)
        with pytest.raises(
            KubeconfigError, match=r"locked: cannot read the kubeconfig \(Permission denied\)$"
        ):
            read(Found((locked,), "x"))


def test_client_key_data_goes_to_a_private_dir_removed_after(tmp_path: Path) -> None:
    config = good()
    config["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(b"not a cert").decode(),
        "client-key-data": base64.b64encode(SECRET.encode()).decode(),
    }
    api = KubeApi(config, "kubeconfig")
    private = Path(api._private.path)
    assert private.stat().st_mode & 0o777 == 0o700
    assert any(SECRET.encode() in p.read_bytes() for p in private.iterdir())
    api.close()
    assert not private.exists()


def test_server_shown_without_userinfo() -> None:
    assert kubeconfig.server_of(good("https://admin:pw@10.0.0.1:6443/x")) == "https://10.0.0.1:6443/x"
