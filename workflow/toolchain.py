"""tofu, sops and age on PATH, via scripts/setup-tools (cached builds; see docs/getting-started.md)."""

from __future__ import annotations

import os
from functools import cache

from workflow.errors import WorkflowError
from workflow.tools import Tools, ToolsError, ensure_tools


@cache
def tools(*args: str) -> Tools:
    """scripts/setup-tools ARGS, run once a process; its failure as one line."""
    try:
        return ensure_tools(args=args)
    except ToolsError as exc:
        raise WorkflowError(str(exc)) from exc


def tools_env() -> dict[str, str]:
    """os.environ plus PATH and TF_CLI_CONFIG_FILE from setup-tools, sops and age included."""
    return tools("--sops").environ(dict(os.environ))
