"""The rolling apply's orchestration: what cannot restart a VM in one go, then restarting
VMs node by node.

    reviewed plan (saved tfplan, or a fresh plan for apply-auto)
      ├─ gates (gates.py): etcd quorum, replacements confirmed, controller deletions
      ├─ the cluster, when a kubeconfig is there (cluster_view.py): every VM has its Node
      └─ classify: restarting VM changes / everything else
           ├─ none restart: drain the workers to delete, wait out VM locks, `tofu apply <plan>`
           └─ some do: print the rollout plan (report.py), then
                1. everything else (workers to delete drained first), one targeted step
                   (targeted.py: plan -target=<each>, check against the reviewed plan, apply)
                2. each step (workers first, N at a time; controllers one at a time):
                   Proxmox ready (faults.py: quorum, hosts online, no lock; a backup is
                   waited out), drain workers / check the control plane, targeted step,
                   wait until healthy (waiting.py) or stop, uncordon

Nodes changed but not yet seen healthy are kept in the resume file (resume.py), so a run
that stopped (a timeout, a Proxmox fault, Ctrl-C) deals with them first when run again: a
VM an interrupted step left stopped is started, one left with pending configuration is
restarted, then each is waited for.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from config import InfraConfig
from workflow.errors import WorkflowError
from workflow.proxmox.api import ProxmoxApi, ProxmoxError, api_from_env
from workflow.rollout import gates as plan_gates
from workflow.rollout import health
from workflow.rollout.classify import Classification, VmChange, classify
from workflow.rollout.cluster_view import ClusterView, rejoin_hint
from workflow.rollout.eject import eject_local_iso
from workflow.rollout.faults import ChangeGuard, NotNow, from_tofu
from workflow.rollout.options import RolloutOptions
from workflow.rollout.order import Step, role_of, steps
from workflow.rollout.report import RolloutStopped, print_plan, say, step_label, stopped
from workflow.rollout.resume import Pending, ResumeFile
from workflow.rollout.targeted import StepFailed, TargetedApply, show_plan
from workflow.rollout.waiting import wait_healthy
from workflow.tofu import Tofu

__all__ = ["Rollout", "RolloutStopped"]


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
        self.resume = ResumeFile(tofu.stack_dir)
        self.targeted = TargetedApply(tofu, self.apply_args, say)
        self._api: ProxmoxApi | None = None
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
        if touched or self.resume.load():
            self.cluster = self.see_cluster()
        try:
            plan_gates.confirm_replacements(gates, self.options.allow_replace, self.command, say)
            for line in plan_gates.deletion_steps(gates):
                say(line)
            if self.cluster is not None:
                self.cluster.preflight([c.name for c in found.restarting], gates.deleted_controllers)
            if not found.restarting:
                self.finish_earlier()
                self.drain_removed(gates)
                self.wait_out_locks(reviewed)
                return self.apply_at_once(plan_file)
            self.roll(reviewed, found, gates)
            return 0
        finally:
            if self.cluster is not None:
                self.cluster.close()
            if self._api is not None:
                self._api.close()

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

    def apply_at_once(self, plan_file: str) -> int:
        """`tofu apply <plan>`, its progress shown as it comes; a failure ends with one line
        naming its cause."""
        code, errors = self.tofu.run_keeping_errors("apply", "-input=false", *self.apply_args, plan_file)
        if code != 0:
            sys.stderr.write(errors)
            fault = from_tofu(errors)
            stop = WorkflowError(f"apply stopped: {fault.text} (tofu's error is above); {fault.todo}")
            stop.exit_code = code  # tofu's own, as before
            raise stop
        return code

    # ------------------------------------------------------------------ rolling

    def roll(self, reviewed: Mapping[str, Any], found: Classification, gates: plan_gates.PlanGates) -> None:
        plan = steps(found.restarting, self.config, self.options.parallel)
        print_plan(plan, found, self.options, self.config)
        started = time.monotonic()
        self.finish_earlier(plan)
        if found.other:
            self.drain_removed(gates)
            label = f"{len(found.other)} changes that restart no VM"
            self.step(reviewed, list(found.other), label, [], plan)
        total = sum(len(s.changes) for s in plan)
        done = 0
        for index, step in enumerate(plan):
            label = step_label(done, step, total)
            remaining = plan[index + 1 :]
            nodes = [self.node(c) for c in step.changes]
            self.proxmox_ready(step, label, plan[index:])
            applied = self.step(
                reviewed,
                [c.address for c in step.changes],
                f"{label} {step.names}",
                nodes,
                remaining,
                before=functools.partial(self.before_step, step, nodes, label, remaining),
            )
            t0 = time.monotonic()
            self.stop_if_replaced(nodes, label, remaining)
            self.wait(nodes, label, remaining)
            verb = "healthy again" if applied else "already applied; healthy"
            say(f"{label} {step.names}: {verb} after {time.monotonic() - t0:.1f} s")
            done += len(step.changes)
        # `-target` leaves the root outputs as they were: one last, untargeted plan brings
        # them up to date (and must change no resource the reviewed plan did not).
        self.step(reviewed, [], "the outputs", [], [])
        say(f"done: {total} node{'s' * (total != 1)} restarted in turn in {time.monotonic() - started:.1f} s")

    def step(
        self,
        reviewed: Mapping[str, Any],
        addresses: list[str],
        label: str,
        nodes: list[health.Node],
        remaining: Sequence[Step],
        before: Any = None,
    ) -> bool:
        """One targeted step. A backup that locked a VM between the check and the apply is
        waited out and the step planned again; any other fault stops the rollout here,
        with the step's VMs kept for the next run to finish."""
        for attempt in (1, 2):
            try:
                return self.targeted.run(reviewed, addresses, label, before=self._remembering(nodes, before))
            except StepFailed as exc:
                if attempt == 1 and exc.fault.kind == "locked" and nodes:
                    for node in nodes:
                        self.guard.unlocked(node.name, *self._where(node), label)
                    before = None  # drained already
                    continue
                if exc.applying and nodes:
                    self.resume.remember(nodes, interrupted=True)
                powers = ", ".join(_power_phrase(n.name, self.guard.power(*self._where(n))) for n in nodes)
                state = f"; {powers}" if powers else ""
                raise stopped(
                    label,
                    f"{exc}{state} (tofu's output: {exc.log})",
                    remaining,
                    exc.fault.todo,
                ) from exc
        raise AssertionError("unreachable")

    def _remembering(self, nodes: list[health.Node], before: Any) -> Any:
        def run() -> None:
            if before is not None:
                before()
            if nodes:
                self.resume.remember(nodes)

        return run

    def _where(self, node: health.Node) -> tuple[str, int]:
        try:
            return health.locate(self.api, node)
        except (OSError, LookupError):
            return node.host, node.vm_id or 0

    # ------------------------------------------------------------------ around a step

    def proxmox_ready(self, step: Step, label: str, from_here: Sequence[Step]) -> None:
        """Before a step's VMs are touched: quorum, their hosts online, no lock (a backup or
        migration is waited out). Nothing of the step has been done when this stops."""
        for change in step.changes:
            try:
                self.guard.cluster_ready(tuple(dict.fromkeys((change.from_host, change.host))), self.hosts)
                if change.vm_id is not None and change.action != "replace":
                    self.guard.unlocked(change.name, change.from_host, change.vm_id, label)
            except NotNow as exc:
                raise stopped(
                    f"{label} {change.name}", f"{exc.why}; nothing was applied to it", from_here, exc.todo
                ) from exc

    def wait_out_locks(self, reviewed: Mapping[str, Any]) -> None:
        """A plan applied at once: the VMs it changes hold no lock first."""
        for change in _vm_updates(reviewed):
            try:
                self.guard.unlocked(change[0], change[1], change[2], "before the apply:")
            except NotNow as exc:
                raise WorkflowError(
                    f"apply stopped before it began: {exc.why}; nothing was applied; {exc.todo}"
                ) from exc

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
                    raise stopped(label, str(exc), remaining) from exc
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
        raise stopped(
            label,
            f"{node.name} was replaced and boots into Talos maintenance mode; run `{rejoin_hint(node)}` "
            "to make it a node of the cluster again, then run this task again to resume",
            remaining,
        )

    def wait(self, nodes: Sequence[health.Node], label: str, remaining: Sequence[Step] = ()) -> None:
        """Until every node is healthy (then uncordoned and forgotten), or stop."""
        wait_healthy(self.api, self.cluster, nodes, self.options, label, remaining)
        if self.cluster is not None:
            for node in nodes:
                self.cluster.after_healthy(node)
        self.resume.forget(n.name for n in nodes)

    # ------------------------------------------------------------------ health

    @property
    def api(self) -> ProxmoxApi:
        if self._api is None:
            self._api = api_from_env(self.config, self.tofu.env)
        return self._api

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host of the config: VMs and ISO downloads."""
        proxmox = self.config.proxmox
        found = {vm.host for vm in self.config.vms} | {iso.host for iso in self.config.isos if iso.host}
        return tuple(sorted(found | ({proxmox.node} if proxmox else set())))

    @property
    def guard(self) -> ChangeGuard:
        return ChangeGuard(self.api, say, self.options.lock_timeout, self.options.poll_interval)

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

    # ------------------------------------------------------------------ an earlier run

    def finish_earlier(self, plan: Sequence[Step] = ()) -> None:
        """Nodes an earlier run changed and did not see healthy: finish them first."""
        earlier = self.resume.load()
        if not earlier:
            return
        names = ", ".join(p.node.name for p in earlier)
        say(f"checking {names} first (restarted by an earlier run, not yet seen healthy)")
        nodes = [self.recover(p, plan) for p in earlier]
        self.wait(nodes, "before it went on")
        say(f"{names}: healthy")

    def recover(self, pending: Pending, plan: Sequence[Step]) -> health.Node:
        """A node whose step was interrupted: start it when it was left stopped, restart it
        when its new configuration is still pending; else only its health is waited for."""
        node = pending.node
        if not pending.interrupted:
            return node
        host, vm_id = self._where(node)
        try:
            self.guard.cluster_ready((host,), self.hosts)
            self.guard.unlocked(node.name, host, vm_id, "before it went on:")
            power = self.guard.power(host, vm_id)
            if power == "stopped":
                say(f"{node.name}: starting it (an interrupted step left it stopped)")
                self.api.request("POST", self.api.vm_path(host, vm_id) + "/status/start")
                return replace(node, new_boot=True)
            waiting = self.guard.pending(host, vm_id)
            if waiting:
                if self.cluster is not None:
                    node = self.cluster.before_restart(node, node.controller)
                say(
                    f"{node.name}: restarting it to apply its pending {', '.join(waiting)} "
                    "(an interrupted step left them pending)"
                )
                self.api.request("POST", self.api.vm_path(host, vm_id) + "/status/reboot")
                return replace(node, new_boot=True)
        except NotNow as exc:
            raise stopped("before it went on", f"{node.name}: {exc.why}", plan, exc.todo) from exc
        except ProxmoxError as exc:
            raise stopped(
                "before it went on",
                f"{node.name}: the Proxmox API refused ({exc})",
                plan,
                "run the task again to resume once the Proxmox API answers again",
            ) from exc
        return replace(node, new_boot=False)  # nothing of its change took effect yet


def _power_phrase(name: str, power: str) -> str:
    return f"{name}'s state could not be read" if power == "unknown" else f"{name} is {power}"


def _vm_updates(plan: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(name, host, vm id) of each existing VM a plan updates or deletes."""
    out = []
    for rc in plan.get("resource_changes") or []:
        change = rc.get("change") or {}
        before = change.get("before")
        if rc.get("type") != "proxmox_virtual_environment_vm" or not isinstance(before, dict):
            continue
        if list(change.get("actions") or []) in (["no-op"], ["read"]):
            continue
        vm_id = before.get("vm_id")
        if isinstance(vm_id, int):
            out.append((str(before.get("name") or rc["address"]), str(before.get("node_name")), vm_id))
    return out
