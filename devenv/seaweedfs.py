"""SeaweedFS's S3 gateway on loopback, a real S3 server for the tfstate server's S3 store.

    weed = seaweedfs_binary()                      # built by scripts/setup-tools --seaweedfs
    with running_seaweedfs(weed, workdir) as s3:
        env = s3.env                               # AWS_ENDPOINT_URL_S3, keys, region
        bucket = s3.new_bucket()

One `weed server -s3` process (master, volume server, filer and S3 gateway), its data in
`workdir`, every port free and on 127.0.0.1, telemetry off, no bucket made on a write.
Its identities are made per run with random keys: `admin` may do anything, `reader` may
only read and list, `limited` may read and list but write nothing other than the tfstate
server's start-up probe objects, `unversioned` may write states, locks and probes but no
versions, `outsider` may only touch a bucket that never exists. Every wait is bounded, and the
process (with anything it started) is stopped when the block ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.ports import free_ports
from tfstate_server.storage.s3 import PROBE_NAME
from workflow.setup_tools import ensure_tools

HOST = "127.0.0.1"
# Master, volume server, filer and gateway come up one after the other, and the first
# write waits for a volume to be grown: slow on a small, busy machine.
START_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0
# weed's own shutdown spends ~15 s retrying metadata writes to its stopped volume server;
# its data is thrown away, so after this long it is killed.
GRACE = 5.0
REGION = "us-east-1"
NO_BUCKET = "never-created"  # the only bucket the outsider identity may touch


class SeaweedError(RuntimeError):
    """weed could not be built, or did not come up: the message says why."""


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


def _keys(name: str) -> Keys:
    return Keys(f"{name.upper()}{secrets.token_hex(6).upper()}", secrets.token_hex(20))


class KeyedEndpoint:
    """An S3 API endpoint with several identities (this server, or a test's keyed moto)."""

    endpoint: str
    admin: Keys

    @property
    def env(self) -> dict[str, str]:
        """The AWS_* variables for a process using this server as admin."""
        return self.env_as(self.admin)

    def env_as(self, keys: Keys) -> dict[str, str]:
        """The AWS_* variables for a process using this server with `keys`."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": keys.access_key,
            "AWS_SECRET_ACCESS_KEY": keys.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }


@dataclass
class SeaweedFS(KeyedEndpoint):
    endpoint: str
    admin: Keys
    reader: Keys
    limited: Keys
    unversioned: Keys
    outsider: Keys
    proc: subprocess.Popen[bytes]
    log_path: Path

    def client(self, keys: Keys | None = None) -> Any:
        import boto3
        import botocore.config

        keys = keys or self.admin
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=keys.access_key,
            aws_secret_access_key=keys.secret_key,
            region_name=REGION,
            config=botocore.config.Config(retries={"max_attempts": 1}),
        )

    def new_bucket(self) -> str:
        name = f"tfstate-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def seaweedfs_binary(log: Path | None = None) -> str:
    """The `weed` of scripts/setup-tools --seaweedfs (built into the tools cache on the
    first call; several minutes)."""
    tools = ensure_tools("--seaweedfs", log=log)
    path = tools.env.get("PATH", "")
    for entry in path.split(os.pathsep):
        candidate = Path(entry) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SeaweedError("scripts/setup-tools --seaweedfs succeeded but put no `weed` on the PATH it printed")


def _identities(
    admin: Keys, reader: Keys, limited: Keys, unversioned: Keys, outsider: Keys
) -> dict[str, Any]:
    def identity(name: str, keys: Keys, actions: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "credentials": [{"accessKey": keys.access_key, "secretKey": keys.secret_key}],
            "actions": actions,
        }

    return {
        "identities": [
            identity("admin", admin, ["Admin", "Read", "List", "Tagging", "Write"]),
            identity("reader", reader, ["Read", "List"]),
            identity("limited", limited, ["Read", "List", f"Write:*/*{PROBE_NAME}*"]),
            identity(
                "unversioned",
                unversioned,
                ["Read", "List", "Write:*/*.tfstate", "Write:*/*.lock", f"Write:*/*{PROBE_NAME}*"],
            ),
            identity("outsider", outsider, [f"Read:{NO_BUCKET}", f"List:{NO_BUCKET}", f"Write:{NO_BUCKET}"]),
        ]
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group (its own session: weed and anything it started), then
    SIGKILL. Signalled only while weed is not yet reaped, so the group id is still its."""
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(GRACE)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)


def _ready(s3: SeaweedFS, deadline: float) -> None:
    """Wait until a bucket can be made and written (a volume has been grown)."""
    import botocore.exceptions

    last = "no answer"
    bucket = f"ready-{uuid.uuid4().hex[:8]}"
    while True:
        if s3.proc.poll() is not None:
            tail = "\n".join(s3.log().splitlines()[-20:])
            raise SeaweedError(f"weed exited with code {s3.proc.returncode}:\n{tail}")
        try:
            client = s3.client()
            with suppress(botocore.exceptions.ClientError):
                client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="ready", Body=b"ready")
            client.delete_object(Bucket=bucket, Key="ready")
            client.delete_bucket(Bucket=bucket)
            return
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise SeaweedError(f"weed's S3 gateway was not ready within {START_TIMEOUT:.0f} s: {last}")
        time.sleep(0.5)


@contextmanager
def running_seaweedfs(
    weed: str, workdir: Path, *, start_timeout: float = START_TIMEOUT
) -> Iterator[SeaweedFS]:
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    # Unix sockets need a short path (108 bytes at most): a directory of their own.
    sockets = Path(tempfile.mkdtemp(prefix="weed-"))
    names = ("admin", "reader", "limited", "unversioned", "outsider")
    keys = [_keys(name) for name in names]
    config = workdir / "s3.json"
    config.write_text(json.dumps(_identities(*keys)))
    config.chmod(0o600)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_port, s3_grpc = free_ports(8)
    cmd = [
        weed,
        "server",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-dir={data}",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=16",
        "-volume.max=500",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={sockets / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={sockets / 's3.sock'}",
        f"-s3.config={config}",
        # Else a write with admin keys to a deleted bucket makes it again, empty: a store
        # must never start afresh where its history was.
        "-s3.autoCreateBucket=false",
    ]
    log_path = workdir / "weed.log"
    # Each bucket is a collection of its own, which grows 7 volumes by default: one will do.
    env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = SeaweedFS(f"http://{HOST}:{s3_port}", *keys, proc=proc, log_path=log_path)
    try:
        _ready(server, time.monotonic() + start_timeout)
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(sockets, ignore_errors=True)
