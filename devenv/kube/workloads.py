"""Workloads a drain meets, created through the API for the real controllers to run: a
ReplicaSet guarded by a PodDisruptionBudget, and a DaemonSet. The controller manager
creates their pods, the scheduler binds them, the simulated kubelets run them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from devenv.kube.errors import KubeError
from devenv.kube.objects import controller_of, meta, node_name

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
POD_GRACE_SECS = 1  # terminationGracePeriodSeconds of the pods made here
# Bounds of the waits below: the controllers' first sync after a fresh start (informers,
# the controllers' own service-account tokens) takes a few seconds on a loaded machine.
SETTLE_TIMEOUT = 30.0


class Api(Protocol):
    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, content_type: str = ...
    ) -> tuple[int, dict[str, Any]]: ...


Wait = Callable[[Callable[[], Any], float, str], None]


def ok(what: str, answer: tuple[int, dict[str, Any]], *allowed: int) -> dict[str, Any]:
    status, body = answer
    if status not in allowed:
        raise KubeError(f"{what}: HTTP {status}: {body.get('message') or body}")
    return body


def create(api: Api, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    return ok(f"POST {path}", api.request("POST", path, obj), 201)


def list_pods(api: Api, namespace: str | None = None) -> list[dict[str, Any]]:
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    return list(ok(f"GET {path}", api.request("GET", path), 200).get("items") or [])


def ensure_namespace(api: Api, namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    ok(f"namespace {namespace}", api.request("POST", "/api/v1/namespaces", body), 201, 409)


def pod_spec() -> dict[str, Any]:
    return {
        "containers": [{"name": "app", "image": PAUSE_IMAGE}],
        "terminationGracePeriodSeconds": POD_GRACE_SECS,
    }


def deploy(api: Api, wait: Wait, name: str, replicas: int, namespace: str, max_unavailable: int) -> None:
    """A ReplicaSet and a policy/v1 PodDisruptionBudget (maxUnavailable) selecting its
    pods; returns once the budget's status counts every replica healthy."""
    labels = {"app": name}
    ensure_namespace(api, namespace)
    create(
        api,
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
            },
        },
    )
    pdb_path = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
    create(
        api,
        pdb_path,
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": labels}},
        },
    )

    def healthy() -> bool:
        status, pdb = api.request("GET", f"{pdb_path}/{name}")
        st = pdb.get("status") or {}
        return (
            status == 200
            and st.get("observedGeneration") == meta(pdb).get("generation")
            and st.get("currentHealthy") == replicas
        )

    wait(healthy, SETTLE_TIMEOUT, f"{replicas} Ready pods of {namespace}/{name} in its PDB status")


def add_daemonset(api: Api, wait: Wait, name: str, namespace: str, nodes: Callable[[], set[str]]) -> None:
    """A DaemonSet; returns once each of nodes() (re-read while waiting) has a pod of it."""
    labels = {"app": name}
    ensure_namespace(api, namespace)
    ds = create(
        api,
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets",
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
            },
        },
    )
    uid = meta(ds)["uid"]

    def placed() -> set[str]:
        return {node_name(p) for p in list_pods(api, namespace) if (controller_of(p) or {}).get("uid") == uid}

    wait(
        lambda: placed() >= nodes(), SETTLE_TIMEOUT, f"a pod of DaemonSet {namespace}/{name} on every worker"
    )
