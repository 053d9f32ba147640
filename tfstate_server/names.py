"""Validation of state names and user names, which become path segments and object keys."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def is_valid_name(name: str) -> bool:
    """True for one path segment of [A-Za-z0-9._-]; "." and ".." would escape the directory."""
    return 0 < len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None and name not in (".", "..")


@dataclass(frozen=True)
class StateKey:
    """One state: its owner's namespace (the user name, as in the tfstate-worker) and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
