"""Rolling apply: VM changes that may restart a VM are applied one node at a time, each
waited for until healthy (workers first, never two controllers at once)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from config import InfraConfig
from workflow.rollout.options import RolloutOptions, split_rollout_args
from workflow.rollout.runner import Rollout
from workflow.tofu import PLAN_FILE, Tofu

AUTO_PLAN = "tfplan-auto"  # apply-auto's plan: the intent its rollout keeps to

__all__ = ["RolloutOptions", "rolling_apply", "split_rollout_args"]


def rolling_apply(
    tofu: Tofu,
    config: InfraConfig,
    options: RolloutOptions,
    args: Sequence[str],
    *,
    saved_plan: bool,
    root: Path | None = None,
) -> int:
    """`task infra:apply` (the saved, reviewed plan) or `task infra:apply-auto` (a fresh plan,
    confirmed beforehand). Extra arguments go to tofu apply (saved plan) or tofu plan (auto).
    `root`: where cluster.yaml is, and so the template setup's `kubeconfig`."""
    if saved_plan:  # checked against the config by the caller (Tofu.check_saved_plan)
        code = Rollout(tofu, config, options, args, "apply", root).apply_plan(PLAN_FILE)
        tofu.forget_saved_plan()  # a rollout that stopped keeps it: running again resumes
        return code
    plan_file = tofu.stack_dir / AUTO_PLAN
    try:
        code = tofu.run("plan", "-input=false", f"-out={AUTO_PLAN}", *args)
        if code != 0:
            return code
        return Rollout(tofu, config, options, [], "apply-auto", root).apply_plan(AUTO_PLAN)
    finally:
        plan_file.unlink(missing_ok=True)
