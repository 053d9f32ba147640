"""The Kubernetes cluster on the VMs, seen through the operator's kubeconfig: finding and
loading it (kubeconfig), the few API calls a rollout needs (api), and draining a node the
way `kubectl drain` does (drain)."""
