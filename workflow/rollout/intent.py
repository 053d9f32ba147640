"""Does a targeted plan still do what the reviewed plan said? (refuse when not)

A rolling apply cannot apply the saved plan file piece by piece: it plans each step again
with `-target` and applies that. Each step's plan must be part of the reviewed one: every
resource it changes must be changed there too, with the same actions and the same values
after the change. A resource the reviewed plan changed that the step plans as no-op was
already applied (an earlier, interrupted run): nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

UNKNOWN = "(known after apply)"


def changes(plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """address -> {actions, values: path -> value after the change} of every managed
    resource the plan changes (moves included)."""
    out: dict[str, dict[str, Any]] = {}
    for rc in plan.get("resource_changes") or []:
        if rc.get("mode") != "managed":
            continue
        change = rc["change"]
        actions = list(change["actions"])
        if actions in (["no-op"], ["read"]) and not rc.get("previous_address"):
            continue
        out[rc["address"]] = {
            "actions": actions,
            "moved_from": rc.get("previous_address"),
            "values": changed_values(change),
        }
    return out


def output_changes(plan: Mapping[str, Any]) -> list[str]:
    """Names of the root outputs the plan changes."""
    outputs = plan.get("output_changes") or {}
    return sorted(name for name, c in outputs.items() if list(c.get("actions") or []) != ["no-op"])


def changed_values(change: Mapping[str, Any]) -> dict[str, Any]:
    """path -> value after the change, for every leaf that differs from before."""
    before = dict(_leaves(change.get("before")))
    after = dict(_leaves(change.get("after")))
    for path, _ in _leaves(change.get("after_unknown"), keep=lambda v: v is True):
        after[path] = UNKNOWN
    return {p: after.get(p) for p in sorted(set(before) | set(after)) if before.get(p) != after.get(p)}


def _leaves(value: Any, path: str = "", keep: Any = None) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key), keep)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]", keep)
    elif keep is None or keep(value):
        yield path, value


def differences(reviewed: Mapping[str, Any], step: Mapping[str, Any]) -> list[str]:
    """What the step plan would do that the reviewed plan did not say; empty when none."""
    wanted, planned = changes(reviewed), changes(step)
    out = []
    for address, change in sorted(planned.items()):
        expected = wanted.get(address)
        if expected is None:
            out.append(f"{address}: not changed in the reviewed plan, now {'+'.join(change['actions'])}")
            continue
        if change["actions"] != expected["actions"]:
            out.append(
                f"{address}: reviewed {'+'.join(expected['actions'])}, now {'+'.join(change['actions'])}"
            )
            continue
        for path in sorted(set(change["values"]) | set(expected["values"])):
            if change["values"].get(path) != expected["values"].get(path):
                out.append(
                    f"{address}: {path} reviewed {expected['values'].get(path)!r}, "
                    f"now {change['values'].get(path)!r}"
                )
                break
    return out
