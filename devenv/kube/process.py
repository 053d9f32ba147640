"""Child processes of the control plane: an environment without proxies, and a process
whose output goes to a log file whose tail a failure shows."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from devenv.kube.client import HOST
from workflow.setup_tools import Tools

LOG_TAIL_LINES = 30
KILL_WAIT = 10.0  # after SIGKILL


def child_env(tools: Tools) -> dict[str, str]:
    """setup-tools' PATH, and no proxy: the control plane's clients stay on loopback."""
    env = {k: v for k, v in tools.environ().items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = f"{HOST},localhost"
    return env


class ChildProcess:
    """A child process whose combined output goes to a log file in the work directory."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path, stop_timeout: float
    ) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self.log = log
        with log.open("ab") as sink:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            sink.write(f"--- {name} started at {stamp}\n".encode())
            self.offset = sink.tell()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )

    def exited(self) -> int | None:
        return self.proc.poll()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode(errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log.name}: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self) -> None:
        """Wait stop_timeout for the exit, then SIGKILL."""
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(KILL_WAIT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(KILL_WAIT)
