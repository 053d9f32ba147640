"""Credentials: cluster.yaml -> secrets.sops.yaml (sops + age) -> tofu's environment.

Plaintext only ever travels through pipes: sops reads it on stdin when encrypting and
writes it to stdout when decrypting; it is never written to a file or put on a command
line (visible in `ps`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from config.schema import ClusterFile
from workflow.errors import WorkflowError
from workflow.workspace import Workspace

TIMEOUT = 60
SOPS_UNCHANGED = 200  # `sops edit` when the file was saved without a change


@dataclass(frozen=True, repr=False)
class Secrets:
    tfstate_username: str | None = None
    tfstate_password: str | None = None
    proxmox_api_token_id: str | None = None
    proxmox_api_token_secret: str | None = None
    tfstate_client_key: str | None = None  # PEM, for mutual TLS with the state server
    # OpenTofu's TF_ENCRYPTION (HCL) as a whole: it holds the state passphrase.
    tf_encryption: str | None = None

    def __repr__(self) -> str:  # never print the values by accident
        present = [f.name for f in fields(self) if getattr(self, f.name)]
        return f"Secrets(present={present})"

    @classmethod
    def from_cluster(cls, cluster: ClusterFile) -> Secrets:
        return cls(
            tfstate_username=cluster.tfstate_username if cluster.tfstate_password else None,
            tfstate_password=_reveal(cluster.tfstate_password),
            proxmox_api_token_id=cluster.proxmox_api_token_id,
            proxmox_api_token_secret=_reveal(cluster.proxmox_api_token_secret),
            tfstate_client_key=_reveal(cluster.tfstate_client_key),
        )

    @property
    def has_state_credentials(self) -> bool:
        return bool(self.tfstate_username and self.tfstate_password)

    @property
    def has_proxmox_token(self) -> bool:
        return bool(self.proxmox_api_token_id and self.proxmox_api_token_secret)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def merged_with(self, newer: Secrets) -> Secrets:
        """These secrets with every value `newer` has replacing ours."""
        return Secrets(**{**self.as_dict(), **newer.as_dict()})

    def as_dict(self) -> dict[str, str]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name))}

    def tofu_env(self) -> dict[str, str]:
        env = {}
        if self.has_state_credentials:
            env["TF_HTTP_USERNAME"] = str(self.tfstate_username)
            env["TF_HTTP_PASSWORD"] = str(self.tfstate_password)
        if self.has_proxmox_token:
            env["PROXMOX_VE_API_TOKEN"] = f"{self.proxmox_api_token_id}={self.proxmox_api_token_secret}"
        if self.tfstate_client_key:
            env["TF_HTTP_CLIENT_PRIVATE_KEY_PEM"] = self.tfstate_client_key
        if self.tf_encryption:
            env["TF_ENCRYPTION"] = self.tf_encryption
        return env


MAX_PEM_BYTES = 1024 * 1024  # a CA bundle is kilobytes


def state_tls_env(cluster: ClusterFile, root: Path) -> dict[str, str]:
    """TF_HTTP_CLIENT_CA_CERTIFICATE_PEM / TF_HTTP_CLIENT_CERTIFICATE_PEM from the files
    cluster.yaml names (relative to `root`, its directory): PEM text in tofu's
    environment, as the HTTP backend takes it, never a path in its configuration."""
    env = {}
    for key, variable in (
        ("tfstate_ca_file", "TF_HTTP_CLIENT_CA_CERTIFICATE_PEM"),
        ("tfstate_client_certificate_file", "TF_HTTP_CLIENT_CERTIFICATE_PEM"),
    ):
        name = getattr(cluster, key)
        if name is None:
            continue
        path = root / name
        try:
            if not path.is_file():  # a FIFO or a device would block or never end
                raise WorkflowError(f"{key}: {path} is not a regular file (expected a PEM certificate file)")
            if path.stat().st_size > MAX_PEM_BYTES:
                raise WorkflowError(f"{key}: {path} is larger than 1 MiB (expected a PEM certificate file)")
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not ASCII PEM text"
            raise WorkflowError(f"{key}: cannot read {path}: {reason}") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise WorkflowError(f"{key}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        env[variable] = text
    return env


def _reveal(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def _tool(name: str, env: Mapping[str, str]) -> str:
    found = shutil.which(name, path=env.get("PATH"))
    if not found:
        raise WorkflowError(f"{name} not found on PATH (scripts/setup-tools --sops provides it)")
    return found


def _sops_env(ws: Workspace, env: Mapping[str, str]) -> dict[str, str]:
    return {**env, "SOPS_AGE_KEY_FILE": str(ws.age_key.resolve())}


def ensure_age_key(ws: Workspace, env: Mapping[str, str]) -> str:
    """The age public key (recipient); creates the key file on first use."""
    if not ws.age_key.exists():
        ws.age_key.parent.mkdir(parents=True, exist_ok=True)
        proc = _run([_tool("age-keygen", env), "-o", str(ws.age_key)], env)
        if proc.returncode != 0:
            raise WorkflowError(f"age-keygen could not create {ws.age_key}: {proc.stderr.strip()}")
        ws.age_key.chmod(0o600)
        print(
            f"WARNING: created a new age key at {ws.age_key}. Back it up somewhere safe (a "
            "password manager): without it secrets.sops.yaml cannot be decrypted. It is "
            "gitignored; never commit it.",
            file=sys.stderr,
        )
    return check_age_key(ws, env)


def check_age_key(ws: Workspace, env: Mapping[str, str]) -> str:
    """The public key of ws.age_key; WorkflowError when the file holds no age key (what
    it holds is never shown: it may be a secret of another kind)."""
    proc = _run([_tool("age-keygen", env), "-y", str(ws.age_key)], env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise WorkflowError(
            f"{ws.age_key} is not an age key file (no AGE-SECRET-KEY-1... line that "
            "age-keygen -y accepts); point SOPS_AGE_KEY_FILE at your key"
        )
    return lines[-1]


def encrypt(secrets: Secrets, ws: Workspace, env: Mapping[str, str]) -> None:
    """Write ws.secrets, encrypted to the age key; atomically, so a failure keeps the old."""
    recipient = ensure_age_key(ws, env)
    # JSON in: every value is a string as written. In YAML, sops (YAML 1.2) would read a
    # plain `6e06`, `0o17` or `true` that PyYAML (YAML 1.1) left unquoted as a number or
    # a boolean, and store it as one. The file sops writes stays YAML (secrets-edit).
    plaintext = json.dumps(secrets.as_dict(), sort_keys=True, ensure_ascii=False)
    proc = _run(
        [
            _tool("sops", env),
            "--encrypt",
            "--age",
            recipient,
            "--input-type",
            "json",
            "--output-type",
            "yaml",
            "/dev/stdin",
        ],
        _sops_env(ws, env),
        stdin=plaintext,
    )
    if proc.returncode != 0:
        raise WorkflowError(f"sops could not encrypt {ws.secrets}: {_first_line(proc.stderr)}")
    tmp = ws.secrets.with_name(ws.secrets.name + ".tmp")
    try:
        tmp.write_text(proc.stdout)
        os.replace(tmp, ws.secrets)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkflowError(f"cannot write {ws.secrets}: {exc.strerror or exc}") from exc


def decrypt(ws: Workspace, env: Mapping[str, str]) -> Secrets:
    """The secrets in ws.secrets, or empty ones when the file does not exist."""
    if not ws.secrets.exists():
        return Secrets()
    if not ws.age_key.exists():
        raise WorkflowError(
            f"cannot decrypt {ws.secrets}: age key file {ws.age_key} not found; set "
            "SOPS_AGE_KEY_FILE to the key that encrypted it (or restore it from your backup)"
        )
    proc = _run(
        [_tool("sops", env), "--decrypt", "--output-type", "json", str(ws.secrets)],
        _sops_env(ws, env),
    )
    if proc.returncode != 0:
        if "Failed to get the data key" in proc.stderr or "did not match" in proc.stderr:
            check_age_key(ws, env)  # only now: a key file that is no key at all says so
            raise WorkflowError(
                f"cannot decrypt {ws.secrets}: the age key {ws.age_key} is not one it was "
                "encrypted to; set SOPS_AGE_KEY_FILE to the right key, or put the secrets in "
                "cluster.yaml and run `task configure` to encrypt them to this key"
            )
        raise WorkflowError(f"cannot decrypt {ws.secrets}: {_first_line(proc.stderr)}")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise WorkflowError(
            f"{ws.secrets} does not hold a mapping of credentials (decrypted it is "
            "not key: value pairs); fix it with `task infra:secrets-edit`"
        )
    known = {f.name for f in fields(Secrets)}
    values = {k: v for k, v in data.items() if k in known and v is not None}
    # A value typed in `secrets-edit` without quotes may be a number or a boolean to sops
    # (YAML 1.2): str() of it would not be what was typed. Never shown: it is a secret.
    for key, value in sorted(values.items()):
        if not isinstance(value, str):
            raise WorkflowError(
                f"{ws.secrets}: {key} is not a string once decrypted (YAML read it as "
                f'{_yaml_kind(value)}); quote it with `task infra:secrets-edit`, e.g. {key}: "..."'
            )
    return Secrets(**values)


def _yaml_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a list or mapping"


def edit(ws: Workspace, env: Mapping[str, str]) -> int:
    """`sops edit` (sops' own editor flow, $EDITOR) for rotating credentials."""
    if not ws.secrets.exists():
        raise WorkflowError(
            f"{ws.secrets} does not exist yet: put the credentials in "
            "cluster.yaml and run `task configure` first"
        )
    ensure_age_key(ws, env)
    code = subprocess.run(
        [_tool("sops", env), "edit", str(ws.secrets)], env=_sops_env(ws, env), check=False
    ).returncode
    if code == SOPS_UNCHANGED:
        print(f"no change: {ws.secrets} stays as it was", file=sys.stderr)
        return 0
    return code


def _run(
    argv: list[str], env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool with its output captured; secrets travel only on stdin/stdout."""
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=dict(env), timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkflowError(f"{Path(argv[0]).name} did not finish within {TIMEOUT} s") from exc


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
