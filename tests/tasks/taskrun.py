"""Run the real `task` binary (go-task from the venv) on a throwaway workspace."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devenv.workspace import HttpState
from tests.support import ROOT, ConfigDir

VENV_BIN = Path(sys.executable).parent
TASK_TIMEOUT = 600
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # tofu colours its output

STATE_PASSWORD = "statepw-SENTINEL-71c2e9a4"
TOKEN_SECRET = "tokensecret-SENTINEL-0b5d3f88"


@dataclass
class TaskWorkspace(ConfigDir):
    """A ConfigDir (cluster.yaml, nodes.yaml, cdktf.out) driven through `task`."""

    extra_env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def stack_dir(self) -> Path:
        return self.outdir / "stacks" / "proxmox"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            # A KUBECONFIG of the machine's own would put its cluster in every rollout.
            if k not in ("INFRA_AUTO_APPROVE", "KUBECONFIG") and not k.startswith(("TF_HTTP_", "PROXMOX_VE_"))
        }
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                **self.paths.env_vars(),
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
                "TF_IN_AUTOMATION": "1",
                **self.extra_env,
            }
        )
        return env

    def task(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = TASK_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """`task ARGS` with no terminal on stdin (as in CI)."""
        proc = subprocess.run(
            [str(VENV_BIN / "task"), "--dir", str(ROOT), *args],
            env={**self.env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        proc.stdout, proc.stderr = ANSI.sub("", proc.stdout), ANSI.sub("", proc.stderr)
        self.log.append(f"$ task {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        return proc


def state_lock_request(state: HttpState, method: str, body: bytes | None = None) -> tuple[int, bytes]:
    """`method` on the lock of the state `proxmox` in the state server: (status, body)."""
    auth = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
    request = urllib.request.Request(
        f"{state.url}/states/proxmox/lock",
        data=body,
        method=method,
        headers={"Authorization": f"Basic {auth}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def lock_info(state: HttpState) -> dict | None:
    """The LockInfo of whoever holds the state's lock, None when nobody does (204)."""
    status, body = state_lock_request(state, "GET")
    assert status in (200, 204), (status, body)
    return json.loads(body) if status == 200 else None


def held_lock(state: HttpState) -> str | None:
    """The ID of the state's lock, None when nobody holds it."""
    info = lock_info(state)
    return info["ID"] if info else None
