"""The preflight's findings: one line each (what, where, the fix), as text or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

# In the order they run; every finding names one.
CHECKS = (
    "token",
    "version",
    "hosts",
    "quorum",
    "privileges",
    "storages",
    "bridges",
    "ownership",
    "vm-ids",
    "macs",
    "cpus",
    "images",
)
OK, WARN, BLOCK, SKIPPED = "ok", "warn", "block", "skipped"


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # ok, warn, block, skipped
    text: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    skipped: tuple[str, ...] = ()  # checks left out on purpose (--skip-preflight)

    def add(self, check: str, level: str, text: str) -> None:
        if check not in CHECKS:
            raise ValueError(f"unknown preflight check {check!r}")
        self.findings.append(Finding(check, level, text))

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.level == BLOCK]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARN]

    def status(self, check: str) -> str:
        levels = {f.level for f in self.findings if f.check == check}
        for level in (BLOCK, WARN, OK, SKIPPED):
            if level in levels:
                return level
        return SKIPPED

    def lines(self, verbose: bool) -> list[str]:
        """Every finding (verbose), or the problems and one summary line."""
        out = []
        for f in sorted(self.findings, key=lambda f: CHECKS.index(f.check)):
            if verbose or f.level in (WARN, BLOCK):
                label = {OK: "ok", WARN: "warning", BLOCK: "PROBLEM", SKIPPED: "skipped"}[f.level]
                out.append(f"preflight: {label}: {f.text}")
        passed = [c for c in CHECKS if self.status(c) in (OK, WARN)]
        if self.skipped:
            out.append(f"preflight: skipped (--skip-preflight): {', '.join(self.skipped)}")
        if self.blocking:
            count = len(self.blocking)
            out.append(
                f"preflight: {count} problem{'s' * (count != 1)} found; nothing was changed "
                "(fix them and run the task again)"
            )
        else:
            out.append(
                f"preflight: {len(passed)} checks passed in {self.seconds:.1f} s ({', '.join(passed)})"
            )
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": not self.blocking,
                "seconds": round(self.seconds, 3),
                "checks": {c: self.status(c) for c in CHECKS},
                "skipped": list(self.skipped),
                "findings": [{"check": f.check, "level": f.level, "text": f.text} for f in self.findings],
            },
            indent=1,
        )
