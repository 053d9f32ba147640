"""Where the operator's files are: config, encrypted secrets, age key, synthesized output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from config import ConfigPaths


@dataclass(frozen=True)
class Workspace:
    cluster: Path
    nodes: Path
    secrets: Path
    age_key: Path
    outdir: Path

    @classmethod
    def from_env(cls, root: Path | None = None) -> Workspace:
        root = root or Path.cwd()

        def path(var: str, default: str) -> Path:
            value = os.environ.get(var)
            return Path(value) if value else root / default

        return cls(
            cluster=path("CLUSTER_CONFIG", "cluster.yaml"),
            nodes=path("NODES_CONFIG", "nodes.yaml"),
            secrets=path("SECRETS_FILE", "secrets.sops.yaml"),
            age_key=path("SOPS_AGE_KEY_FILE", "age.key"),
            outdir=path("CDKTF_OUTDIR", "cdktf.out"),
        )

    @property
    def config_paths(self) -> ConfigPaths:
        return ConfigPaths(self.cluster, self.nodes)

    def stack_dir(self, state_name: str) -> Path:
        return self.outdir / "stacks" / state_name
