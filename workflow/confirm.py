"""Confirmation for destructive tasks: ask on a terminal, refuse when unattended."""

from __future__ import annotations

import os
import sys

from workflow.errors import WorkflowError
from workflow.invocation import with_yes

APPROVE_ENV = "INFRA_AUTO_APPROVE"
YES_FLAGS = ("--yes", "-y")


def split_yes(args: list[str]) -> tuple[bool, list[str]]:
    """(whether --yes was given, the other arguments for tofu)."""
    return any(a in YES_FLAGS for a in args), [a for a in args if a not in YES_FLAGS]


def confirm(action: str, yes: bool, command: str) -> None:
    """Ask before `command` does `action`; unattended, say how to confirm it."""
    if yes or os.environ.get(APPROVE_ENV, "").lower() in ("1", "true", "yes"):
        return
    if not sys.stdin.isatty():
        raise WorkflowError(
            f"refusing to {action} without confirmation: there is no terminal to ask on; "
            f"pass --yes (`{with_yes(command)}`) or set {APPROVE_ENV}=true"
        )
    answer = input(f"This will {action}. Type 'yes' to continue: ")
    if answer.strip() != "yes":
        raise WorkflowError(f"not confirmed: did not {action}")
