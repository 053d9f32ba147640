"""Simulated kubelets: what no binary here can do, as no VM of fakepve runs a kubelet.

One background thread plays a kubelet per VM name (devenv/kube/node_boots.py says when
each is Ready and under which boot):

- registers its Node (controllers labelled and tainted `node-role.kubernetes.io/control-plane`,
  as Talos registers them) and writes only the Node's *status*: Ready with a fresh
  heartbeat and the boot's `status.nodeInfo.bootID` while the VM runs, Ready=Unknown as
  soon as it stops or disappears. The taints that follow the Ready condition and a cordon
  are the node lifecycle controller's (kube-controller-manager), and a cordon
  (`spec.unschedulable`) survives a reboot.
- runs the pods the scheduler bound to its node: Running at once, Ready `ready_delay`
  seconds after it first saw the pod on its Ready node (Ready again at once after a
  reboot), NotReady while its node is not Ready; a pod with a `deletionTimestamp` is
  deleted (grace 0) once its grace period has passed and only while its node is Ready, as
  a kubelet that is down deletes nothing.
- creates a mirror pod per controller once asked (`add_mirror_pods`), as a kubelet does
  for its static pods.

The ReplicaSet, DaemonSet, disruption and garbage-collector controllers are
kube-controller-manager's, placement is kube-scheduler's (devenv/kube/control_plane.py).
Every eviction and every moment a budget was not met is recorded
(devenv/kube/budgets.py: `evictions`, `pdb_violations`).
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from devenv.kube import workloads
from devenv.kube.budgets import BudgetWatch
from devenv.kube.client import REQUEST_TIMEOUT
from devenv.kube.control_plane import KUBERNETES_VERSION, KubeControlPlane
from devenv.kube.errors import KubeError
from devenv.kube.node_boots import NodeBoot, NodeBoots
from devenv.kube.objects import (
    CONTROL_PLANE_LABEL,
    MIRROR_ANNOTATION,
    condition,
    meta,
    node_name,
    pod_key,
    rfc3339,
)
from devenv.kube.workloads import create, list_pods, ok

if TYPE_CHECKING:
    from devenv.fakepve import FakePveServer

CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
HEARTBEAT_SECS = 5.0  # a Ready node's lastHeartbeatTime is never older than this (plus a poll)


@dataclass
class _Reported:
    """What a kubelet last wrote to its Node."""

    state: tuple[bool, str] | None = None  # (ready, bootID)
    transition: str = ""  # lastTransitionTime of the Ready condition
    heartbeat: str = ""
    heartbeat_at: float = 0.0


@dataclass
class _Tick:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # API Nodes by name
    pods: list[dict[str, Any]] = field(default_factory=list)


class SimulatedKubelets:
    """Nodes and pods kept in step with fakepve (see the module docstring). A context
    manager: one background thread, stopped on exit; every loop is bounded.
    roles: VM name -> "controller" | "worker"."""

    def __init__(
        self,
        api: KubeControlPlane,
        pve: FakePveServer,
        roles: dict[str, str],
        *,
        ready_delay: float = 1.0,
        poll: float = 0.1,
    ) -> None:
        for name, role in roles.items():
            if role not in ("controller", "worker"):
                raise ValueError(f"roles[{name!r}] is {role!r}: expected 'controller' or 'worker'")
        self.api = api
        self.pve = pve
        self.roles = dict(roles)
        self.ready_delay = ready_delay
        self.poll = poll
        self.budgets = BudgetWatch()
        self.evictions = self.budgets.evictions
        self.pdb_violations = self.budgets.pdb_violations
        self._boots = NodeBoots(pve, roles, ready_delay)
        self._reported = {name: _Reported() for name in roles}
        self._events: queue.SimpleQueue[tuple[float, str, str]] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._listening = False
        self._mirror_pods = False
        self._pod_ready_at: dict[str, float] = {}  # pod uid -> when it is Ready on a Ready node
        self._deleting_since: dict[str, float] = {}  # pod uid -> when its deletionTimestamp was seen

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> SimulatedKubelets:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self._check()

    def start(self) -> None:
        try:
            self.pve.call(lambda p: p.power_listeners.append(self._on_power), timeout=10)
            self._listening = True
            with self._lock:
                self._boots.resync(initial=True)
                self._tick()
            self._thread = threading.Thread(target=self._run, name="simulated-kubelets", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(REQUEST_TIMEOUT + 10)
        if self._listening:
            self._listening = False
            with contextlib.suppress(Exception):  # the fake already stopped: it calls nobody
                self.pve.call(lambda p: p.power_listeners.remove(self._on_power), timeout=5)

    def _on_power(self, name: str, status: str) -> None:
        """fakepve's listener, on its asyncio loop: queue only, never block."""
        self._events.put((time.monotonic(), name, status))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    event: tuple[float, str, str] | None = self._events.get(timeout=self.poll)
                except queue.Empty:
                    event = None
                with self._lock:
                    while event is not None:
                        self._boots.power(*event)
                        try:
                            event = self._events.get_nowait()
                        except queue.Empty:
                            event = None
                    if time.monotonic() >= self._boots.next_resync:
                        self._boots.resync()
                    self._tick()
        except BaseException as exc:
            self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"the simulated kubelets stopped: {self._error!r}") from self._error

    # ------------------------------------------------------------------ public helpers

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str = "") -> None:
        """Poll predicate() until it is true; AssertionError after timeout seconds (or at
        once when the background thread failed)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            if predicate():
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"not true within {timeout} s: {what or predicate}")
            time.sleep(min(0.05, self.poll))

    def boot_ids(self) -> dict[str, str]:
        """VM name -> the bootID its Node reports now (nodes that have reported one)."""
        with self._lock:
            return {n.name: n.boot_id for n in self._boots.present() if n.boot_id}

    def rejoin(self, name: str) -> None:
        """What `task talos:apply-node` does for a replaced VM: its Talos config installed,
        it boots into the cluster and its Node turns Ready (a new bootID) after ready_delay."""
        with self._lock:
            self._boots.rejoin(name)

    def set_missing(self, node: str) -> None:
        """Delete that Node and never register it again (a VM without its Node)."""
        with self._lock:
            self._boots.missing.add(node)
            status, body = self.api.request("DELETE", f"/api/v1/nodes/{quote(node)}")
            if status not in (200, 404):
                raise KubeError(f"deleting Node {node}: {status} {body}")

    def deploy(
        self, name: str, replicas: int, *, namespace: str = "default", max_unavailable: int = 1
    ) -> None:
        """A ReplicaSet with a policy/v1 PodDisruptionBudget (maxUnavailable) selecting its
        pods (devenv/kube/workloads.py); returns once all are Ready and the budget's status
        says so."""
        self.wait_schedulable()
        workloads.deploy(self.api, self.wait, name, replicas, namespace, max_unavailable)

    def add_daemonset_pods(self, name: str = "node-exporter", namespace: str = "kube-system") -> None:
        """A DaemonSet (a drain must leave its pods); returns once every Ready worker has a
        pod of it."""

        def workers() -> set[str]:
            with self._lock:
                return {
                    n.name for n in self._boots.present() if n.role == "worker" and self._boots.ready(n.name)
                }

        self.wait_schedulable()
        workloads.add_daemonset(self.api, self.wait, name, namespace, workers)

    def wait_schedulable(self, timeout: float = workloads.SETTLE_TIMEOUT) -> None:
        """Until the node lifecycle controller took the not-ready and unreachable taints off
        every Ready Node (a registration adds not-ready): pods created before would all go
        to the first Node it untainted."""

        def settled() -> bool:
            with self._lock:
                ready = {n.name for n in self._boots.present() if self._boots.ready(n.name)}
            status, listed = self.api.request("GET", "/api/v1/nodes")
            if status != 200:
                return False
            tainted = {
                meta(n)["name"]
                for n in listed.get("items") or []
                if any(t.get("key") in CONDITION_TAINTS for t in (n.get("spec") or {}).get("taints") or [])
            }
            return not ready & tainted

        self.wait(settled, timeout, "no not-ready or unreachable taint on a Ready Node")

    def add_mirror_pods(self) -> None:
        """A mirror pod (annotation kubernetes.io/config.mirror) per controller:
        kube-system/kube-apiserver-<node>; returns once they exist."""
        with self._lock:
            self._mirror_pods = True
            wanted = {f"kube-apiserver-{n.name}" for n in self._boots.present() if n.role == "controller"}
        self.wait(
            lambda: {meta(p)["name"] for p in list_pods(self.api, "kube-system")} >= wanted,
            10,
            "a mirror pod per controller",
        )

    # ------------------------------------------------------------------ the loop

    def _tick(self) -> None:
        tick = _Tick()
        self._sync_nodes(tick)
        tick.pods = list_pods(self.api)
        self._finish_deletions(tick)
        self._create_mirror_pods(tick)
        self._sync_pod_status(tick)
        path = "/apis/policy/v1/poddisruptionbudgets"
        pdbs = ok(f"GET {path}", self.api.request("GET", path), 200).get("items") or []
        self.budgets.observe(pdbs, tick.pods)

    def _sync_nodes(self, tick: _Tick) -> None:
        listed = ok("GET /api/v1/nodes", self.api.request("GET", "/api/v1/nodes"), 200)
        tick.nodes = {meta(n)["name"]: n for n in listed.get("items") or []}
        now = time.monotonic()
        for node in self._boots.present():
            reported = self._reported[node.name]
            if node.name not in tick.nodes:
                tick.nodes[node.name] = self._register(node)
                reported.state = None
            ready = self._boots.ready(node.name, now)
            boot_id = node.take_boot_id() if ready else node.boot_id
            wanted = (ready, boot_id)
            if wanted == reported.state and not (ready and now - reported.heartbeat_at >= HEARTBEAT_SECS):
                continue
            if reported.state is None or ready != reported.state[0] or not reported.transition:
                reported.transition = rfc3339()
            if ready:
                reported.heartbeat, reported.heartbeat_at = rfc3339(), now
            answer = self.api.request(
                "PATCH",
                f"/api/v1/nodes/{quote(node.name)}/status",
                {"status": self._node_status(node, ready, reported)},
                content_type="application/merge-patch+json",
            )
            if answer[0] == 404:  # deleted meanwhile: registered again next time
                tick.nodes.pop(node.name, None)
                reported.state = None
                continue
            tick.nodes[node.name] = ok(f"Node {node.name} status", answer, 200)
            reported.state = wanted

    def _register(self, node: NodeBoot) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        spec: dict[str, Any] = {}
        if node.role == "controller":
            labels[CONTROL_PLANE_LABEL] = ""
            spec["taints"] = [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]
        path = "/api/v1/nodes"
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels},
            "spec": spec,
        }
        answer = self.api.request("POST", path, body)
        if answer[0] == 409:  # registered by an earlier harness on this API: take it over
            return ok(f"Node {node.name}", self.api.request("GET", f"{path}/{quote(node.name)}"), 200)
        return ok(f"registering Node {node.name}", answer, 201)

    @staticmethod
    def _node_status(node: NodeBoot, ready: bool, reported: _Reported) -> dict[str, Any]:
        if ready:
            cond = {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        else:  # what the node controller writes once the kubelet stops posting
            cond = {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
            }
        cond["lastTransitionTime"] = reported.transition
        cond["lastHeartbeatTime"] = reported.heartbeat or reported.transition
        resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        return {
            "conditions": [cond],
            "addresses": [{"type": "Hostname", "address": node.name}],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, node.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, node.name)),
                "bootID": node.boot_id,
                "kernelVersion": "6.12.57-talos",
                "osImage": "Talos (v1.11.5)",
                "containerRuntimeVersion": "containerd://2.1.5",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _ours(self, pod: dict[str, Any]) -> bool:
        """Bound to a node these kubelets run."""
        node = node_name(pod)
        return node in self._boots.nodes and node not in self._boots.missing

    def _finish_deletions(self, tick: _Tick) -> None:
        now = time.monotonic()
        remaining = []
        for pod in tick.pods:
            pmeta = meta(pod)
            if not pmeta.get("deletionTimestamp") or not self._ours(pod):
                remaining.append(pod)
                continue
            uid = pmeta["uid"]
            self.budgets.record_eviction(pod, pod_key(pod), node_name(pod))
            since = self._deleting_since.setdefault(uid, now)
            grace = pmeta.get("deletionGracePeriodSeconds") or 0
            if not self._boots.ready(node_name(pod), now) or now < since + grace:
                remaining.append(pod)
                continue
            answer = self.api.request(
                "DELETE",
                f"/api/v1/namespaces/{pmeta['namespace']}/pods/{quote(pmeta['name'])}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
            if answer[0] not in (200, 404, 409):
                ok(f"deleting pod {pod_key(pod)}", answer, 200)
            self._deleting_since.pop(uid, None)
            self._pod_ready_at.pop(uid, None)
        tick.pods = remaining

    def _create_mirror_pods(self, tick: _Tick) -> None:
        if not self._mirror_pods:
            return
        present = {pod_key(p) for p in tick.pods}
        for node in self._boots.present():
            if node.role != "controller" or node.name not in tick.nodes:
                continue
            if f"kube-system/kube-apiserver-{node.name}" not in present:
                tick.pods.append(self._create_mirror_pod(node.name, tick.nodes[node.name]))

    def _create_mirror_pod(self, node: str, node_obj: dict[str, Any]) -> dict[str, Any]:
        digest = secrets.token_hex(16)
        pod = create(
            self.api,
            "/api/v1/namespaces/kube-system/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"kube-apiserver-{node}",
                    "namespace": "kube-system",
                    "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                    "annotations": {
                        MIRROR_ANNOTATION: digest,
                        "kubernetes.io/config.hash": digest,
                        "kubernetes.io/config.source": "file",
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": node,
                            "uid": meta(node_obj).get("uid", ""),
                            "controller": True,
                        }
                    ],
                },
                "spec": {
                    **workloads.pod_spec(),
                    "nodeName": node,
                    "priorityClassName": "system-node-critical",
                },
            },
        )
        self._pod_ready_at[meta(pod)["uid"]] = time.monotonic()  # its static pod runs already
        return pod

    def _sync_pod_status(self, tick: _Tick) -> None:
        now = time.monotonic()
        for i, pod in enumerate(tick.pods):
            pmeta = meta(pod)
            if not self._ours(pod) or pmeta.get("deletionTimestamp"):
                continue
            node_ready = self._boots.ready(node_name(pod), now)
            running = (pod.get("status") or {}).get("phase") == "Running"
            if not running and not node_ready:
                continue  # Pending until its kubelet runs
            if node_ready:  # its containers start now, Ready ready_delay later
                self._pod_ready_at.setdefault(pmeta["uid"], now + self.ready_delay)
            ready = node_ready and now >= self._pod_ready_at.get(pmeta["uid"], now + 1)
            if running and (condition(pod, "Ready").get("status") == "True") == ready:
                continue
            flag = "True" if ready else "False"
            stamp = rfc3339()
            status = {
                "phase": "Running",
                "startTime": (pod.get("status") or {}).get("startTime") or stamp,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                    {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp},
                    {"type": "Ready", "status": flag, "lastTransitionTime": stamp},
                ],
            }
            answer = self.api.request(
                "PATCH",
                f"/api/v1/namespaces/{pmeta['namespace']}/pods/{quote(pmeta['name'])}/status",
                {"status": status},
                content_type="application/merge-patch+json",
            )
            if answer[0] == 404:
                continue
            tick.pods[i] = ok(f"pod {pod_key(pod)} status", answer, 200)
