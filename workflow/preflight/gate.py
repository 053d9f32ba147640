"""The preflight as the tasks run it: the Proxmox API from the token tofu gets, the state
from `tofu state pull`, the report printed, and a refusal (exit 2) when something blocks."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from config import LoadResult
from workflow.errors import WorkflowError
from workflow.invocation import task_line
from workflow.preflight import run_preflight
from workflow.preflight.report import Report
from workflow.preflight.state import StackState, parse_state
from workflow.proxmox.api import api_from_env
from workflow.tofu import Tofu

SKIP_FLAG = "--skip-preflight"


class PreflightBlocked(WorkflowError):
    """Something blocks: the report said what, line by line (nothing more to print)."""

    def __init__(self) -> None:
        super().__init__("")


def stack_state(tofu: Tofu) -> StackState:
    """The state as the last apply wrote it (`tofu state pull`: no refresh, no lock)."""
    proc = tofu.capture("state", "pull")
    if proc.returncode != 0:
        detail = next((ln.strip() for ln in proc.stderr.splitlines() if ln.strip()), "")
        raise WorkflowError(f"cannot read the state for the preflight (tofu state pull: {detail})")
    try:
        return parse_state(proc.stdout)
    except ValueError as exc:
        raise WorkflowError(f"cannot read the state for the preflight: {exc}") from exc


def split_skip(args: list[str]) -> tuple[bool, list[str]]:
    return SKIP_FLAG in args, [a for a in args if a != SKIP_FLAG]


def gate(
    tofu: Tofu,
    loaded: LoadResult,
    *,
    skip: bool = False,
    read_only: bool = False,
    verbose: bool = False,
    as_json: bool = False,
) -> Report:
    """Run the preflight and print it (to stderr unless it is the command itself);
    PreflightBlocked when something blocks."""
    config = loaded.config
    api = api_from_env(config, tofu.env)
    try:
        # tofu (its start, the backend's answer) pulls the state while the API is read.
        with ThreadPoolExecutor(1) as pool:
            pulled = pool.submit(stack_state, tofu)
            report = run_preflight(
                config,
                pulled.result,
                api,
                loaded.where,
                lambda address: task_line("state-rm", address),
                skip=skip,
                read_only=read_only,
            )
    finally:
        api.close()
    if as_json:
        print(report.to_json())
    else:
        out = sys.stdout if verbose else sys.stderr
        for line in report.lines(verbose):
            print(line, file=out, flush=True)
    if report.blocking:
        raise PreflightBlocked
    return report
