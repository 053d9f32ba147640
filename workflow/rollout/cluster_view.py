"""What the rolling apply asks of the Kubernetes cluster around each step.

- before anything is applied: every VM to restart has its Node; a controller to delete has
  left (its Node is not Ready);
- before a worker restarts or goes: cordon and drain it;
- before a controller restarts: every control-plane Node is Ready and /readyz passes;
- after a restart: the Node is Ready with a new bootID (and /readyz passes for a
  controller); then a worker is uncordoned, unless the operator had cordoned it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from workflow.cluster import kubeconfig
from workflow.cluster.api import ClusterError, KubeApi, NodeState
from workflow.cluster.drain import DrainTimeout, drain
from workflow.rollout import health
from workflow.rollout.gates import Loss
from workflow.rollout.options import RolloutOptions

APPLY_NODE = "task talos:apply-node IP={ip}"


class ClusterView:
    def __init__(self, api: KubeApi, options: RolloutOptions, say: Callable[[str], None]) -> None:
        self.api = api
        self.options = options
        self.say = say

    @classmethod
    def connect(
        cls, options: RolloutOptions, say: Callable[[str], None], root: Path | None = None
    ) -> ClusterView | None:
        """The cluster from the kubeconfig, checked to answer; None when there is none to use."""
        found = kubeconfig.locate(options.kubeconfig, options.cluster_check, os.environ, root or Path.cwd())
        if found is None:
            return None
        api = KubeApi(kubeconfig.read(found), found.shown)
        try:
            api.check_access()
        except BaseException:
            api.close()
            raise
        say(f"the cluster is in view: Kubernetes API {api.server} (kubeconfig from {found.origin})")
        return cls(api, options, say)

    def close(self) -> None:
        self.api.close()

    # ------------------------------------------------------------------ before anything

    def preflight(self, restarting: Iterable[str], deleted_controllers: Sequence[Loss]) -> None:
        nodes = self.api.nodes()
        for name in restarting:
            if name not in nodes:
                raise ClusterError(
                    f"{name}: no Node named {name} in the cluster at {self.api.server} "
                    "(expected one Node per VM, named as in nodes.yaml); nothing was applied; "
                    "is this the cluster's kubeconfig? (or pass --cluster-check off)"
                )
        for loss in deleted_controllers:
            state = nodes.get(loss.name)
            if state is not None and state.ready:
                raise ClusterError(
                    f"refusing to delete controller {loss.name}: its Node is still Ready, so it has "
                    f"not left etcd; run `{loss.leave_etcd}` first; nothing was applied"
                )

    # ------------------------------------------------------------------ around a step

    def before_restart(self, node: health.Node, controller: bool) -> health.Node:
        """The node with what its health check needs later (boot id, who uncordons)."""
        state = self._node(node.name)
        if controller:
            ready = self.control_plane_ready(f"before restarting {node.name}")
            self.say(f"{node.name}: control plane ready ({ready} control-plane Nodes Ready, /readyz passes)")
            return replace(node, boot_id=state.boot_id, controller=True)
        self.cordon_and_drain(node.name, state)
        operators = state.unschedulable and not state.cordoned_by_rollout
        return replace(node, boot_id=state.boot_id, uncordon=not operators)

    def _node(self, name: str) -> NodeState:
        state = self.api.node(name)
        if state is None:
            raise ClusterError(
                f"{name}: no Node named {name} in the cluster at {self.api.server} any more; "
                "nothing more was applied"
            )
        return state

    def cordon_and_drain(self, name: str, state: NodeState | None = None) -> None:
        state = state or self._node(name)
        if state.unschedulable and state.cordoned_by_rollout:
            self.say(f"{name}: still cordoned by an earlier run")
        elif state.unschedulable:
            self.say(f"{name}: already cordoned (stays cordoned afterwards)")
        else:
            self.api.set_unschedulable(name, True)
            self.say(f"{name}: cordoned")
        try:
            evicted = drain(self.api, name, self.options.drain_timeout, self.say)
        except DrainTimeout as exc:
            raise DrainTimeout(f"{exc}; {name} stays cordoned and was not restarted") from exc
        self.say(f"{name}: drained ({evicted} pod{'s' * (evicted != 1)} evicted)")

    def control_plane_ready(self, when: str) -> int:
        """How many control-plane Nodes are Ready; raises unless all are and /readyz passes."""
        nodes = self.api.nodes()
        plane = [n for n in nodes.values() if n.control_plane]
        down = [n for n in plane if not n.ready]
        if down:
            raise ClusterError(
                f"{when}: control-plane node {down[0].name} is not Ready ({down[0].why}); "
                "nothing more was applied; run the task again once it is Ready"
            )
        why = self.api.readyz()
        if why:
            raise ClusterError(f"{when}: the API server is not ready: {why}; nothing more was applied")
        return len(plane)

    def not_healthy(self, node: health.Node) -> str | None:
        """None once the cluster counts the node healthy again, else why not (one phrase)."""
        state = self.api.node(node.name)
        if state is None:
            return f"no Node {node.name} in the cluster yet"
        if not state.ready:
            return f"Node {node.name} is not Ready ({state.why})"
        if node.new_boot and node.boot_id is not None and state.boot_id == node.boot_id:
            return f"Node {node.name} is Ready but still reports its old bootID (not restarted yet)"
        if node.controller:
            why = self.api.readyz()
            if why:
                return f"the API server is not ready ({why})"
        return None

    def after_healthy(self, node: health.Node) -> None:
        boot = "with a new bootID" if node.new_boot else "(moved live: same boot)"
        self.say(f"{node.name}: Node Ready {boot}" + (", /readyz passes" if node.controller else ""))
        if node.uncordon:
            self.api.set_unschedulable(node.name, False)
            self.say(f"{node.name}: uncordoned")


def rejoin_hint(node: health.Node) -> str:
    return APPLY_NODE.format(ip=node.address or "<its address>")
