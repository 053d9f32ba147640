"""`python -m workflow COMMAND [ARGS...]`: what each `task` runs.

Extra arguments after the command go to tofu (`task infra:plan -- -target=...`);
`--yes` confirms a destructive command without a terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from config import LoadResult
from exit_codes import REPORTED, report
from workflow import secrets as sec
from workflow.confirm import confirm, split_yes
from workflow.demo import run_demo
from workflow.errors import WorkflowError
from workflow.invocation import raw_task_var, task_line
from workflow.preflight.gate import gate, split_skip
from workflow.rollout import rolling_apply, split_rollout_args
from workflow.setup_tools import tools_env
from workflow.synth import ensure_synth, load, load_result, synth
from workflow.tofu import Tofu
from workflow.verify_nodes import verify
from workflow.workspace import Workspace

TOFU_COMMANDS = (
    "init",
    "preflight",
    "plan",
    "apply",
    "apply-auto",
    "destroy",
    "output",
    "state-list",
    "force-unlock",
    "validate",
    "state-rm",
)
# Commands that change (or plan to change) the Proxmox: the preflight runs first.
CHECKED = ("plan", "apply", "apply-auto", "destroy")


def _tofu(ws: Workspace, *, need_init: bool = True) -> Tofu:
    return _tofu_and_config(ws, need_init=need_init)[0]


def _tofu_and_config(ws: Workspace, *, need_init: bool = True) -> tuple[Tofu, LoadResult]:
    loaded = load_result(ws)
    config = loaded.config
    output = ensure_synth(ws, config)
    env = tools_env()
    secrets = sec.decrypt(ws, env)
    if config.backend.http_address and not secrets.has_state_credentials:
        print(
            f"note: no state credentials in {ws.secrets} (TF_HTTP_USERNAME/PASSWORD unset); "
            "put tfstate_password in cluster.yaml and run `task configure`",
            file=sys.stderr,
        )
    tls = sec.state_tls_env(config.cluster, ws.cluster.parent) if config.backend.http_address else {}
    tofu = Tofu(output.parent, {**env, **tls, **secrets.tofu_env()})
    if need_init:
        tofu.ensure_init()
    return tofu, loaded


# Destructive commands and what the confirmation says; asked before any other work.
CONFIRM = {
    "apply-auto": "apply changes without a saved plan",
    "destroy": "DESTROY every VM and ISO in this stack",
    "state-rm": "remove {what} from the state (Proxmox keeps what it describes)",
}


def run_tofu(command: str, args: list[str], ws: Workspace) -> int:
    if command == "force-unlock":
        # The lock id first (any bytes, even "--yes"), then the options.
        yes, rest = split_yes(args[1:])
        if not args or not args[0] or rest:
            raise WorkflowError("force-unlock needs the lock id: task infra:force-unlock LOCK_ID=<id>")
        lock_id = raw_task_var("LOCK_ID") or args[0]  # as typed: go-task expands {{...}}
        confirm(f"force-unlock state lock {lock_id}", yes, command)
        return _tofu(ws).run("force-unlock", "-force", lock_id)
    yes, args = split_yes(args)
    if command == "init":
        return _tofu(ws, need_init=False).run("init", "-input=false", *args)
    if command == "preflight":
        return preflight(ws, args)
    skip, args = split_skip(args) if command in CHECKED else (False, args)
    rollout_options, args = split_rollout_args(args) if command in ("apply", "apply-auto") else (None, args)
    if command == "state-rm" and not args:
        raise WorkflowError(
            f"state-rm needs the address of a resource: `{task_line('state-rm', '<address>')}`"
        )
    if command in CONFIRM:
        confirm(CONFIRM[command].format(what=", ".join(args)), yes, command)
    tofu, loaded = _tofu_and_config(ws)
    config = loaded.config
    if command == "apply":
        tofu.check_saved_plan()  # a stale plan is refused before anything is asked of Proxmox
    if command in CHECKED and config.proxmox is not None:
        gate(tofu, loaded, skip=skip, read_only=command == "plan")
    if command == "state-rm":
        return tofu.run("state", "rm", *args)
    if command == "plan":
        return tofu.plan(args)
    if rollout_options is not None:  # apply, apply-auto
        # Changes that restart VMs roll out node by node (workflow/rollout/).
        return rolling_apply(
            tofu, config, rollout_options, args, saved_plan=command == "apply", root=ws.cluster.parent
        )
    if command == "destroy":
        return tofu.run("destroy", "-input=false", "-auto-approve", *args)
    if command == "state-list":
        return tofu.run("state", "list", *args)
    return tofu.run(command, *args)  # output, validate


def preflight(ws: Workspace, args: list[str]) -> int:
    """`task infra:preflight [-- --json]`: every check's line; exit 2 when one blocks."""
    unknown = [a for a in args if a != "--json"]
    if unknown:
        raise WorkflowError(f"preflight: unknown argument {unknown[0]!r} (expected --json)")
    tofu, loaded = _tofu_and_config(ws)
    gate(tofu, loaded, verbose=True, as_json="--json" in args)
    return 0


def configure(ws: Workspace) -> int:
    """Validate, synthesize, encrypt the credentials, and init when they allow it."""
    config = load(ws)
    synth(ws, config)
    from_cluster = sec.Secrets.from_cluster(config.cluster)
    env = tools_env()
    if from_cluster.any:
        # cluster.yaml wins key by key; credentials it no longer holds are kept.
        try:
            current = sec.decrypt(ws, env)
        except WorkflowError as exc:
            print(f"warning: {exc}; writing only the credentials in {ws.cluster}", file=sys.stderr)
            current = sec.Secrets()
        merged = current.merged_with(from_cluster)
        sec.encrypt(merged, ws, env)
        print(f"encrypted {len(from_cluster.as_dict())} credential values into {ws.secrets}", file=sys.stderr)
    elif ws.secrets.exists():
        print(f"no credentials in {ws.cluster}; keeping {ws.secrets}", file=sys.stderr)
    else:
        print(f"no credentials in {ws.cluster}: nothing to encrypt", file=sys.stderr)
    if config.backend.http_address is None or sec.decrypt(ws, env).has_state_credentials:
        return run_tofu("init", [], ws)
    print("no state credentials: skipping infra:init", file=sys.stderr)
    return 0


def secrets_edit(ws: Workspace) -> int:
    return sec.edit(ws, tools_env())


Command = Callable[[Workspace, list[str]], int]


def _tofu_command(name: str) -> Command:
    return lambda ws, args: run_tofu(name, args, ws)


COMMANDS: dict[str, Command] = {
    "synth": lambda ws, _args: (synth(ws, load(ws)), 0)[1],
    "configure": lambda ws, _args: configure(ws),
    "secrets-edit": lambda ws, _args: secrets_edit(ws),
    "verify-nodes": lambda ws, args: verify(load(ws), tcp_only="--tcp" in args),
    "demo": lambda _ws, args: run_demo(keep="--keep" in args),
    **{name: _tofu_command(name) for name in TOFU_COMMANDS},
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to tofu")
    ns = parser.parse_args(argv)
    try:
        return COMMANDS[ns.command](Workspace.from_env(), list(ns.args))
    except REPORTED as exc:
        return report(exc)
