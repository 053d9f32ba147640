"""Every synthesized stack conforms to the bpg provider's own schema.

The schemas come from `tofu providers schema -json` of the real provider, kept in
tests/fixtures/provider_schema.json (regenerate: scripts/update-provider-schema), so
this runs without tofu or the provider. The stacks checked are the JSON snapshots
(tests/__snapshots__/test_snapshots/*.json, which test_snapshots.py keeps equal to what
synthesis writes) and the bundled example, synthesized here.

The rules are those of tofu's JSON syntax, plus the bindings' convention:
- only attributes and blocks the provider has (and tofu's meta-arguments);
- no required attribute left out, no read-only (computed-only) attribute set;
- values of the attribute's type; an object-typed value needs every key (tofu reads
  list-of-object attributes such as the VM's `network_device` as values in JSON);
- a block with at most one instance written as an object, a repeating block as a list,
  within the schema's min/max items.
Strings holding a `${...}` reference are not typed here: tofu checks them at plan time.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import EXAMPLES, ConfigDir

FIXTURE = Path(__file__).parent / "fixtures" / "provider_schema.json"
SNAPSHOTS = sorted((Path(__file__).parent / "__snapshots__" / "test_snapshots").glob("*.json"))
META_ARGUMENTS = {
    "//",
    "count",
    "for_each",
    "depends_on",
    "lifecycle",
    "provider",
    "provisioner",
    "connection",
}
PROVIDER_META = {"//", "alias"}


def load_schema() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def type_errors(value: Any, ty: Any, where: str) -> list[str]:
    """Problems of a JSON value against a cty type from the schema (JSON form)."""
    if value is None or is_reference(value):
        return []
    if ty == "string":
        ok = isinstance(value, str)
    elif ty == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif ty == "bool":
        ok = isinstance(value, bool)
    elif ty == "dynamic":
        ok = True
    elif isinstance(ty, list) and ty[0] in ("list", "set"):
        if not isinstance(value, list):
            return [f"{where}: expected a {ty[0]}, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in type_errors(v, ty[1], f"{where}[{i}]")]
    elif isinstance(ty, list) and ty[0] == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in type_errors(v, ty[1], f"{where}.{k}")]
    elif isinstance(ty, list) and ty[0] == "object":
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        fields: dict[str, Any] = ty[1]
        errors = [f"{where}: unknown key {k!r}" for k in value if k not in fields]
        errors += [
            f"{where}: key {k!r} missing (JSON needs every key of an object; null if unset)"
            for k in fields
            if k not in value
        ]
        return errors + [
            e for k, v in value.items() if k in fields for e in type_errors(v, fields[k], f"{where}.{k}")
        ]
    else:
        return [f"{where}: the checker does not know type {ty!r}"]
    return [] if ok else [f"{where}: expected {ty}, got {type(value).__name__} {value!r}"]


def body_errors(body: Any, block: dict[str, Any], where: str, meta: set[str] = frozenset()) -> list[str]:
    """Problems of a resource/provider body or a nested block body against a schema block."""
    if not isinstance(body, dict):
        return [f"{where}: expected an object, got {type(body).__name__}"]
    attributes: dict[str, Any] = block.get("attributes", {})
    blocks: dict[str, Any] = block.get("block_types", {})
    errors: list[str] = []
    for key, value in body.items():
        if key in meta:
            continue
        if key in attributes:
            attr = attributes[key]
            if attr.get("computed") and not attr.get("optional") and not attr.get("required"):
                errors.append(f"{where}.{key}: read-only attribute set")
            errors += type_errors(value, attr.get("type", "dynamic"), f"{where}.{key}")
        elif key in blocks:
            errors += nested_errors(value, blocks[key], f"{where}.{key}")
        else:
            errors.append(f"{where}.{key}: the provider has no attribute or block {key!r}")
    for key, attr in attributes.items():
        if attr.get("required") and body.get(key) is None:
            errors.append(f"{where}.{key}: required attribute missing")
    return errors


def nested_errors(value: Any, nested: dict[str, Any], where: str) -> list[str]:
    mode = nested["nesting_mode"]
    single = mode in ("single", "group") or nested.get("max_items") == 1
    if single:
        if not isinstance(value, dict):
            return [f"{where}: a single block (at most one) must be an object, got {type(value).__name__}"]
        return body_errors(value, nested["block"], where)
    if mode == "map":
        if not isinstance(value, dict):
            return [f"{where}: a map of blocks must be an object"]
        return [e for k, v in value.items() for e in body_errors(v, nested["block"], f"{where}.{k}")]
    if not isinstance(value, list):
        return [f"{where}: a repeating block ({mode}) must be a list, got {type(value).__name__}"]
    errors = []
    if len(value) > nested.get("max_items", len(value)) or len(value) < nested.get("min_items", 0):
        errors.append(
            f"{where}: {len(value)} blocks, the schema allows "
            f"{nested.get('min_items', 0)}..{nested.get('max_items', 'any')}"
        )
    return errors + [e for i, v in enumerate(value) for e in body_errors(v, nested["block"], f"{where}[{i}]")]


def stack_errors(stack: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every conformance problem of a synthesized stack (cdk.tf.json)."""
    errors: list[str] = []
    for name, configs in stack.get("provider", {}).items():
        if name != "proxmox":
            errors.append(f"provider.{name}: no schema for this provider")
            continue
        for i, config in enumerate(configs if isinstance(configs, list) else [configs]):
            errors += body_errors(config, schema["provider_block"], f"provider.proxmox[{i}]", PROVIDER_META)
    for rtype, instances in stack.get("resource", {}).items():
        if rtype not in schema["resource_schemas"]:
            errors.append(f"resource.{rtype}: no schema kept for this type (scripts/update-provider-schema)")
            continue
        for rname, body in instances.items():
            errors += body_errors(body, schema["resource_schemas"][rtype], f"{rtype}.{rname}", META_ARGUMENTS)
    return errors


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return load_schema()


