"""What the rolling apply prints: its plan, each step's progress (`rollout: ...` on
stdout), and the one line it stops with."""

from __future__ import annotations

from collections.abc import Sequence

from config import InfraConfig
from workflow.errors import WorkflowError
from workflow.rollout.classify import Classification
from workflow.rollout.options import RolloutOptions
from workflow.rollout.order import Step, role_of


class RolloutStopped(WorkflowError):
    exit_code = 1


def say(message: str) -> None:
    print(f"rollout: {message}", flush=True)


def untouched(remaining: Sequence[Step]) -> list[str]:
    return [c.name for s in remaining for c in s.changes]


def stopped(label: str, why: str, remaining: Sequence[Step] = (), todo: str | None = None) -> RolloutStopped:
    """The line a rollout stops with: where, why, the nodes it did not restart, what to do."""
    rest = untouched(remaining)
    tail = f"; not restarted: {', '.join(rest)}" if rest else ""
    return RolloutStopped(f"rollout stopped {label}: {why}{tail}" + (f"; {todo}" if todo else ""))


def step_label(done: int, step: Step, total: int) -> str:
    if len(step.changes) == 1:
        return f"[{done + 1}/{total}]"
    return f"[{done + 1}-{done + len(step.changes)}/{total}]"


def print_plan(
    plan: Sequence[Step], found: Classification, options: RolloutOptions, config: InfraConfig
) -> None:
    total = sum(len(s.changes) for s in plan)
    workers = f"{options.parallel} workers at a time" if options.parallel > 1 else "one at a time"
    say(f"{total} VM{'s' * (total != 1)} may restart: workers first ({workers}), then each controller")
    n = 0
    for step in plan:
        for change in step.changes:
            n += 1
            role = role_of(change, config)
            group = f" (group of {len(step.changes)})" if len(step.changes) > 1 else ""
            say(f"  {n}. {change.name:<16} {role:<10} {change.action}: {change.why}{group}")
    if found.other:
        say(f"  first, in one go: {len(found.other)} other change{'s' * (len(found.other) != 1)}")


def minutes(seconds: float) -> str:
    """`2 min 5 s` or `40 s`, for progress lines."""
    whole = int(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"
