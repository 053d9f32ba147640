"""The `proxmox` provider block of bpg/proxmox (a subset of its arguments).

Credentials are deliberately not arguments here: the provider reads
PROXMOX_VE_API_TOKEN (or PROXMOX_VE_USERNAME/PASSWORD) from tofu's environment, which
keeps them out of cdk.tf.json and out of saved plan files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cdktf
from constructs import Construct

from constructs_lib.bindings.proxmox._base import GENERATOR_METADATA, PROVIDER_SOURCE, attributes


@dataclass(frozen=True, kw_only=True)
class ProxmoxProviderSshNode:
    name: str
    address: str
    port: int | None = None


@dataclass(frozen=True, kw_only=True)
class ProxmoxProviderSsh:
    agent: bool | None = None
    agent_socket: str | None = None
    username: str | None = None
    node: Sequence[ProxmoxProviderSshNode] | None = None
    node_address_source: str | None = None


class ProxmoxProvider(cdktf.TerraformProvider):
    TF_RESOURCE_TYPE = "proxmox"

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        alias: str | None = None,
        endpoint: str | None = None,
        insecure: bool | None = None,
        min_tls: str | None = None,
        random_vm_ids: bool | None = None,
        ssh: ProxmoxProviderSsh | None = None,
        tmp_dir: str | None = None,
    ) -> None:
        super().__init__(
            scope,
            id_,
            terraform_resource_type=self.TF_RESOURCE_TYPE,
            terraform_generator_metadata=GENERATOR_METADATA,
            terraform_provider_source=PROVIDER_SOURCE,
        )
        if alias is not None:
            self.alias = alias  # cdktf writes it into the block itself
        self._attrs = attributes(
            endpoint=endpoint,
            insecure=insecure,
            min_tls=min_tls,
            random_vm_ids=random_vm_ids,
            ssh=ssh,
            tmp_dir=tmp_dir,
        )

    def _synthesize_attributes(self) -> dict[str, Any]:
        return self._attrs
