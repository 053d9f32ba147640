"""A real Kubernetes control plane on loopback, and simulated kubelets that follow fakepve.

    roles = {"cp-0": "controller", "w-0": "worker", "w-1": "worker"}   # VM names in fakepve
    with KubeControlPlane(tmp / "kube") as cp, SimulatedKubelets(cp, pve, roles) as kubelets:
        kubelets.deploy("web", 3)    # a ReplicaSet + a PodDisruptionBudget, its pods Ready
        ... the code under test reads cp.kubeconfig (an admin kubeconfig as Talos writes one) ...
        kubelets.wait(lambda: ..., timeout=10)

The modules, each with what it is:

- control_plane: etcd, kube-apiserver, kube-controller-manager (ReplicaSet, DaemonSet,
  disruption, garbage-collector and node-lifecycle controllers) and kube-scheduler as
  child processes (process), with their certificates (certificates, on devenv.pki) and
  kubeconfigs (kubeconfig); admin requests through client.
- kubelets: one simulated kubelet per VM, the one part no binary here plays: Nodes that
  follow fakepve's power state (node_boots), bound pods Running and Ready, mirror pods.
- workloads: the ReplicaSet, PodDisruptionBudget and DaemonSet a drain meets.
- budgets: every eviction and every moment a budget was not met, as the API tells them.
"""

from devenv.kube.control_plane import KubeControlPlane
from devenv.kube.errors import KubeError
from devenv.kube.kubelets import SimulatedKubelets

__all__ = ["KubeControlPlane", "KubeError", "SimulatedKubelets"]
