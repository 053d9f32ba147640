"""tofu and the bpg/proxmox provider, made available by scripts/setup-tools.

The product owns this (workflow/tools.py); re-exported here for the tests, benches and
devenv modules that import `devenv.tools`. The product never imports devenv.
"""

from __future__ import annotations

from workflow.tools import (
    BUILD_TIMEOUT,
    ROOT,
    SETUP_TOOLS,
    Tools,
    ToolsError,
    ensure_tools,
    parse_exports,
)

__all__ = [
    "BUILD_TIMEOUT",
    "ROOT",
    "SETUP_TOOLS",
    "Tools",
    "ToolsError",
    "ensure_tools",
    "parse_exports",
]
