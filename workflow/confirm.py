"""Confirmation for destructive tasks: ask on a terminal, refuse when unattended."""

from __future__ import annotations

import os
import sys

from workflow.errors import WorkflowError

APPROVE_ENV = "INFRA_AUTO_APPROVE"
YES_FLAGS = ("--yes", "-y")


def split_yes(args: list[str]) -> tuple[bool, list[str]]:
    """(whether --yes was given, the other arguments for tofu)."""
    return any(a in YES_FLAGS for a in args), [a for a in args if a not in YES_FLAGS]


def confirm(action: str, yes: bool) -> None:
    if yes or os.environ.get(APPROVE_ENV, "").lower() in ("1", "true", "yes"):
        return
    if not sys.stdin.isatty():
        raise WorkflowError(
            f"refusing to {action} without confirmation: there is no terminal to ask on; "
            f"pass --yes (e.g. `task infra:destroy -- --yes`) or set {APPROVE_ENV}=true"
        )
    answer = input(f"This will {action}. Type 'yes' to continue: ")
    if answer.strip() != "yes":
        raise WorkflowError(f"not confirmed: did not {action}")
