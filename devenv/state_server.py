"""This project's tfstate server (`python -m tfstate_server serve`) on loopback: the one
launcher of the tests, the benches and the dev environment.

    with StateServer(directory) as state:      # state: devenv.workspace.HttpState
        ... tofu with TF_HTTP_USERNAME / TF_HTTP_PASSWORD = state.username / state.password

    server = StateServer(directory, store="s3://bucket/prefix", env=aws_env,
                         args=["--keep-versions", "3"]).start()
    ... server.url, server.log(), server.stop() (its exit code), server.start() again

The server listens on 127.0.0.1 with the port the system picks on the first start (read
back from its "listening on" log line) and the same port on a restart; keeps states in
files under `directory/store` unless given a --store URL; and gets its one user from
TFSTATE_USERNAME / TFSTATE_PASSWORD in its environment: the password is random per
server unless given, and never on a command line. Each start logs to
`directory/server-N.log`. `root` is the checkout whose tfstate_server runs (a bench
compares two). Every wait is bounded; the owner stops what it starts.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv.workspace import HttpState
from workflow.setup_tools import ROOT

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
LISTENING_RE = re.compile(r"listening on (https?)://127\.0\.0\.1:(\d+)")


class StateServerError(RuntimeError):
    pass


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT
) -> int:
    """Signal proc and wait; SIGKILL if it does not stop in time. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return int(proc.returncode)


@dataclass(eq=False)
class StateServer:
    directory: Path
    store: str = ""  # the --store URL; empty: a file store under directory/store
    args: list[str] = field(default_factory=list)  # more `serve` options
    env: dict[str, str] = field(default_factory=dict)  # e.g. AWS_* for an S3 store
    username: str = "terraform"
    password: str = ""  # empty: a random one
    port: int = 0
    root: Path = ROOT
    open_files: int | None = None  # RLIMIT_NOFILE of the server process, if set
    scheme: str = "http"  # as the server logged it (https with --tls-cert)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _starts: int = 0

    def __post_init__(self) -> None:
        self.password = self.password or secrets.token_urlsafe(18)
        if not self.store:
            store = self.directory / "store"
            store.mkdir(parents=True, exist_ok=True)
            self.store = store.resolve().as_uri()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    @property
    def state(self) -> HttpState:
        return HttpState(url=self.url, username=self.username, password=self.password)

    def start(self) -> StateServer:
        """Start (or restart, on the same port) and wait until it listens."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        self.log_path = log_path = self.directory / f"server-{self._starts}.log"
        env = {
            **os.environ,
            "TFSTATE_USERNAME": self.username,
            "TFSTATE_PASSWORD": self.password,
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        argv = [sys.executable, "-m", "tfstate_server", "serve", "--listen", f"{HOST}:{self.port}"]
        argv += ["--store", self.store, *self.args]
        limit = self.open_files

        def limit_open_files() -> None:
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit_open_files if limit is not None else None,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING_RE.search(log_path.read_text(errors="replace"))
            if found:
                self.scheme, self.port = found.group(1), int(found.group(2))
                return self
            if self.proc.poll() is not None:
                raise StateServerError(f"the tfstate server exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.stop()
        tail = self.log()[-2000:]
        raise StateServerError(f"the tfstate server did not start within {START_TIMEOUT:.0f} s:\n{tail}")

    def log(self) -> str:
        """Everything this server's processes logged so far, oldest start first."""
        parts = []
        for number in range(1, self._starts + 1):
            path = self.directory / f"server-{number}.log"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def stop(self) -> int:
        """SIGTERM (graceful shutdown), SIGKILL if it takes too long; the exit code."""
        if self.proc is None:
            return 0
        return stop_process(self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def __enter__(self) -> HttpState:
        return self.start().state

    def __exit__(self, *exc: object) -> None:
        self.stop()
