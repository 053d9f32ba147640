"""Waiting for restarted nodes: polled through the Proxmox API, the guest agent and Talos
(health.py), and the cluster when it is in view, until each is healthy or the node timeout
runs out. A host Proxmox reports offline for several polls in a row stops the wait early."""

from __future__ import annotations

import time
from collections.abc import Sequence

from workflow.proxmox.api import ProxmoxApi
from workflow.rollout import health
from workflow.rollout.cluster_view import ClusterView, rejoin_hint
from workflow.rollout.options import RolloutOptions
from workflow.rollout.order import Step
from workflow.rollout.report import stopped

OFFLINE = "HTTP 595"  # Proxmox's answer about a VM whose host it cannot reach
OFFLINE_POLLS = 3


def wait_healthy(
    api: ProxmoxApi,
    cluster: ClusterView | None,
    nodes: Sequence[health.Node],
    options: RolloutOptions,
    label: str,
    remaining: Sequence[Step] = (),
) -> None:
    deadline = time.monotonic() + options.node_timeout
    waiting = list(nodes)
    problem: dict[str, str] = {}
    offline: dict[str, int] = {}
    while True:
        for node in list(waiting):
            why = health.check(api, node)
            if why is None and cluster is not None:
                why = cluster.not_healthy(node)
            if why is None:
                waiting.remove(node)
                continue
            problem[node.name] = why
            offline[node.name] = offline.get(node.name, 0) + 1 if OFFLINE in why else 0
            if offline[node.name] >= OFFLINE_POLLS:
                raise stopped(
                    label,
                    f"{node.name} did not come back: Proxmox cannot reach its host {node.host} ({why})",
                    remaining,
                    f"run the task again to resume once {node.host} is back online",
                )
        if not waiting:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(min(options.poll_interval, max(0.0, deadline - time.monotonic())))
    node = waiting[0]
    todo = (
        f"run `{rejoin_hint(node)}`, then run the task again to resume"
        if node.replaced and cluster is not None
        else "run the task again to resume once it is back"
    )
    raise stopped(
        label,
        f"{node.name} did not come back within {options.node_timeout:g} s: {problem[node.name]}",
        remaining,
        todo,
    )
