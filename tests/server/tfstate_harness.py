"""Real processes on loopback for the tfstate server tests: the server, moto, tofu/terraform.

Every process started here is stopped by its owner (context managers / fixtures), and
every wait is bounded.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devenv.ports import free_port as free_port
from devenv.state_server import STOP_TIMEOUT, StateServer
from devenv.state_server import stop_process as stop_process
from workflow.setup_tools import ROOT as ROOT

# Terraform is a second real client where it is installed (it sends an empty UNLOCK body
# on force-unlock); tofu always runs.
TERRAFORM = shutil.which("terraform")

USER = "alice"
PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so a leak into any log is detectable
START_TIMEOUT = 20.0


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- HTTP ---------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    auth: str | None = "default",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """One request on a new connection; HTTPS when given an SSL context."""
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    )
    try:
        all_headers = dict(headers or {})
        if auth == "default":
            all_headers["Authorization"] = basic()
        elif auth is not None:
            all_headers["Authorization"] = auth
        # http.client would normalise nothing: the path goes on the wire as given.
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Reply(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def state_body(serial: int, lineage: str = "lineage-1", *, pad: int = 0, **extra: Any) -> bytes:
    data = {
        "version": 4,
        "terraform_version": "1.11.6",
        "serial": serial,
        "lineage": lineage,
        "outputs": {},
        "resources": [],
        **extra,
    }
    if pad:
        data["padding"] = "x" * pad
    return json.dumps(data).encode()


def lock_body(lock_id: str, who: str = "tester@host") -> bytes:
    return json.dumps(
        {
            "ID": lock_id,
            "Operation": "OperationTypeApply",
            "Info": "",
            "Who": who,
            "Version": "1.11.6",
            "Created": "2026-01-02T03:04:05.123456789Z",
            "Path": "",
        }
    ).encode()


@dataclass(frozen=True)
class Paths:
    """The URL paths of one state."""

    name: str

    @property
    def state(self) -> str:
        return f"/states/{self.name}"

    @property
    def lock(self) -> str:
        return f"/states/{self.name}/lock"

    @property
    def versions(self) -> str:
        return f"/states/{self.name}/versions"


# -- the server ---------------------------------------------------------------------


@dataclass(eq=False)
class Server(StateServer):
    """The one launcher (devenv.state_server) as the tests' user, with requests to it."""

    username: str = USER
    password: str = PASSWORD
    context: ssl.SSLContext | None = None  # for requests to a server started with TLS

    def request(self, method: str, path: str, body: bytes | None = None, **kw: Any) -> Reply:
        kw.setdefault("context", self.context)
        return request(self.port, method, path, body, **kw)


def store_files(store: str) -> list[str]:
    """Every file of a file:// store, relative to it (for orphan checks)."""
    root = Path(store.removeprefix("file://"))
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@contextmanager
def running_server(
    store: str,
    workdir: Path,
    *args: str,
    open_files: int | None = None,
    context: ssl.SSLContext | None = None,
    **env: str,
) -> Iterator[Server]:
    server = Server(workdir, store, list(args), dict(env), open_files=open_files, context=context)
    try:
        yield server.start()
    finally:
        server.stop()


# -- moto ---------------------------------------------------------------------------


@dataclass
class Moto:
    endpoint: str
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        name = f"tfstate-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def running_moto(workdir: Path) -> Iterator[Moto]:
    port = free_port()
    # moto's own app, one request at a time (see devenv/serial_moto.py).
    serial_moto = ROOT / "devenv" / "serial_moto.py"
    with open(workdir / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(serial_moto), "127.0.0.1", str(port)], stdout=log, stderr=log
        )
    try:

        def accepting() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"moto_server exited {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
            return True

        wait_until(accepting, START_TIMEOUT, "moto_server to accept connections", 0.05)
        yield Moto(f"http://127.0.0.1:{port}", proc)
    finally:
        stop_process(proc)


# -- tofu / terraform ---------------------------------------------------------------

SLOW_CONFIG = """
terraform {
  backend "http" {}
}

variable "label" {
  type    = string
  default = "one"
}

variable "sleep" {
  type    = number
  default = 0
}

resource "terraform_data" "fast" {
  input = var.label
}

resource "terraform_data" "slow" {
  input = "${var.label}-${var.sleep}"
  # Recreated on every change, so the provisioner (the slow part) runs again.
  triggers_replace = [var.label, var.sleep]
  provisioner "local-exec" {
    command = "sleep ${var.sleep}"
  }
  depends_on = [terraform_data.fast]
}

output "label" {
  value = terraform_data.fast.output
}
"""


@dataclass
class Client:
    """tofu or terraform in its own working directory, pointed at one state."""

    binary: str
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.binary} {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        """In a session of its own, so kill_group() also reaches local-exec children."""
        return subprocess.Popen(
            [self.binary, *args],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(STOP_TIMEOUT)
    # Its children (e.g. `sleep`) share the group; make sure none is left.
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def make_client(binary: str, workdir: Path, tools_env: dict[str, str], server: Server, state: str) -> Client:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "main.tf").write_text(SLOW_CONFIG)
    address = f"{server.url}/states/{state}"
    env = {
        **os.environ,
        **tools_env,
        "TF_HTTP_ADDRESS": address,
        "TF_HTTP_LOCK_ADDRESS": f"{address}/lock",
        "TF_HTTP_UNLOCK_ADDRESS": f"{address}/lock",
        "TF_HTTP_USERNAME": USER,
        "TF_HTTP_PASSWORD": PASSWORD,
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "NO_COLOR": "1",
    }
    env.pop("TFSTATE_PASSWORD", None)
    return Client(binary, workdir, env)
