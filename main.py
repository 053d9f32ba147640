#!/usr/bin/env python3
"""Synthesize cluster.yaml + nodes.yaml into cdktf.out/stacks/<state name>/cdk.tf.json.

Config paths: CLUSTER_CONFIG / NODES_CONFIG (default ./cluster.yaml, ./nodes.yaml).
Output directory: CDKTF_OUTDIR (default ./cdktf.out). Bad input: one line per problem
on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    # Ctrl-C while the modules load: nothing to clean up yet (main() handles it later).
    signal.signal(signal.SIGINT, lambda *_: (sys.stderr.write("interrupted\n"), os._exit(130)))

# jsii prints a large end-of-life banner for Node 20 on every run otherwise.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cdktf_runtime import load_cdktf
from cdktf_runtime.node_flags import exit_now
from cdktf_runtime.node_group import stop_node
from config import InfraConfig, load_config
from exit_codes import REPORTED, report
from output_dir import is_node_file_error, output_error, staged_output

# The provider versions and checksums tofu init must find (scripts/update-provider-lock).
PROVIDER_LOCK = Path(__file__).resolve().parent / "stacks" / ".terraform.lock.hcl"


def provider_from_registry() -> bool:
    """TALOS_PROVIDER_SOURCE=registry: tofu downloads the provider from the registry. The
    committed lock file holds the checksum of the reproducible mirror build, which the
    registry's package does not match, so it is not copied and `tofu init` writes one
    with the registry's checksums (scripts/update-provider-lock --registry adds those to
    the committed file, after which the default works for both)."""
    return os.environ.get("TALOS_PROVIDER_SOURCE", "mirror").strip().lower() == "registry"


def synthesize(config: InfraConfig, outdir: str | None = None) -> Path:
    """Write the stack; return the path of its cdk.tf.json. The output directory is
    replaced whole or not at all (output_dir.py). Raises OutputDirError."""
    final = Path(outdir or os.environ.get("CDKTF_OUTDIR") or "cdktf.out")
    stack_dir = final / "stacks" / config.backend.state_name
    with staged_output(final) as staging:
        # Started here so that a config error is reported without starting jsii's node.
        cdktf = load_cdktf()
        from stacks.proxmox_stack import ProxmoxStack

        app = cdktf.App(outdir=str(staging))
        # The final stack directory: paths in the stack are relative to where it will be.
        ProxmoxStack(app, config, stack_dir)
        new_stack_dir = staging / "stacks" / config.backend.state_name
        try:
            app.synth()
            if config.proxmox is not None and PROVIDER_LOCK.exists() and not provider_from_registry():
                # Beside cdk.tf.json, where tofu looks for it: reproducible provider selection.
                shutil.copyfile(PROVIDER_LOCK, new_stack_dir / ".terraform.lock.hcl")
        except OSError as exc:
            raise output_error(final, exc) from exc
        except RuntimeError as exc:  # jsii passes node's file errors on as RuntimeError
            if not is_node_file_error(exc):
                raise  # a bug in the app: its traceback helps
            raise output_error(final, exc) from exc
        except KeyboardInterrupt:
            stop_node()  # it may still be writing into the staging directory, removed next
            raise
    return stack_dir / "cdk.tf.json"


def describe(config: InfraConfig, output: Path) -> str:
    if config.proxmox is None:
        what = "infrastructure disabled (proxmox_api_url / proxmox_node unset): backend only"
    else:
        what = (
            f"{len(config.vms)} nodes ({len(config.controllers)} controllers, "
            f"{len(config.workers)} workers), {len(config.isos)} Talos ISOs"
        )
    backend = config.backend.http_address or f"local file {config.backend.local_path}"
    if config.multi_host:
        from stacks.summary import hosts_lines

        what += "\n" + "\n".join(hosts_lines(config))
    return (
        f"Synthesized stack '{config.backend.state_name}': {what}\n"
        f"  output:  {output}\n"
        f"  state:   {backend}\n"
        f"  next:    tofu -chdir={output.parent} init && tofu -chdir={output.parent} plan\n"
    )


def main() -> int:
    try:
        result = load_config()
        for warning in result.warnings:
            print(warning, file=sys.stderr)
        output = synthesize(result.config)
        # The new output is in place: a Ctrl-C from here on would only break the summary
        # (an uncaught KeyboardInterrupt: a traceback, death by the signal).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except REPORTED as exc:  # what was written is cleaned up (output_dir)
        return report(exc)
    sys.stdout.write(describe(result.config, output))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    exit_now(main())
