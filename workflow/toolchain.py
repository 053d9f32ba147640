"""tofu, sops and age on PATH, via scripts/setup-tools (cached builds; see the README)."""

from __future__ import annotations

import os
from functools import cache

from devenv.tools import ToolsError, ensure_tools
from workflow.errors import WorkflowError


@cache
def _tools_env() -> tuple[tuple[str, str], ...]:
    try:
        tools = ensure_tools(args=("--sops",))
    except ToolsError as exc:
        raise WorkflowError(str(exc)) from exc
    return tuple(tools.environ(dict(os.environ)).items())


def tools_env() -> dict[str, str]:
    """os.environ plus PATH and TF_CLI_CONFIG_FILE from setup-tools (run once a process)."""
    return dict(_tools_env())