def test_fixture_matches_the_pinned_provider(schema: dict[str, Any]) -> None:
    from constructs_lib.bindings.proxmox._base import PROVIDER_VERSION

    assert schema["provider"] == "bpg/proxmox"
    assert f"~> {schema['provider_version']}" == PROVIDER_VERSION, (
        "the stack pins another provider version than the schema fixture: run scripts/update-provider-schema"
    )
    assert set(schema["resource_schemas"]) == {"proxmox_virtual_environment_vm", "proxmox_download_file"}


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=[p.stem for p in SNAPSHOTS])
def test_snapshot_stack_conforms(snapshot: Path, schema: dict[str, Any]) -> None:
    assert stack_errors(json.loads(snapshot.read_text()), schema) == []


def test_snapshots_exist() -> None:
    assert len(SNAPSHOTS) >= 4, "the conformance test walks the snapshot stacks; none found"


def test_example_stack_conforms(tmp_path: Path, schema: dict[str, Any]) -> None:
    d = ConfigDir(tmp_path)
    d.write(EXAMPLES.joinpath("cluster.yaml").read_text(), EXAMPLES.joinpath("nodes.yaml").read_text())
    stack = d.synth()
    assert "proxmox_virtual_environment_vm" in stack["resource"]
    assert stack_errors(stack, schema) == []


# --- the checker itself: each kind of mistake is caught ------------------------------


def example_snapshot() -> dict[str, Any]:
    return json.loads(next(p for p in SNAPSHOTS if p.stem == "test_example_cluster").read_text())


def first_vm(stack: dict[str, Any]) -> dict[str, Any]:
    return next(iter(stack["resource"]["proxmox_virtual_environment_vm"].values()))


def mutate(change: Any) -> list[str]:
    stack = copy.deepcopy(example_snapshot())
    change(stack)
    return stack_errors(stack, load_schema())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda s: first_vm(s).update(cpus=4), "no attribute or block 'cpus'", id="unknown-attribute"
        ),
        pytest.param(
            lambda s: first_vm(s)["cpu"].update(core=4),
            "no attribute or block 'core'",
            id="unknown-nested-attribute",
        ),
        pytest.param(
            lambda s: first_vm(s).update(timeouts={"create": "5m"}),
            "no attribute or block 'timeouts'",
            id="unknown-block",
        ),
        pytest.param(
            lambda s: first_vm(s).update(cpu=[first_vm(s)["cpu"]]), "single block", id="single-block-as-list"
        ),
        pytest.param(
            lambda s: first_vm(s).update(disk=first_vm(s)["disk"][0]),
            "repeating block",
            id="repeating-block-as-object",
        ),
        pytest.param(
            lambda s: first_vm(s)["cpu"].update(cores="4"), "expected number", id="string-for-number"
        ),
        pytest.param(lambda s: first_vm(s).update(on_boot="yes"), "expected bool", id="string-for-bool"),
        pytest.param(lambda s: first_vm(s).update(tags="talos"), "expected a list", id="string-for-list"),
        pytest.param(
            lambda s: first_vm(s)["network_device"][0].pop("trunks"),
            "key 'trunks' missing",
            id="object-attribute-missing-key",
        ),
        pytest.param(
            lambda s: first_vm(s)["network_device"][0].update(vlan="7"),
            "unknown key 'vlan'",
            id="object-attribute-unknown-key",
        ),
        pytest.param(
            lambda s: first_vm(s).pop("node_name"), "required attribute missing", id="required-missing"
        ),
        pytest.param(
            lambda s: first_vm(s).update(ipv4_addresses=[]), "read-only attribute set", id="read-only"
        ),
        pytest.param(
            lambda s: s["provider"]["proxmox"][0].update(endpoint=8006), "expected string", id="provider-type"
        ),
        pytest.param(
            lambda s: s["provider"]["proxmox"][0]["ssh"].update(agnet=True),
            "no attribute or block",
            id="provider-ssh-typo",
        ),
        pytest.param(
            lambda s: s["resource"].update(proxmox_vm={"x": {}}), "no schema kept", id="unknown-type"
        ),
    ],
)
def test_checker_catches(change: Any, expected: str) -> None:
    errors = mutate(change)
    assert any(expected in e for e in errors), errors


def test_checker_accepts_references_and_nulls() -> None:
    def change(stack: dict[str, Any]) -> None:
        first_vm(stack)["cpu"]["cores"] = "${var.cores}"
        first_vm(stack)["description"] = None

    assert mutate(change) == []
