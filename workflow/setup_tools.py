"""The one way to find, or the first time build, the tools: scripts/setup-tools.

tofu and the bpg/proxmox provider always; sops and age (`--sops`), kube-apiserver and
etcd (`--kube`) and SeaweedFS (`--seaweedfs`) on request. The product, the tests and the
benches all call `ensure_tools`. setup-tools is idempotent and caches its builds outside
the repository, so a call costs a fraction of a second once the tools exist; the first
call on a machine builds them from Go modules (several minutes). A process asks
setup-tools once per set of options.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from workflow.errors import WorkflowError

ROOT = Path(__file__).resolve().parent.parent  # the project's checkout
SETUP_TOOLS = ROOT / "scripts" / "setup-tools"
# A first build of OpenTofu and the provider takes minutes on a small machine.
BUILD_TIMEOUT = 45 * 60
EXPORT_RE = re.compile(r"^export ([A-Z_][A-Z0-9_]*)=(.*)$")


class ToolsError(WorkflowError):
    """setup-tools failed: the message says what to install or what went wrong."""


@dataclass(frozen=True)
class Tools:
    """The environment additions setup-tools printed, and where tofu is."""

    env: dict[str, str]
    tofu: str

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """base (default: os.environ) with PATH and TF_CLI_CONFIG_FILE from setup-tools."""
        merged = dict(os.environ if base is None else base)
        merged.update(self.env)
        return merged

    def which(self, name: str) -> str | None:
        """Where `name` is on the PATH setup-tools printed."""
        return shutil.which(name, path=self.environ().get("PATH", ""))


def parse_exports(text: str, base_env: dict[str, str]) -> dict[str, str]:
    """The `export NAME=value` lines setup-tools prints, evaluated as a POSIX shell would
    (single-quoted values, and "$PATH" expanded from base_env)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = EXPORT_RE.match(line.strip())
        if not match:
            continue
        name, raw = match.groups()
        words = shlex.split(raw.replace('"$PATH"', shlex.quote(base_env.get("PATH", ""))))
        out[name] = "".join(words)
    return out


def ensure_tools(*args: str, log: Path | None = None, timeout: float = BUILD_TIMEOUT) -> Tools:
    """Run `scripts/setup-tools ARGS` (once a process for the same ARGS); return its
    exports. ToolsError, one line, when it fails.

    Progress (stderr) goes to `log` when given, else to this process's stderr, so a
    first build shows what it is doing.
    """
    return _ensure(tuple(args), log, timeout)


@cache
def _ensure(args: tuple[str, ...], log: Path | None, timeout: float) -> Tools:
    base = dict(os.environ)
    stderr_sink = log.open("ab") if log else None
    try:
        proc = subprocess.run(
            [str(SETUP_TOOLS), *args],
            cwd=ROOT,
            env=base,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr_sink,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolsError(f"scripts/setup-tools did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise ToolsError(f"cannot run scripts/setup-tools: {exc}") from exc
    finally:
        if stderr_sink:
            stderr_sink.close()
    if proc.returncode != 0:
        detail = ""
        if log and log.exists():
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if "error" in ln.lower()]
            detail = ": " + lines[-1] if lines else f" (see {log})"
        raise ToolsError(f"scripts/setup-tools failed with exit code {proc.returncode}{detail}")
    exports = parse_exports(proc.stdout.decode(), base)
    inherited = base.get("TF_CLI_CONFIG_FILE")
    if "TF_CLI_CONFIG_FILE" not in exports and inherited and not Path(inherited).exists():
        # No mirror config printed (--registry, or tofu set up by the user): an inherited
        # setting naming a missing file only makes every tofu command warn; drop it.
        exports["TF_CLI_CONFIG_FILE"] = ""
    tofu = shutil.which("tofu", path={**base, **exports}.get("PATH", ""))
    if tofu is None:
        raise ToolsError("scripts/setup-tools succeeded but no `tofu` is on the PATH it printed")
    return Tools(env=exports, tofu=tofu)


def tools_env() -> dict[str, str]:
    """os.environ plus PATH and TF_CLI_CONFIG_FILE from setup-tools, sops and age included:
    what the tasks run tofu, sops and age with."""
    return ensure_tools("--sops").environ(dict(os.environ))
