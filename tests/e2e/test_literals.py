"""Every string the app writes is a literal for tofu: `${...}` and `%{...}` in a value that
got past validation reach the provider byte for byte (real `tofu plan`, `tofu show -json`)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from config import OWNER_TAG, ConfigPaths, load_config
from constructs_lib.bindings.proxmox._base import to_terraform
from devenv.fakepve import FakePveServer
from e2e.conftest import WorkspaceFactory

pytestmark = pytest.mark.e2e

# Template syntax of every kind, an escape already written, and a token look-alike.
TAGS = ["a${var.x}b", "%{ if true }c%{ endif }", "$${kept}", "%%{kept}", "${path.module}"]
NODE = "pve1%{ for x in [1] }${x}%{ endfor }"


def test_template_syntax_reaches_the_provider_literally(
    make_workspace: WorkspaceFactory, pve: FakePveServer
) -> None:
    ws = make_workspace(pve)
    ws.write(nodes=[_one_node()])
    config = load_config(ConfigPaths(ws.cluster_path, ws.nodes_path)).config
    # Past validation on purpose (its patterns reject all of these): the bindings must
    # still write them as text, whatever a future field lets through.
    assert config.proxmox is not None
    proxmox = dataclasses.replace(config.proxmox, node=NODE)
    advanced = config.advanced.model_copy(update={"tags": TAGS})
    # The host of every VM and ISO (one host here, so no ISO address names it).
    isos = tuple(dataclasses.replace(iso, host=NODE) for iso in config.isos)
    vms = tuple(dataclasses.replace(vm, host=NODE, iso=isos[0]) for vm in config.vms)
    # (A node name is also part of resource addresses: only its pattern can guard it.)
    config = dataclasses.replace(config, proxmox=proxmox, advanced=advanced, isos=isos, vms=vms)

    from main import synthesize

    out = synthesize(config, str(ws.outdir))
    assert "$${" in out.read_text() and "%%{" in out.read_text()
    ws.init()
    plan = ws.plan()
    vm = next(c for c in plan.changes if c["type"] == "proxmox_virtual_environment_vm")
    after = vm["change"]["after"]
    assert after["node_name"] == NODE
    assert sorted(after["tags"]) == sorted([*TAGS, "controller", OWNER_TAG])
    iso = next(c for c in plan.changes if c["type"] == "proxmox_download_file")
    assert iso["change"]["after"]["node_name"] == NODE
    assert json.dumps(after).count("${") >= 2  # the literal survived, not an evaluated value


def test_a_cdktf_token_look_alike_is_refused_not_resolved() -> None:
    # cdktf would replace it by a reference even inside `$${`: refused, never rewritten.
    with pytest.raises(ValueError, match="looks like a cdktf token"):
        to_terraform(["ok", "d${TfToken[TOKEN.1]}"])
    assert to_terraform("${TfToken[TOKEN.7]}") == "${TfToken[TOKEN.7]}"  # a real reference


def _one_node() -> dict[str, object]:
    from devenv.workspace import example_nodes

    return example_nodes()[0]
