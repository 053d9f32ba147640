"""What the drain tests check afterwards: every eviction, and every moment a
PodDisruptionBudget that had been met was not, as the API tells them.

The budgets' status is the disruption controller's (kube-controller-manager): the watch
only reads it. An eviction is recorded once per pod, whether first seen as the pod's
deletion on a node of the simulated kubelets or as an entry the API server added to a
budget's `status.disruptedPods`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from devenv.kube.objects import meta, node_name, pod_key, pod_ready


@dataclass
class _Seen:
    healthy_once: bool = False
    violation: tuple[int, int] | None = None


def _disrupted_this_pod(pod: dict[str, Any], when: str) -> bool:
    """A disruptedPods entry (time of the eviction) is about this pod, not an earlier one of
    the same name (a mirror pod created again): it was created no later. Both RFC 3339 in
    seconds, as the API server writes them."""
    return str(meta(pod).get("creationTimestamp") or "") <= str(when)


class BudgetWatch:
    def __init__(self) -> None:
        self.evictions: list[tuple[float, str, str]] = []  # (monotonic, "ns/pod", node)
        self.pdb_violations: list[str] = []
        self._evicted: set[str] = set()  # pods recorded: their uid and "ns/pod"
        self._seen: dict[str, _Seen] = {}

    def record_eviction(self, pod: dict[str, Any] | None, key: str, node: str) -> None:
        uid = meta(pod).get("uid") if pod else None
        if (uid or key) in self._evicted:
            return
        self._evicted.update(x for x in (uid, key) if x)
        self.evictions.append((time.monotonic(), key, node))

    def observe(self, pdbs: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        """One look at every budget (as listed) and every pod."""
        by_key = {pod_key(p): p for p in pods}
        for pdb in pdbs:
            ns, name = meta(pdb)["namespace"], meta(pdb)["name"]
            status = pdb.get("status") or {}
            for pod_name, when in (status.get("disruptedPods") or {}).items():
                key = f"{ns}/{pod_name}"
                pod = by_key.get(key)
                if pod is None or _disrupted_this_pod(pod, when):
                    self.record_eviction(pod, key, node_name(pod) if pod else "")
            if status.get("observedGeneration") == meta(pdb).get("generation"):
                self._check(f"{ns}/{name}", status, [p for p in pods if meta(p).get("namespace") == ns], pdb)

    def _check(
        self, key: str, status: dict[str, Any], pods: list[dict[str, Any]], pdb: dict[str, Any]
    ) -> None:
        seen = self._seen.setdefault(key, _Seen())
        healthy = int(status.get("currentHealthy") or 0)
        desired = int(status.get("desiredHealthy") or 0)
        expected = int(status.get("expectedPods") or 0)
        if expected > 0 and healthy >= expected:
            seen.healthy_once = True
        if not seen.healthy_once or healthy >= desired:
            seen.violation = None
            return
        if seen.violation == (healthy, desired):
            return
        seen.violation = (healthy, desired)
        labels = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        mine = [p for p in pods if all((meta(p).get("labels") or {}).get(k) == v for k, v in labels.items())]
        unhealthy = sorted(
            f"{meta(p)['name']} on {node_name(p)}"
            for p in mine
            if meta(p).get("deletionTimestamp") or not pod_ready(p)
        )
        self.pdb_violations.append(
            f"{time.monotonic():.3f} {key}: currentHealthy {healthy} < desiredHealthy {desired} "
            f"(expectedPods {expected}; not healthy: {', '.join(unhealthy) or 'none listed'})"
        )
