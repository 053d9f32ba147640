"""The cdktf CLI as cdktf users run it, against fakepve and the tfstate server with the
real tofu and provider: `npx cdktf diff`, `deploy`, `output`, `destroy`. The only setup is
what scripts/setup-tools exports (tofu on PATH, the provider mirror, and
TERRAFORM_BINARY_NAME=tofu); the credentials are only in the environment."""

from __future__ import annotations

import json

import pytest

from devenv.fakepve import FakePveServer
from devenv.workspace import example_nodes
from e2e.conftest import WorkspaceFactory

pytestmark = pytest.mark.e2e


def vm_names(pve: FakePveServer) -> list[str]:
    return sorted(pve.call(lambda p: [vm.name for vm in p.vms]))


def test_diff_deploy_output_destroy(make_workspace: WorkspaceFactory, server: FakePveServer) -> None:
    ws = make_workspace(server).write()
    assert ws.tools.env.get("TERRAFORM_BINARY_NAME") == "tofu", "setup-tools no longer exports it"
    names = sorted(n["name"] for n in example_nodes())

    diff = ws.cdktf("diff")
    assert "OpenTofu" in diff.output, diff.output[-3000:]  # tofu ran, not terraform
    assert "8 to add, 0 to change, 0 to destroy" in diff.output, diff.output[-3000:]
    assert vm_names(server) == []

    deploy = ws.cdktf("deploy", "--auto-approve")
    assert "Apply complete! Resources: 8 added, 0 changed, 0 destroyed." in deploy.output, deploy.output[
        -3000:
    ]
    assert vm_names(server) == names
    assert ws.state_list()  # the state is in the tfstate server, where tofu finds it too

    outputs_file = ws.root / "outputs.json"
    ws.cdktf("output", "--outputs-file", str(outputs_file), "--outputs-file-include-sensitive-outputs")
    outputs = json.loads(outputs_file.read_text())[ws.state_name]  # the stack is named after the state
    assert sorted(outputs["node_vm_ids"]) == names
    assert sorted(outputs["controller_nodes"] + outputs["worker_nodes"]) == names

    again = ws.cdktf("diff")
    assert "No changes." in again.output, again.output[-3000:]

    destroy = ws.cdktf("destroy", "--auto-approve")
    assert "Destroy complete! Resources: 8 destroyed." in destroy.output, destroy.output[-3000:]
    assert vm_names(server) == []

    # Credentials never reached a file (cdktf.out, plans, outputs, logs); the command
    # lines were checked by the workspace before each run.
    assert ws.files_containing(ws.secrets()) == []
