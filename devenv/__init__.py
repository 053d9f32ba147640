"""A local development environment on loopback: fakepve, tofu and the bpg provider.

Shared by the end-to-end tests (tests/e2e) and by scripts that demonstrate the app
without a real Proxmox VE: nothing here is shipped or used by the app itself.

- (tools: `workflow.setup_tools.ensure_tools`, the one way, shared with the product.)
- `devenv.fakepve`: a fake Proxmox VE API (PyPI fakepve) on 127.0.0.1 with an API token.
- `devenv.workspace`: write cluster.yaml/nodes.yaml for a fakepve, synthesize, run tofu.
"""
