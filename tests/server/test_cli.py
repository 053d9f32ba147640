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


# -- TLS and metrics options ----------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from tls_certs import CA

    directory = tmp_path_factory.mktemp("certs")
    ca = CA(directory / "ca")
    one, two = ca.issue("one"), ca.issue("two")
    encrypted = directory / "encrypted.key"
    key = serialization.load_pem_private_key(one.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    garbage = directory / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return {
        "cert": one.cert,
        "key": one.key,
        "other_key": two.key,
        "encrypted_key": encrypted,
        "garbage": garbage,
        "ca": ca.cert,
        "missing": directory / "missing.pem",
    }


@pytest.mark.parametrize(
    ("cert", "key", "ca", "needles"),
    [
        ("cert", "other_key", None, ("does not match the certificate",)),
        ("missing", "key", None, ("--tls-cert", "cannot read")),
        ("cert", "missing", None, ("--tls-key", "cannot read")),
        ("key", "key", None, ("--tls-cert", "no PEM certificate")),
        ("cert", "cert", None, ("--tls-key", "no PEM private key")),
        ("garbage", "key", None, ("not a usable PEM certificate",)),
        ("cert", "encrypted_key", None, ("passphrase",)),
        ("cert", "key", "missing", ("--tls-client-ca", "cannot read")),
        ("cert", "key", "key", ("--tls-client-ca", "no PEM certificate")),
        ("cert", "key", "garbage", ("--tls-client-ca",)),
    ],
)
def test_bad_tls_files(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    certs: dict[str, Path],
    tmp_path: Path,
    cert: str,
    key: str,
    ca: str | None,
    needles: tuple[str, ...],
) -> None:
    args = [
        "serve",
        "--store",
        tmp_path.as_uri(),
        "--tls-cert",
        str(certs[cert]),
        "--tls-key",
        str(certs[key]),
    ]
    if ca:
        args += ["--tls-client-ca", str(certs[ca])]
    assert_usage_error(cli(*args, env=CREDS), *needles)


def test_encrypted_key_never_prompts(certs: dict[str, Path], tmp_path: Path) -> None:
    """A process with a terminal would be asked for the passphrase by OpenSSL: never."""
    args = ["serve", "--store", tmp_path.as_uri()]
    args += ["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["encrypted_key"])]
    assert_usage_error(run_cli(*args, env=CREDS), "passphrase")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--tls-cert", "CERT"], ("--tls-cert and --tls-key",)),
        (["--tls-key", "KEY"], ("--tls-cert and --tls-key",)),
        (["--tls-client-ca", "CA"], ("--tls-client-ca needs",)),
        (["--listen", "0.0.0.0:0"], ("not a loopback address", "--insecure-http")),
        (["--listen", "[::]:0"], ("not a loopback address",)),
        (["--metrics-listen", "nonsense"], ("--metrics-listen",)),
    ],
)
def test_tls_option_combinations(
    cli: Callable[..., subprocess.CompletedProcess[str]],
    certs: dict[str, Path],
    tmp_path: Path,
    args: list[str],
    needles: tuple[str, ...],
) -> None:
    names = {"CERT": str(certs["cert"]), "KEY": str(certs["key"]), "CA": str(certs["ca"])}
    argv = ["serve", "--store", tmp_path.as_uri(), *(names.get(a, a) for a in args)]
    assert_usage_error(cli(*argv, env=CREDS), *needles)


def test_plain_http_allowed_on_loopback_and_with_insecure_http() -> None:
    from tfstate_server.cli import _tls, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("::")
    parser = build_parser()
    args = parser.parse_args(["serve", "--listen", "0.0.0.0:8080", "--insecure-http"])
    assert _tls(args, "0.0.0.0") is None  # no refusal: a TLS proxy sits in front


def test_metrics_address_in_use(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli(
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            f"127.0.0.1:{port}",
            "--store",
            tmp_path.as_uri(),
            env=CREDS,
        )
    assert_usage_error(result, "--metrics-listen", "cannot listen on")


def test_expired_certificate_is_a_warning(certs: dict[str, Path], tmp_path: Path) -> None:
    import datetime

    from tfstate_harness import running_server
    from tls_certs import CA

    ca = CA(tmp_path / "ca")
    old = ca.issue(
        "old",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    args = ("--tls-cert", str(old.cert), "--tls-key", str(old.key))
    with running_server((tmp_path / "store").as_uri(), tmp_path, *args) as server:
        log = server.log()
    assert "WARNING" in log and "the certificate expired on 2021-01-01" in log
