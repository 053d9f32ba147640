"""One step of a rollout through tofu: plan the step's addresses again (`-target`), check
that plan against the reviewed one (intent.py), apply it. A tofu failure becomes a
StepFailed that names its cause (faults.py); tofu's whole output is kept in
`rollout-step.log` in the stack directory."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workflow.errors import WorkflowError
from workflow.rollout import intent
from workflow.rollout.faults import Fault, from_tofu
from workflow.tofu import Tofu

STEP_PLAN = "rollout-step.tfplan"
STEP_LOG = "rollout-step.log"


class StepFailed(WorkflowError):
    """tofu failed while `doing` (planning or applying) a step."""

    def __init__(self, doing: str, fault: Fault, applying: bool, log: str) -> None:
        super().__init__(f"{fault.text} while {doing}")
        self.doing = doing
        self.fault = fault
        self.applying = applying  # the apply had started: the VM may be part way
        self.log = log


def show_plan(tofu: Tofu, plan_file: str) -> dict[str, Any]:
    proc = tofu.capture("show", "-json", plan_file)
    if proc.returncode != 0:
        raise WorkflowError(
            f"reading the plan: tofu show exited with code {proc.returncode}: {proc.stderr.strip()}"
        )
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


class TargetedApply:
    def __init__(self, tofu: Tofu, apply_args: Sequence[str], say: Callable[[str], None]) -> None:
        self.tofu = tofu
        self.apply_args = list(apply_args)
        self.say = say

    def _tofu(self, doing: str, applying: bool, *args: str) -> str:
        proc = self.tofu.capture(*args)
        if proc.returncode == 0:
            return proc.stdout
        log = self.tofu.stack_dir / STEP_LOG
        log.write_text(f"$ tofu {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        raise StepFailed(doing, from_tofu(proc.stderr + proc.stdout), applying, str(log))

    def run(
        self,
        reviewed: Mapping[str, Any],
        addresses: Sequence[str],
        label: str,
        before: Callable[[], None] | None = None,
    ) -> bool:
        """Plan the addresses again, check against the reviewed plan, apply. False when the
        reviewed changes were applied already (a resumed run). `before` runs just before
        the apply (a drain), after the plan was found unchanged."""
        step_plan = self.tofu.stack_dir / STEP_PLAN
        targets = [f"-target={a}" for a in addresses]
        try:
            self._tofu(f"planning {label}", False, "plan", "-input=false", f"-out={STEP_PLAN}", *targets)
            planned = show_plan(self.tofu, STEP_PLAN)
            problems = intent.differences(reviewed, planned)
            if problems:
                raise WorkflowError(
                    f"{label}: the plan now differs from the reviewed plan ({problems[0]}"
                    f"{f'; and {len(problems) - 1} more' if len(problems) > 1 else ''}); nothing "
                    "more was applied; run `task infra:plan` again and review it"
                )
            if not intent.changes(planned) and not intent.output_changes(planned):
                return False
            if before is not None:
                before()
            self.say(f"{label}: applying ...")
            t0 = time.monotonic()
            self._tofu(f"applying {label}", True, "apply", "-input=false", *self.apply_args, STEP_PLAN)
            self.say(f"{label}: applied in {time.monotonic() - t0:.1f} s")
            return True
        finally:
            step_plan.unlink(missing_ok=True)
