"""Run tofu in the synthesized stack directory with credentials only in its environment."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workflow.errors import WorkflowError

PLAN_FILE = "tfplan"
PLAN_STAMP = "tfplan.config-sha256"  # which cdk.tf.json the saved plan was made from

# As the template setup's Taskfile: Cloudflare R2 rejects the AWS SDK's default checksums.
R2_WORKAROUND = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


class Tofu:
    def __init__(self, stack_dir: Path, env: Mapping[str, str]) -> None:
        self.stack_dir = stack_dir
        self.env = {**R2_WORKAROUND, **env}

    def run(self, *args: str) -> int:
        proc = self._start(args, capture=False)
        wait_for_tofu(proc)
        return proc.returncode

    def capture(self, *args: str) -> subprocess.CompletedProcess[str]:
        """tofu's exit code and output; like run(), it lets tofu finish on Ctrl-C."""
        proc = self._start(args, capture=True)
        out, err = wait_for_tofu(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out or "", err or "")

    def run_keeping_errors(self, *args: str) -> tuple[int, str]:
        """Like run(), its output shown as it comes, but tofu's stderr (its errors) kept
        for the caller to read and show: (exit code, stderr)."""
        argv = ["tofu", f"-chdir={self.stack_dir}", *args]
        try:
            proc = subprocess.Popen(argv, env=self.env, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError as exc:
            raise WorkflowError("tofu not found on PATH (scripts/setup-tools provides it)") from exc
        _, err = wait_for_tofu(proc)
        return proc.returncode, err or ""

    def output_json(self) -> dict[str, Any]:
        """`tofu output -json`, parsed."""
        proc = self.capture("output", "-json")
        if proc.returncode != 0:
            raise WorkflowError(f"tofu output failed: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def _start(self, args: Sequence[str], *, capture: bool) -> subprocess.Popen[str]:
        argv = ["tofu", f"-chdir={self.stack_dir}", *args]
        pipe = subprocess.PIPE if capture else None
        try:
            return subprocess.Popen(argv, env=self.env, stdout=pipe, stderr=pipe, text=True)
        except FileNotFoundError as exc:
            raise WorkflowError("tofu not found on PATH (scripts/setup-tools provides it)") from exc

    def ensure_init(self) -> None:
        if not (self.stack_dir / ".terraform").exists():
            self.checked("init", "-input=false")

    def checked(self, *args: str) -> None:
        code = self.run(*args)
        if code != 0:
            raise TofuFailed(code)

    # --- plan / apply with a guard against stale plans ---------------------------------
    def config_digest(self) -> str:
        return hashlib.sha256((self.stack_dir / "cdk.tf.json").read_bytes()).hexdigest()

    def plan(self, args: Sequence[str]) -> int:
        stamp = self.stack_dir / PLAN_STAMP
        stamp.unlink(missing_ok=True)
        code = self.run("plan", "-input=false", f"-out={PLAN_FILE}", *args)
        if code in (0, 2):  # 2: -detailed-exitcode with changes
            stamp.write_text(self.config_digest() + "\n")
        return code

    def check_saved_plan(self) -> None:
        plan, stamp = self.stack_dir / PLAN_FILE, self.stack_dir / PLAN_STAMP
        if not plan.exists() or not stamp.exists():
            raise WorkflowError("no saved plan: run `task infra:plan` first")
        if stamp.read_text().strip() != self.config_digest():
            raise WorkflowError(
                "the saved plan was made from a different synthesized config (cdk.tf.json "
                "changed since `task infra:plan`); run `task infra:plan` again and review it"
            )

    def forget_saved_plan(self) -> None:
        (self.stack_dir / PLAN_STAMP).unlink(missing_ok=True)  # a plan applies once


def wait_for_tofu(proc: subprocess.Popen[str]) -> tuple[str | None, str | None]:
    """(stdout, stderr) once tofu has exited (None for what was not captured). On Ctrl-C
    tofu gets the same SIGINT (it is in our process group) and stops on its own,
    releasing the state lock it holds: wait for that rather than kill it (subprocess.run
    would), then report the interrupt."""
    interrupted = False
    while True:
        try:
            out, err = proc.communicate()
        except KeyboardInterrupt:
            interrupted = True
            continue
        if interrupted:
            raise KeyboardInterrupt
        return out, err


class TofuFailed(WorkflowError):
    def __init__(self, code: int) -> None:
        super().__init__(f"tofu exited with code {code}")
        self.exit_code = code
