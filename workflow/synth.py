"""Synthesize when the config (or the app's code) changed since the last synth.

Both hold the output directory's lock (output_dir.output_lock) from the check to the
stamp: two tasks at once take turns, and the second finds the first's output current.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from config import InfraConfig, LoadResult, load_config
from output_dir import output_lock
from workflow.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
CODE = ("main.py", "config", "constructs_lib", "stacks", "stacks/.terraform.lock.hcl")
STAMP = ".inputs-sha256"


def load(ws: Workspace) -> InfraConfig:
    return load_result(ws).config


def load_result(ws: Workspace) -> LoadResult:
    """The config and where each key was written; its warnings printed."""
    result = load_config(ws.config_paths)  # ConfigError: reported by the CLI like main.py
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    return result


def inputs_digest(ws: Workspace) -> str:
    digest = hashlib.sha256()
    # The provider source decides whether the committed lock file is copied (main.py).
    digest.update(os.environ.get("TALOS_PROVIDER_SOURCE", "mirror").encode() + b"\0")
    files = [ws.cluster, ws.nodes]
    for entry in CODE:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        digest.update(str(path.name).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()


def stack_file(ws: Workspace, config: InfraConfig) -> Path:
    return ws.stack_dir(config.backend.state_name) / "cdk.tf.json"


def synth(ws: Workspace, config: InfraConfig) -> Path:
    from main import describe, synthesize  # starts jsii: only when really synthesizing

    with output_lock(ws.outdir):  # the stamp is written with the output it describes
        digest = inputs_digest(ws)
        output = synthesize(config, str(ws.outdir))
        (ws.outdir / STAMP).write_text(digest + "\n")
    sys.stderr.write(describe(config, output))
    return output


def ensure_synth(ws: Workspace, config: InfraConfig) -> Path:
    """Re-synthesize when cluster.yaml, nodes.yaml or the app changed since the last synth."""
    with output_lock(ws.outdir):  # not while another run swaps the output or its stamp
        output = stack_file(ws, config)
        stamp = ws.outdir / STAMP
        current = stamp.read_text().strip() if stamp.exists() else ""
        if output.exists() and current == inputs_digest(ws):
            return output
        print("config changed since the last synth: synthesizing again", file=sys.stderr)
        return synth(ws, config)
