"""Real processes on loopback for the tfstate server tests: the server, moto, tofu/terraform.

Every process started here is stopped by its owner (context managers / fixtures), and
every wait is bounded.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Terraform is a second real client where it is installed (it sends an empty UNLOCK body
# on force-unlock); tofu always runs.
TERRAFORM = shutil.which("terraform")

ROOT = Path(__file__).resolve().parents[2]
USER = "alice"
PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so a leak into any log is detectable
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
_LISTENING = re.compile(r"listening on https?://127\.0\.0\.1:(\d+)")


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    """Signal proc (by pid) and wait; SIGKILL if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


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


@dataclass
class Server:
    store: str
    workdir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    open_files: int | None = None  # RLIMIT_NOFILE of the server process, if set
    context: ssl.SSLContext | None = None  # for requests to a server started with TLS
    _starts: int = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Server:
        """Start (or restart, on the same port) and wait until it listens."""
        assert self.proc is None or self.proc.poll() is not None
        self._starts += 1
        self.log_path = self.workdir / f"server-{self._starts}.log"
        env = {**os.environ, "TFSTATE_USERNAME": USER, "TFSTATE_PASSWORD": PASSWORD, **self.env}
        cmd = [
            sys.executable,
            "-m",
            "tfstate_server",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            self.store,
            *self.args,
        ]
        limit = self.open_files

        def limit_open_files() -> None:
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=log, preexec_fn=limit_open_files
            )

        def listening() -> int | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log()}")
            assert self.log_path is not None
            found = _LISTENING.search(self.log_path.read_text(errors="replace"))
            return int(found.group(1)) if found else None

        self.port = wait_until(listening, START_TIMEOUT, "the server to listen")
        return self

    def log(self) -> str:
        """Everything this server object's processes logged so far."""
        parts = []
        for number in range(1, self._starts + 1):
            path = self.workdir / f"server-{number}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def stop(self) -> int:
        assert self.proc is not None
        return stop_process(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)

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
    server = Server(
        store=store, workdir=workdir, args=list(args), env=dict(env), open_files=open_files, context=context
    )
    try:
        yield server.start()
    finally:
        if server.proc is not None:
            stop_process(server.proc)


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
