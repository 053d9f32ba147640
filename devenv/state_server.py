"""This project's tfstate server (`python -m tfstate_server serve`) on loopback.

    with StateServer(directory) as state:      # state: devenv.workspace.HttpState
        ... tofu with TF_HTTP_USERNAME / TF_HTTP_PASSWORD = state.username / state.password

The server listens on 127.0.0.1 with a port the system picks (read back from its
"listening on" log line), keeps states in files under `directory`, and gets its one
user from TFSTATE_USERNAME / TFSTATE_PASSWORD in its environment: the password is
random per server and never on a command line.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

from devenv.workspace import HttpState
from workflow.setup_tools import ROOT

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
LISTENING_RE = re.compile(r"listening on (http://[0-9.]+:[0-9]+)")


class StateServerError(RuntimeError):
    pass


class StateServer:
    def __init__(self, directory: Path, *, username: str = "terraform", password: str | None = None) -> None:
        self.directory = directory
        self.store = directory / "store"
        self.store.mkdir(parents=True, exist_ok=True)
        self.log = directory / "tfstate-server.log"
        self.username = username
        self._password = password or secrets.token_urlsafe(18)
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def state(self) -> HttpState:
        return HttpState(url=self.url, username=self.username, password=self._password)

    def start(self) -> HttpState:
        env = {
            **os.environ,
            "TFSTATE_USERNAME": self.username,
            "TFSTATE_PASSWORD": self._password,
            "PYTHONUNBUFFERED": "1",
        }
        argv = [
            sys.executable,
            "-m",
            "tfstate_server",
            "serve",
            "--listen",
            f"{HOST}:0",
            "--store",
            self.store.resolve().as_uri(),
        ]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING_RE.search(self.log.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
                return self.state
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise StateServerError(f"the tfstate server did not start within {START_TIMEOUT:.0f} s:\n{tail}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def __enter__(self) -> HttpState:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
