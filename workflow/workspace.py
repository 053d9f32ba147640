"""Where the operator's files are: config, encrypted secrets, age key, synthesized output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from config import ConfigPaths

# Each path: the environment variable that sets it, and its default in the project folder.
PATHS = {
    "cluster": ("CLUSTER_CONFIG", "cluster.yaml"),
    "nodes": ("NODES_CONFIG", "nodes.yaml"),
    "secrets": ("SECRETS_FILE", "secrets.sops.yaml"),
    "age_key": ("SOPS_AGE_KEY_FILE", "age.key"),
    "outdir": ("CDKTF_OUTDIR", "cdktf.out"),
}


@dataclass(frozen=True)
class Workspace:
    """The one description of an operator's folder, for the tasks and for the tests that
    drive them."""

    cluster: Path
    nodes: Path
    secrets: Path
    age_key: Path
    outdir: Path

    @classmethod
    def from_env(cls, root: Path | None = None) -> Workspace:
        """The paths the environment names, the defaults in `root` (the current folder) otherwise."""
        root = root or Path.cwd()
        return cls(
            **{key: Path(os.environ.get(var) or root / default) for key, (var, default) in PATHS.items()}
        )

    @classmethod
    def in_dir(cls, root: Path) -> Workspace:
        """Every file at its default name in `root`, whatever the environment says."""
        return cls(**{key: root / default for key, (_var, default) in PATHS.items()})

    def env_vars(self) -> dict[str, str]:
        """The environment that makes `from_env` (a task, main.py) find these paths."""
        return {var: str(getattr(self, key)) for key, (var, _default) in PATHS.items()}

    @property
    def config_paths(self) -> ConfigPaths:
        return ConfigPaths(self.cluster, self.nodes)

    def stack_dir(self, state_name: str) -> Path:
        return self.outdir / "stacks" / state_name
