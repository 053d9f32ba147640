"""The command line: --help documents every option; bad input is one line and exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tfstate_harness import PASSWORD, ROOT, USER

from tfstate_server.cli import build_parser, main


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TFSTATE_")}
    return subprocess.run(
        [sys.executable, "-m", "tfstate_server", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


CREDS = {"TFSTATE_USERNAME": USER, "TFSTATE_PASSWORD": PASSWORD}


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """main() in this process (fast); test_process_level_usage_error covers the real CLI."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        for name in list(os.environ):
            if name.startswith("TFSTATE_"):
                monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def test_process_level_usage_error() -> None:
    assert_usage_error(run_cli("serve", "--listen", "nonsense", env=CREDS), "--listen")


def test_help_documents_every_option() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    options = [opt for action in serve._actions for opt in action.option_strings]
    assert "--max-state-bytes" in options
    for option in options:
        assert option in result.stdout
    for documented in ("TFSTATE_USERNAME", "TFSTATE_PASSWORD", "AWS_ENDPOINT_URL_S3", "file:.state/tfstate"):
        assert documented in result.stdout
    top = run_cli("--help")
    assert top.returncode == 0 and "serve" in top.stdout


def assert_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfstate-server: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "listen",
    [
        "foo",
        "127.0.0.1",
        "127.0.0.1:",
        ":8080",
        "127.0.0.1:99999",
        "127.0.0.1:http",
        "[zz]:80",
        "bad_host!:80",
    ],
)
def test_bad_listen(cli: Callable[..., subprocess.CompletedProcess[str]], listen: str) -> None:
    assert_usage_error(cli("serve", "--listen", listen, env=CREDS), "--listen")


def test_listen_on_a_busy_port(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--listen", f"127.0.0.1:{port}", "--store", tmp_path.as_uri(), env=CREDS)
    assert_usage_error(result, "cannot listen on")


@pytest.mark.parametrize(
    "store",
    [
        "http://example.com/x",
        "file://otherhost/x",
        "file://",
        "s3://",
        "s3:///prefix",
        "ftp://x",
        "file:///x?y=1",
        "relative/path",
    ],
)
def test_bad_store_url(cli: Callable[..., subprocess.CompletedProcess[str]], store: str) -> None:
    assert_usage_error(cli("serve", "--store", store, env=CREDS), "--store")


def test_unusable_store_directory(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = cli("serve", "--store", (blocker / "store").as_uri(), env=CREDS)
    assert_usage_error(result, "not usable")


def test_missing_s3_bucket(cli: Callable[..., subprocess.CompletedProcess[str]], moto: object) -> None:
    env = {**CREDS, **moto.env}  # type: ignore[attr-defined]
    result = cli("serve", "--store", "s3://no-such-bucket-here/prefix", env=env)
    assert_usage_error(result, "not usable")


def test_unreadable_credentials_file(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    result = cli("serve", "--credentials-file", str(tmp_path / "missing"), "--store", tmp_path.as_uri())
    assert_usage_error(result, "cannot read credentials file")
    result = cli("serve", "--credentials-file", str(tmp_path), "--store", tmp_path.as_uri())
    assert_usage_error(result, "cannot read credentials file")


def test_malformed_credentials_file_does_not_echo_it(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    creds = tmp_path / "creds"
    creds.write_text(f"# users\n{PASSWORD}\n")
    result = cli("serve", "--credentials-file", str(creds), "--store", tmp_path.as_uri())
    assert_usage_error(result, f"{creds}:2")


def test_credentials_required_unless_no_auth(
    cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    assert_usage_error(cli("serve", "--store", tmp_path.as_uri()), "no credentials")
    assert_usage_error(
        cli("serve", "--store", tmp_path.as_uri(), env={"TFSTATE_USERNAME": USER}),
        "TFSTATE_PASSWORD",
    )
    assert_usage_error(cli("serve", "--no-auth", "--store", tmp_path.as_uri(), env=CREDS), "--no-auth")
    assert_usage_error(
        cli("serve", "--store", tmp_path.as_uri(), env={"TFSTATE_USERNAME": "a/b", "TFSTATE_PASSWORD": "x"}),
        "user name",
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-state-bytes", "lots"),
        ("--max-state-bytes", "10"),
        ("--keep-versions", "0"),
        ("--shutdown-timeout", "-1"),
        ("--fsync", "sometimes"),
    ],
)
def test_bad_option_values(
    cli: Callable[..., subprocess.CompletedProcess[str]], option: str, value: str
) -> None:
    assert_usage_error(cli("serve", option, value, env=CREDS), option)


def test_no_command(cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    assert_usage_error(cli())
