"""The bpg/proxmox provider, configured without credentials (see bindings/provider.py)."""

from __future__ import annotations

from constructs import Construct

from config import ProxmoxSpec
from constructs_lib.bindings.proxmox import ProxmoxProvider, ProxmoxProviderSsh


class Proxmox(Construct):
    def __init__(self, scope: Construct, id_: str, spec: ProxmoxSpec) -> None:
        super().__init__(scope, id_)
        self.provider = ProxmoxProvider(
            self,
            "proxmox",
            endpoint=spec.endpoint,
            insecure=spec.insecure,
            # As the template layout: SSH is only used by operations this stack does not
            # perform (disk imports), and then through the operator's SSH agent.
            ssh=ProxmoxProviderSsh(agent=True),
        )
