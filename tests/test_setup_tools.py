"""scripts/setup-tools' output: one line per tool, the Go output of a build in a log file
under the cache, and a failed build's one error line naming that log.

No real build runs here: the cached run uses stand-in executables, the failing build asks
for a version that does not exist with the Go module proxy turned off (GOPROXY=off), so
the go command fails at once and downloads nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflow.setup_tools import SETUP_TOOLS

TOOL_LINES = {
    "OpenTofu": r"using cached OpenTofu v1\.11\.6",
    "provider": r"using cached bpg/proxmox provider v[0-9.]+",
    "sops": r"using (cached sops v[0-9.]+|/\S+/sops)",
    "age": r"using (cached age \(age-keygen beside it\)|/\S+/age)",
    "kube-apiserver": r"using cached kube-apiserver v[0-9.]+",
    "kube-controller-manager": r"using cached kube-controller-manager v[0-9.]+",
    "kube-scheduler": r"using cached kube-scheduler v[0-9.]+",
    "etcd": r"using cached etcd v[0-9.]+",
    "SeaweedFS": r"using cached SeaweedFS v0\.0\.0-\S+",
}


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        pytest.fail("these tests need the go command, as scripts/setup-tools does", pytrace=False)
    return go


def _env(cache: Path, **extra: str) -> dict[str, str]:
    """The caller's environment with the cache in tmp and a PATH without any tofu, sops or
    age on it (only go's directory and the system's), so setup-tools looks in its cache."""
    dirs = [str(Path(_go()).parent), "/usr/bin", "/bin"]
    path = [d for d in dirs if not any((Path(d) / t).exists() for t in ("tofu", "sops", "age"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOFU_", "GO", "TALOS_"))}
    return env | {"PATH": os.pathsep.join(path), "TALOS_TOOLS_CACHE": str(cache), **extra}


def _stand_in(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{text}\n")
    path.chmod(0o755)


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SETUP_TOOLS), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _read_versions() -> dict[str, str]:
    """The default versions, as the script sets them (VAR=${VAR:-default})."""
    found = re.findall(r"^([A-Z_]+)=\$\{[A-Z_]+:-([^}]+)\}$", SETUP_TOOLS.read_text(), re.M)
    return dict(found)


def test_a_cached_run_says_one_line_per_tool(tmp_path: Path) -> None:
    versions = _read_versions()
    cache = tmp_path / "cache"
    _stand_in(
        cache / "opentofu" / f"v{versions['TOFU_VERSION']}" / "tofu",
        f"echo 'OpenTofu v{versions['TOFU_VERSION']}'",
    )
    env = _env(cache)
    plat = subprocess.run(
        [_go(), "env", "GOOS", "GOARCH"], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    provider = versions["PROVIDER_VERSION"]
    _stand_in(
        cache
        / "mirror/registry.opentofu.org/bpg/proxmox"
        / provider
        / "_".join(plat)
        / f"terraform-provider-proxmox_v{provider}"
    )
    _stand_in(cache / "bin" / f"sops-v{versions['SOPS_VERSION']}")
    _stand_in(cache / "bin" / "age")
    _stand_in(cache / "bin" / "age-keygen")
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        _stand_in(cache / "kube" / f"v{versions['KUBERNETES_VERSION']}" / name)
    _stand_in(cache / "etcd" / f"v{versions['ETCD_VERSION']}" / "etcd")
    _stand_in(cache / "seaweedfs" / versions["SEAWEEDFS_VERSION"] / "weed")

    proc = _run(env, "--sops", "--kube", "--seaweedfs")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith("setup-tools: ") for line in lines), lines
    said = [line.removeprefix("setup-tools: ") for line in lines]
    assert len(said) == len(TOOL_LINES), said
    for tool, pattern in TOOL_LINES.items():
        assert sum(bool(re.fullmatch(pattern, line)) for line in said) == 1, (tool, said)
    assert "export PATH=" in proc.stdout
    assert not (cache / "logs").exists()  # nothing was built


def test_a_failed_build_names_its_log_in_one_error_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = _env(
        cache,
        TOFU_VERSION="0.0.0-no-such-version",
        GOPROXY="off",  # nothing is downloaded: the go command fails at once
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",
        GOMODCACHE=str(tmp_path / "gomodcache"),
    )
    proc = _run(env)
    assert proc.returncode == 1, proc.stderr
    log = cache / "logs" / "opentofu.log"
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors[-1] == (
        f"setup-tools: error: building OpenTofu v0.0.0-no-such-version failed (exit 1); "
        f"its Go output is in {log}"
    ), proc.stderr
    assert sum(line.startswith("setup-tools: error:") for line in proc.stderr.splitlines()) == 1
    assert all(line.startswith("setup-tools: ") for line in proc.stderr.splitlines()), proc.stderr
    assert "GOPROXY=off" in log.read_text()  # the go command's own message is in the log
    assert "GOPROXY=off" in proc.stderr  # and among the last lines shown
    assert proc.stdout == ""
