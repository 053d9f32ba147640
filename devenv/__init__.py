"""A local development environment on loopback: fakepve, tofu and the bpg provider.

Shared by the tests, the benches and the demo, which show the app without a real
Proxmox VE: nothing here is shipped or used by the app itself (the tools come from the
product's own `workflow.setup_tools.ensure_tools`).

- `devenv.fakepve` (+ `fakepve_hosts`): a fake Proxmox VE API (PyPI fakepve) on
  127.0.0.1 with several hosts and a token holding the documented role.
- `devenv.workspace`: `TofuWorkspace`, cluster.yaml/nodes.yaml for a fakepve, synthesize,
  run tofu.
- `devenv.state_server`: this project's tfstate server on loopback (the one launcher).
- `devenv.kube`: a real Kubernetes control plane (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler) with simulated kubelets.
- `devenv.seaweedfs`, `devenv.serial_moto`: S3 servers for the state server's S3 store.
- `devenv.ports`: free ports; `devenv.scan`: secrets left in files.
"""
