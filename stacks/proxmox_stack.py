"""The whole stack: state backend, provider, Talos ISOs, one VM per node, and outputs."""

from __future__ import annotations

from pathlib import Path

import cdktf
from constructs import Construct

from config import InfraConfig
from constructs_lib.proxmox_provider import Proxmox
from constructs_lib.state_backend import StateBackend
from constructs_lib.talos_iso import TalosIso
from constructs_lib.talos_vm import TalosVm
from stacks.summary import cluster_summary, next_steps

REQUIRED_VERSION = "~> 1.11.0"


class ProxmoxStack(cdktf.TerraformStack):
    def __init__(self, scope: Construct, config: InfraConfig, stack_dir: Path) -> None:
        super().__init__(scope, config.backend.state_name)
        self.config = config
        self.add_override("terraform.required_version", REQUIRED_VERSION)
        StateBackend(self, "state", config.backend, stack_dir)
        self.isos: list[TalosIso] = []
        self.vms: list[TalosVm] = []
        if config.proxmox is None:
            return  # infrastructure disabled: backend only, as the template layout
        Proxmox(self, "provider", config.proxmox)
        isos = Construct(self, "isos")
        by_key = {}
        for spec in config.isos:
            by_key[spec.key] = TalosIso(isos, spec.logical_id, spec, config.proxmox)
        self.isos = list(by_key.values())
        for vm in config.vms:
            self.vms.append(
                TalosVm(
                    self,
                    vm=vm,
                    proxmox=config.proxmox,
                    advanced=config.advanced,
                    vlan_id=config.vlan_id,
                    iso=by_key[vm.iso.key],
                    all_isos=self.isos,
                )
            )
        self._moved_from_template_layout()
        self._outputs()

    def prepare_stack(self) -> None:
        """cdktf's preparing pass, only when the app has another stack. Before
        synthesizing, cdktf renders every element of every stack once to find references
        between stacks (for which it adds outputs and remote-state data sources) and adds
        a local backend to a stack without one. Alone in its app with its own backend,
        this stack gains nothing from it, yet it costs a jsii callback per resource and a
        second resolution of the whole tree in node. tests/test_synth_calls.py checks the
        bytes against cdktf's pass, with one stack and with a second one referring to it."""
        if self._has_other_stacks():
            cdktf.TerraformStack.prepare_stack(self)

    def _has_other_stacks(self) -> bool:
        app = self.node.scope
        siblings = app.node.children if app is not None else []
        return sum(isinstance(c, cdktf.TerraformStack) for c in siblings) > 1

    def _moved_from_template_layout(self) -> None:
        """State written by the Jinja templates used for_each addresses (and the long,
        deprecated download-file type): move it, so the first plan destroys nothing."""
        moves = [{"from": i.template_address, "to": i.address} for i in self.isos if not i.spec.other_host]
        moves += [{"from": v.template_address, "to": v.address} for v in self.vms]
        self.add_override("moved", moves)

    def _outputs(self) -> None:
        config = self.config
        outputs = {
            # Built here: asking cdktf for a token would cost a jsii round trip per VM.
            "node_vm_ids": {v.spec.name: v.reference("vm_id") for v in self.vms},
            "node_addresses": {v.spec.name: v.spec.address for v in self.vms},
            "controller_nodes": [v.name for v in config.controllers],
            "worker_nodes": [v.name for v in config.workers],
            "talos_iso_files": {i.spec.key: {"id": i.file_id, "file_name": i.file_name} for i in self.isos},
            "talos_version": config.cluster.talos_version,
            "cluster_summary": cluster_summary(config),
            "next_steps": next_steps(config),
        }
        if config.multi_host:
            # Only with several hosts: a single-host stack stays byte-identical to before.
            outputs["node_hosts"] = {v.spec.name: v.spec.host for v in self.vms}
        for name, value in outputs.items():
            cdktf.TerraformOutput(self, name, value=value)
