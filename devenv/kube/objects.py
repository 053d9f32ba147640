"""Reading Kubernetes objects as the JSON the API returns (plain dicts)."""

from __future__ import annotations

import datetime as dt
from typing import Any

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def rfc3339(when: dt.datetime | None = None) -> str:
    """A timestamp in seconds, as the API server writes them."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


def pod_key(pod: dict[str, Any]) -> str:
    return f"{meta(pod).get('namespace')}/{meta(pod).get('name')}"


def node_name(pod: dict[str, Any]) -> str:
    """The node a pod is bound to ("" while the scheduler has not bound it)."""
    return str((pod.get("spec") or {}).get("nodeName") or "")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def pod_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and condition(pod, "Ready").get(
        "status"
    ) == "True"


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference marked controller, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None
