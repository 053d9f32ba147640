"""Draining a node before its VM restarts or goes: cordon, then evict its pods through the
Eviction API, so PodDisruptionBudgets are honoured, with kubectl drain's rules:

- mirror pods (a node's static pods) are never touched;
- DaemonSet pods are left (`kubectl drain --ignore-daemonsets`, as nearly everyone runs it);
- pods no controller manages are left on the node with a warning: evicting one deletes it
  for good, while left alone it restarts with its node;
- finished pods need nothing; pods already terminating are waited for;
- an eviction a budget refuses (429) is tried again until the drain timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from workflow.cluster.api import KubeApi, Pod
from workflow.errors import WorkflowError

RETRY_SECS = 1.0  # between evictions a budget refused (kubectl: 5 s)


class DrainTimeout(WorkflowError):
    exit_code = 1


@dataclass
class DrainPlan:
    evict: list[Pod] = field(default_factory=list)
    wait: list[Pod] = field(default_factory=list)  # already terminating
    left: list[str] = field(default_factory=list)  # warnings about pods left on the node


def plan_drain(pods: Sequence[Pod]) -> DrainPlan:
    out = DrainPlan()
    daemons = 0
    for pod in pods:
        if pod.mirror or pod.finished:
            continue
        if "DaemonSet" in pod.owner_kinds:
            daemons += 1
        elif pod.terminating:
            out.wait.append(pod)
        elif not pod.owner_kinds:
            out.left.append(f"{pod.ref} is managed by no controller: left on the node (it restarts with it)")
        else:
            out.evict.append(pod)
    if daemons:
        out.left.append(f"{daemons} DaemonSet pod{'s' * (daemons != 1)} left on the node")
    return out


def drain(
    api: KubeApi,
    node: str,
    timeout: float,
    say: Callable[[str], None],
    *,
    retry: float = RETRY_SECS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Evict the node's pods and wait until they are gone; the number evicted. Raises
    DrainTimeout (one line) when the timeout passes first; the node stays cordoned."""
    deadline = clock() + timeout
    plan = plan_drain(api.pods_on(node))
    for note in plan.left:
        say(f"{node}: {note}")
    pending = list(plan.evict)
    gone_wait = list(plan.wait)
    refused: dict[str, str] = {}
    evicted = 0
    while True:
        for pod in list(pending):
            status, message = api.evict(pod)
            if status in (200, 201, 404, 409):  # evicted, already gone, or replaced meanwhile
                pending.remove(pod)
                refused.pop(pod.ref, None)
                gone_wait.append(pod)
                evicted += status in (200, 201)
            else:  # 429: a budget forbids it now; 500: several budgets, or a server error
                refused[pod.ref] = message or f"HTTP {status}"
        gone_wait = [p for p in gone_wait if not api.pod_gone(p)]
        if not pending and not gone_wait:
            return evicted
        if clock() >= deadline:
            break
        sleep(min(retry, max(0.0, deadline - clock())))
    if pending:
        pod = pending[0]
        more = f" (and {len(pending) - 1} more pod{'s' * (len(pending) != 2)})" if len(pending) > 1 else ""
        why = f"evicting {pod.ref}{more} was refused: {refused.get(pod.ref, 'no answer')}"
    else:
        pod = gone_wait[0]
        why = f"{pod.ref} was evicted but is still terminating"
    raise DrainTimeout(f"the drain of {node} did not finish within {timeout:g} s: {why}")
