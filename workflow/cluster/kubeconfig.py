"""Which kubeconfig the rollout uses, and reading it without trusting a byte of it.

Found from `--kubeconfig PATH`, else `KUBECONFIG` (a list of files, merged as kubectl
does: the first file to set a name wins), else `kubeconfig` beside cluster.yaml (the
repository root), where the template setup's `task bootstrap:talos` leaves it.
`--cluster-check` decides: `off` never uses one, `on` needs one, `auto` uses one when it
is there.

The file holds credentials: no message quotes its content (a YAML error gives a line
number only), and the kubernetes client's copies of certificate data go to a private
directory removed when the rollout ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workflow.errors import WorkflowError

DEFAULT_NAME = "kubeconfig"
ENV = "KUBECONFIG"
MAX_BYTES = 4 * 1024 * 1024  # real kubeconfigs are a few KB; a huge one is a mistake
MAX_DEPTH = 32
NAMED_LISTS = ("clusters", "users", "contexts")


class KubeconfigError(WorkflowError):
    pass


@dataclass(frozen=True)
class Found:
    paths: tuple[Path, ...]
    origin: str  # how it was found, for messages

    @property
    def shown(self) -> str:
        return os.pathsep.join(str(p) for p in self.paths)


def locate(option: str | None, mode: str, env: Mapping[str, str], root: Path) -> Found | None:
    """The kubeconfig to use, or None (`off`, or `auto` with none found)."""
    if mode == "off":
        return None
    if option is not None:
        return Found((Path(option),), "--kubeconfig")
    listed = [Path(p) for p in env.get(ENV, "").split(os.pathsep) if p]
    if listed:
        # kubectl skips listed files that do not exist; all missing is a mistake worth a line.
        present = tuple(p for p in listed if p.exists())
        if not present:
            raise KubeconfigError(
                f"{ENV} names {env[ENV]}, which does not exist (expected a kubeconfig file; "
                "unset it, or pass --cluster-check off to apply without the cluster check)"
            )
        return Found(present, ENV)
    default = root / DEFAULT_NAME
    if default.exists():
        return Found((default,), f"./{DEFAULT_NAME}")
    if mode == "on":
        raise KubeconfigError(
            f"--cluster-check on: no kubeconfig (none given with --kubeconfig, {ENV} unset, "
            f"no ./{DEFAULT_NAME}); expected the one `task bootstrap:talos` writes"
        )
    return None


def read(found: Found) -> dict[str, Any]:
    """The merged kubeconfig as a mapping; one line on any problem."""
    merged: dict[str, Any] = {}
    for path in found.paths:
        data = _read_one(path)
        for key in NAMED_LISTS:
            have = {item.get("name") for item in merged.get(key, [])}
            items = [i for i in data.get(key) or [] if i.get("name") not in have]
            merged[key] = merged.get(key, []) + items
        for key, value in data.items():
            if key not in NAMED_LISTS and key not in merged and value not in (None, ""):
                merged[key] = value
    if not merged.get("current-context"):
        raise KubeconfigError(f"{found.shown}: no current-context (expected a kubeconfig with one set)")
    return merged


def _read_one(path: Path) -> dict[str, Any]:
    try:
        if not path.is_file():
            raise KubeconfigError(f"{path}: not a regular file (expected a kubeconfig)")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise KubeconfigError(f"{path}: cannot read the kubeconfig ({exc.strerror or exc})") from exc
    if len(raw) > MAX_BYTES:
        raise KubeconfigError(f"{path}: larger than {MAX_BYTES // 1024 // 1024} MiB (expected a kubeconfig)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KubeconfigError(f"{path}: not UTF-8 text at byte {exc.start} (expected a kubeconfig)") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise KubeconfigError(f"{path}: {where}not valid YAML (expected a kubeconfig)") from exc
    except RecursionError as exc:
        raise KubeconfigError(f"{path}: nested too deeply (expected a kubeconfig)") from exc
    problem = _shape_problem(data)
    if problem:
        raise KubeconfigError(f"{path}: {problem} (expected a kubeconfig)")
    return data


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "not a mapping"
    if _depth(data, 0, set()) > MAX_DEPTH:
        return "nested too deeply or recursive"
    for key in NAMED_LISTS:
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(_named_entry(i) for i in items):
            return f"{key}: not a list of named entries"
    if not isinstance(data.get("current-context", ""), str | None):
        return "current-context: not text"
    return None


def _named_entry(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("name"), str)


def _depth(value: Any, level: int, seen: set[int]) -> int:
    if level > MAX_DEPTH or id(value) in seen:
        return MAX_DEPTH + 1  # YAML aliases can make a structure refer to itself
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, list):
        items = value
    else:
        return level
    seen = seen | {id(value)}
    return max([_depth(v, level + 1, seen) for v in items] or [level])


def server_of(config: Mapping[str, Any]) -> str:
    """The current context's API server URL, without any user:password@ in it."""
    context = _named(config, "contexts", config.get("current-context")).get("context") or {}
    cluster = _named(config, "clusters", context.get("cluster")).get("cluster") or {}
    server = str(cluster.get("server") or "?")
    scheme, sep, rest = server.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _named(config: Mapping[str, Any], key: str, name: Any) -> dict[str, Any]:
    for item in config.get(key) or []:
        if item.get("name") == name:
            return item
    return {}


class PrivateDir:
    """A directory only this user can read, for the client's copies of key data."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="rollout-kube-")
        os.chmod(self.path, 0o700)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
