"""The rolling apply: what cannot restart a VM in one go, then restarting VMs node by node.

    reviewed plan (saved tfplan, or a fresh plan for apply-auto)
      ├─ gates (gates.py): etcd quorum, replacements confirmed, controller deletions
      ├─ the cluster, when a kubeconfig is there (cluster_view.py): every VM has its Node
      └─ classify: restarting VM changes / everything else
           ├─ none restart: drain the workers to delete, then `tofu apply <plan>`
           └─ some do: print the rollout plan, then
                1. everything else (workers to delete drained first): plan -target=<each>,
                   check it against the reviewed plan, apply
                2. each step (workers first, N at a time; controllers one at a time):
                   drain workers / check the control plane, plan -target=<vm>, check,
                   apply, wait until healthy (or stop), uncordon

Nodes restarted but not yet seen healthy are written to `rollout-state.json` in the stack
directory, so a run that stopped (timeout, Ctrl-C) checks them first when run again,
before it restarts anything else.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from config import InfraConfig
from workflow.errors import WorkflowError
from workflow.rollout import gates as plan_gates
from workflow.rollout import health, intent
from workflow.rollout.classify import Classification, VmChange, classify
from workflow.rollout.cluster_view import ClusterView, rejoin_hint
from workflow.rollout.eject import eject_local_iso
from workflow.rollout.options import RolloutOptions
from workflow.rollout.order import Step, role_of, steps
from workflow.tofu import Tofu

STEP_PLAN = "rollout-step.tfplan"
STATE_FILE = "rollout-state.json"
TOKEN_ENV = "PROXMOX_VE_API_TOKEN"


class RolloutStopped(WorkflowError):
    exit_code = 1


def say(message: str) -> None:
    print(f"rollout: {message}", flush=True)


def _checked(tofu: Tofu, what: str, *args: str) -> str:
    proc = tofu.capture(*args)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise WorkflowError(
            f"{what}: tofu {args[0]} exited with code {proc.returncode} (its output is above)"
        )
    return proc.stdout


def show_plan(tofu: Tofu, plan_file: str) -> dict[str, Any]:
    return json.loads(_checked(tofu, "reading the plan", "show", "-json", plan_file))


class Rollout:
    def __init__(
        self,
        tofu: Tofu,
        config: InfraConfig,
        options: RolloutOptions,
        apply_args: Sequence[str],
        command: str = "apply",
        root: Path | None = None,
    ):
        self.tofu = tofu
        self.config = config
        self.options = options
        self.apply_args = list(apply_args)
        self.command = command  # the workflow command, for the lines that say what to type
        self.root = root or Path.cwd()  # where cluster.yaml is: ./kubeconfig is looked up there
        self.state_file = tofu.stack_dir / STATE_FILE
        self._api: health.ProxmoxApi | None = None
        self.cluster: ClusterView | None = None

    # ------------------------------------------------------------------ entry points

    def apply_plan(self, plan_file: str) -> int:
        """Apply a reviewed plan file, after its gates: at once when nothing in it restarts
        a VM or deletes a worker the cluster must drain first."""
        reviewed = show_plan(self.tofu, plan_file)
        gates = plan_gates.read_gates(reviewed, self.config)
        plan_gates.check_quorum(gates)
        found = classify(reviewed)
        touched = [c.name for c in found.restarting] + [x.name for x in gates.losses if x.action == "delete"]
        if touched or self._unfinished():
            self.cluster = self.see_cluster()
        try:
            plan_gates.confirm_replacements(gates, self.options.allow_replace, self.command, say)
            for line in plan_gates.deletion_steps(gates):
                say(line)
            if self.cluster is not None:
                self.cluster.preflight([c.name for c in found.restarting], gates.deleted_controllers)
            if not found.restarting:
                self.wait_for_unfinished()
                self.drain_removed(gates)
                return self.tofu.run("apply", "-input=false", *self.apply_args, plan_file)
            self.roll(reviewed, found, gates)
            return 0
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def see_cluster(self) -> ClusterView | None:
        view = ClusterView.connect(self.options, say, self.root)
        if view is None:
            say(
                "cannot see the cluster (no kubeconfig: none given with --kubeconfig, KUBECONFIG "
                "unset, no ./kubeconfig): checking VMs only, not Kubernetes nodes, and no drain"
            )
        return view

    def drain_removed(self, gates: plan_gates.PlanGates) -> None:
        """Workers whose VMs the plan deletes: drained first, when the cluster is in view."""
        if self.cluster is None:
            return
        nodes = self.cluster.api.nodes()
        for loss in plan_gates.removed(gates, "worker"):
            if loss.name in nodes:
                self.cluster.cordon_and_drain(loss.name, nodes[loss.name])

    def roll(self, reviewed: Mapping[str, Any], found: Classification, gates: plan_gates.PlanGates) -> None:
        plan = steps(found.restarting, self.config, self.options.parallel)
        self.print_plan(plan, found)
        started = time.monotonic()
        self.wait_for_unfinished()
        if found.other:
            self.drain_removed(gates)
            self.apply_step(reviewed, list(found.other), f"{len(found.other)} changes that restart no VM")
        total = sum(len(s.changes) for s in plan)
        done = 0
        for index, step in enumerate(plan):
            label = (
                f"[{done + 1}/{total}]"
                if len(step.changes) == 1
                else f"[{done + 1}-{done + len(step.changes)}/{total}]"
            )
            remaining = plan[index + 1 :]
            nodes = [self.node(c) for c in step.changes]
            applied = self.apply_step(
                reviewed,
                [c.address for c in step.changes],
                f"{label} {step.names}",
                nodes,
                before=functools.partial(self.before_step, step, nodes, label, remaining),
            )
            t0 = time.monotonic()
            self.stop_if_replaced(nodes, label, remaining)
            self.wait_healthy(nodes, label, remaining=remaining)
            verb = "healthy again" if applied else "already applied; healthy"
            say(f"{label} {step.names}: {verb} after {time.monotonic() - t0:.1f} s")
            done += len(step.changes)
        # `-target` leaves the root outputs as they were: one last, untargeted plan brings
        # them up to date (and must change no resource the reviewed plan did not).
        self.apply_step(reviewed, [], "the outputs")
        say(f"done: {total} node{'s' * (total != 1)} restarted in turn in {time.monotonic() - started:.1f} s")

    # ------------------------------------------------------------------ printing

    def print_plan(self, plan: Sequence[Step], found: Classification) -> None:
        total = sum(len(s.changes) for s in plan)
        workers = (
            f"{self.options.parallel} workers at a time" if self.options.parallel > 1 else "one at a time"
        )
        say(f"{total} VM{'s' * (total != 1)} may restart: workers first ({workers}), then each controller")
        n = 0
        for step in plan:
            for change in step.changes:
                n += 1
                role = role_of(change, self.config)
                group = f" (group of {len(step.changes)})" if len(step.changes) > 1 else ""
                say(f"  {n}. {change.name:<16} {role:<10} {change.action}: {change.why}{group}")
        if found.other:
            say(f"  first, in one go: {len(found.other)} other change{'s' * (len(found.other) != 1)}")

    # ------------------------------------------------------------------ applying

    def before_step(
        self, step: Step, nodes: list[health.Node], label: str, remaining: Sequence[Step]
    ) -> None:
        """Just before a step's VMs change: drain workers or check the control plane (the
        nodes learn their boot ids), and take a local ISO out of a VM that moves."""
        for i, (change, node) in enumerate(zip(step.changes, nodes, strict=True)):
            if self.cluster is not None and change.restarts:
                try:
                    nodes[i] = self.cluster.before_restart(node, step.role == "controller")
                except WorkflowError as exc:
                    untouched = [c.name for s in remaining for c in s.changes]
                    rest = f"; not restarted: {', '.join(untouched)}" if untouched else ""
                    raise RolloutStopped(f"rollout stopped {label}: {exc}{rest}") from exc
            proxmox = self.config.proxmox
            if change.action == "migrate" and proxmox is not None and not proxmox.iso_storage_shared:
                eject_local_iso(self.api, change, say)

    def stop_if_replaced(self, nodes: Sequence[health.Node], label: str, remaining: Sequence[Step]) -> None:
        """A replaced VM boots an empty disk into Talos maintenance mode: it is a node of the
        cluster again only once the operator applied its Talos config."""
        replaced = [n for n in nodes if n.replaced]
        if self.cluster is None or not replaced:
            return
        if all(self.cluster.not_healthy(n) is None for n in replaced):
            return
        node = replaced[0]
        untouched = [c.name for s in remaining for c in s.changes]
        rest = f"; not restarted yet: {', '.join(untouched)}" if untouched else ""
        raise RolloutStopped(
            f"rollout stopped {label}: {node.name} was replaced and boots into Talos maintenance "
            f"mode; run `{rejoin_hint(node)}` to make it a node of the cluster again, then run "
            f"this task again to resume{rest}"
        )

    def apply_step(
        self,
        reviewed: Mapping[str, Any],
        addresses: list[str],
        label: str,
        nodes: list[health.Node] | None = None,
        before: Callable[[], None] | None = None,
    ) -> bool:
        """Plan the addresses again, check against the reviewed plan, apply. False when the
        reviewed changes were applied already (a resumed run). `before` runs just before
        the apply (a drain), after the plan was found unchanged."""
        step_plan = self.tofu.stack_dir / STEP_PLAN
        targets = [f"-target={a}" for a in addresses]
        try:
            _checked(self.tofu, f"planning {label}", "plan", "-input=false", f"-out={STEP_PLAN}", *targets)
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
            if nodes:
                self.remember(nodes)
            say(f"{label}: applying ...")
            t0 = time.monotonic()
            _checked(self.tofu, f"applying {label}", "apply", "-input=false", *self.apply_args, STEP_PLAN)
            say(f"{label}: applied in {time.monotonic() - t0:.1f} s")
            return True
        finally:
            step_plan.unlink(missing_ok=True)

    # ------------------------------------------------------------------ health

    @property
    def api(self) -> health.ProxmoxApi:
        if self._api is None:
            token = self.tofu.env.get(TOKEN_ENV)
            if not token or self.config.proxmox is None:
                raise WorkflowError(
                    f"no Proxmox API token ({TOKEN_ENV}) for the health checks of the rolling apply; "
                    "put proxmox_api_token_id/secret in cluster.yaml and run `task configure`"
                )
            self._api = health.ProxmoxApi(
                self.config.proxmox.endpoint, token, insecure=self.config.proxmox.insecure
            )
        return self._api

    def node(self, change: VmChange) -> health.Node:
        spec = next((vm for vm in self.config.vms if vm.name == change.name), None)
        address = spec.address if spec else None
        cidr = self.config.cluster.node_cidr
        talos = address is not None and health.talos_reachable(
            address, str(cidr) if cidr else None, self.options.talos_check
        )
        return health.Node(
            change.name,
            change.host,
            change.vm_id,
            change.agent,
            address,
            talos,
            new_boot=change.restarts,
            controller=role_of(change, self.config) == "controller",
            replaced=change.action == "replace",
        )

    def wait_healthy(self, nodes: Sequence[health.Node], label: str, remaining: Sequence[Step] = ()) -> None:
        deadline = time.monotonic() + self.options.node_timeout
        waiting = list(nodes)
        problem: dict[str, str] = {}
        while True:
            for node in list(waiting):
                why = health.check(self.api, node)
                if why is None and self.cluster is not None:
                    why = self.cluster.not_healthy(node)
                if why is None:
                    waiting.remove(node)
                else:
                    problem[node.name] = why
            if not waiting:
                if self.cluster is not None:
                    for node in nodes:
                        self.cluster.after_healthy(node)
                self.forget(nodes)
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(min(self.options.poll_interval, max(0.0, deadline - time.monotonic())))
        node = waiting[0]
        untouched = [c.name for s in remaining for c in s.changes]
        rest = f"; not restarted: {', '.join(untouched)}" if untouched else ""
        todo = (
            f"run `{rejoin_hint(node)}`, then run the task again to resume"
            if node.replaced and self.cluster is not None
            else "run the task again to resume once it is back"
        )
        raise RolloutStopped(
            f"rollout stopped {label}: {node.name} did not come back within "
            f"{self.options.node_timeout:g} s: {problem[node.name]}{rest}; {todo}"
        )

    # ------------------------------------------------------------------ resume state

    def remember(self, nodes: Sequence[health.Node]) -> None:
        state = {n.name: n for n in self._unfinished()} | {n.name: n for n in nodes}
        self._write(list(state.values()))

    def forget(self, nodes: Sequence[health.Node]) -> None:
        names = {n.name for n in nodes}
        self._write([n for n in self._unfinished() if n.name not in names])

    def _unfinished(self) -> list[health.Node]:
        try:
            data = json.loads(self.state_file.read_text())
            return [health.Node(**n) for n in data["restarted_not_yet_healthy"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            raise WorkflowError(
                f"{self.state_file} is not a rollout state ({exc}); delete it to go on"
            ) from exc

    def _write(self, nodes: list[health.Node]) -> None:
        if not nodes:
            self.state_file.unlink(missing_ok=True)
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"restarted_not_yet_healthy": [asdict(n) for n in nodes]}, indent=1) + "\n")
        os.replace(tmp, self.state_file)

    def wait_for_unfinished(self) -> None:
        """Nodes an earlier run restarted and did not see healthy: wait for them first."""
        earlier = self._unfinished()
        if earlier:
            names = ", ".join(n.name for n in earlier)
            say(f"checking {names} first (restarted by an earlier run, not yet seen healthy)")
            self.wait_healthy(earlier, "before it went on")
            say(f"{names}: healthy")
