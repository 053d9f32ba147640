#!/usr/bin/env python3
"""Synthesize cluster.yaml + nodes.yaml into cdktf.out/stacks/<state name>/cdk.tf.json.

Config paths: CLUSTER_CONFIG / NODES_CONFIG (default ./cluster.yaml, ./nodes.yaml).
Output directory: CDKTF_OUTDIR (default ./cdktf.out). Bad input: one line per problem
on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# jsii prints a large end-of-life banner for Node 20 on every run otherwise.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import node_runtime
from config import ConfigError, InfraConfig, load_config

EXIT_BAD_INPUT = 2
# The provider versions and checksums tofu init must find (scripts/update-provider-lock).
PROVIDER_LOCK = Path(__file__).resolve().parent / "stacks" / ".terraform.lock.hcl"


def provider_from_registry() -> bool:
    """TALOS_PROVIDER_SOURCE=registry: tofu downloads the provider from the registry. The
    committed lock file holds the checksum of the reproducible mirror build, which the
    registry's package does not match, so it is not copied and `tofu init` writes one
    with the registry's checksums (scripts/update-provider-lock --registry adds those to
    the committed file, after which the default works for both)."""
    return os.environ.get("TALOS_PROVIDER_SOURCE", "mirror").strip().lower() == "registry"


class OutputDirError(Exception):
    """The output directory cannot be written: one line for the operator, exit 2."""


def writable_outdir(outdir: str | None) -> str:
    """The output directory (argument, CDKTF_OUTDIR, or cdktf.out), created and checked
    here so that a failure is one line rather than a traceback from inside jsii."""
    path = Path(outdir or os.environ.get("CDKTF_OUTDIR") or "cdktf.out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "permission denied")
    except OSError as exc:
        raise OutputDirError(f"{path}: cannot write the output directory ({exc.strerror or exc})") from exc
    return str(path)


def synthesize(config: InfraConfig, outdir: str | None = None) -> Path:
    """Write the stack; return the path of its cdk.tf.json. Raises OutputDirError."""
    outdir = writable_outdir(outdir)
    node_runtime.add_heap_flags()  # before jsii starts node, on the first import of cdktf
    # Imported here so that a config error is reported without starting jsii's node.
    import cdktf

    from stacks.proxmox_stack import ProxmoxStack

    app = cdktf.App(outdir=outdir)
    stack_dir = Path(app.outdir) / "stacks" / config.backend.state_name
    ProxmoxStack(app, config, stack_dir)
    app.synth()
    if config.proxmox is not None and PROVIDER_LOCK.exists() and not provider_from_registry():
        # Beside cdk.tf.json, where tofu looks for it: reproducible provider selection.
        shutil.copyfile(PROVIDER_LOCK, stack_dir / ".terraform.lock.hcl")
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


def report(exc: ConfigError) -> int:
    """One line per problem on stderr; the exit code for bad input."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    count = len(exc.problems)
    print(f"{count} problem{'s' if count != 1 else ''} found; nothing was written.", file=sys.stderr)
    return EXIT_BAD_INPUT


def main() -> int:
    try:
        result = load_config()
    except ConfigError as exc:
        return report(exc)
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    try:
        output = synthesize(result.config)
    except OutputDirError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(describe(result.config, output))
    return 0


if __name__ == "__main__":
    node_runtime.exit_now(main())
