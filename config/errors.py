"""Configuration problems: one line each, `FILE:LINE: key.path: what is wrong (expected)`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, so the operator can fix them all in one go."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line or 0, p.key, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


def show_key(key: object) -> str:
    """A key (or a value that is not secret) as a message shows it: as written when it is
    short plain text, else quoted and cut, so that a message stays one line."""
    text = str(key)
    if text.isprintable() and 0 < len(text) <= 64 and " " not in text:
        return text
    return repr(text[:61] + "...") if len(text) > 64 else repr(text)
