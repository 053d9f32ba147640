"""The few Kubernetes API calls a rollout makes, each failure as one line.

Through the official client, configured from the kubeconfig as kubectl would be (client
certificates, tokens, exec plugins). Requests time out; nothing here retries except
where the caller loops with its own deadline.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow.cluster.kubeconfig import KubeconfigError, PrivateDir, server_of
from workflow.errors import WorkflowError

REQUEST_TIMEOUT = (5.0, 15.0)  # connect, read
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# Set with the rollout's own cordon: a rerun after a stopped drain knows the cordon is its
# own to lift, not the operator's to keep.
CORDONED_BY = "infra.rollout/cordoned"


class ClusterError(WorkflowError):
    """The cluster could not be asked, or refused: nothing more is applied."""


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    boot_id: str
    unschedulable: bool
    cordoned_by_rollout: bool
    control_plane: bool
    why: str  # the Ready condition's reason/message when not ready


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    owner_kinds: tuple[str, ...]  # kinds of its controller owner references
    mirror: bool
    terminating: bool
    finished: bool  # Succeeded or Failed: nothing to evict

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


class KubeApi:
    def __init__(self, config: Mapping[str, Any], shown: str) -> None:
        from kubernetes import client
        from kubernetes.config import ConfigException, kube_config

        self.server = server_of(config)
        self.shown = shown
        self._private = PrivateDir()
        configuration = client.Configuration()
        try:
            kube_config.load_kube_config_from_dict(
                dict(config),
                client_configuration=configuration,
                persist_config=False,
                temp_file_path=self._private.path,
            )
        except (ConfigException, ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            self.close()
            # The client's messages name keys, not values; the type is enough otherwise.
            detail = str(exc) if isinstance(exc, ConfigException) else type(exc).__name__
            raise KubeconfigError(f"{shown}: not a usable kubeconfig ({_one_line(detail)})") from exc
        configuration.retries = 0
        self._client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self._client)
        self._models = client

    def close(self) -> None:
        from kubernetes.config import kube_config

        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        # The client caches the names of its key-data copies; they are gone with the dir.
        for key, name in list(kube_config._temp_files.items()):
            if str(name).startswith(self._private.path):
                del kube_config._temp_files[key]
        self._private.remove()

    # ------------------------------------------------------------------ calls

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            raise self._api_error(what, exc.status, exc.reason) from exc
        except Exception as exc:  # urllib3 and ssl errors: the API could not be reached
            if isinstance(exc, WorkflowError):
                raise
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.server} ({self.shown}) to {what}: "
                f"{_reason(exc)}; nothing more was applied"
            ) from exc

    def _api_error(self, what: str, status: int | None, reason: str | None) -> ClusterError:
        if status == 401:
            text = "refused the kubeconfig's credentials (401 Unauthorized)"
        elif status == 403:
            text = "does not allow the kubeconfig's user to " + what + " (403 Forbidden)"
        else:
            text = f"answered {status} {reason or ''}".rstrip()
        return ClusterError(
            f"the Kubernetes API at {self.server} ({self.shown}) {text} to {what}; nothing more was applied"
        )

    def check_access(self) -> None:
        self._call("list the nodes", self.core.list_node, limit=1)

    def nodes(self) -> dict[str, NodeState]:
        found = self._call("list the nodes", self.core.list_node)
        return {n.metadata.name: _node_state(n) for n in found.items or []}

    def node(self, name: str) -> NodeState | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return _node_state(self.core.read_node(name, _request_timeout=REQUEST_TIMEOUT))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._api_error(f"read node {name}", exc.status, exc.reason) from exc
        except Exception as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.server} ({self.shown}) to read node "
                f"{name}: {_reason(exc)}"
            ) from exc

    def set_unschedulable(self, name: str, value: bool) -> None:
        """Cordon (marked as the rollout's own) or uncordon a node."""
        verb = "cordon" if value else "uncordon"
        patch = {
            "metadata": {"annotations": {CORDONED_BY: "true" if value else None}},
            "spec": {"unschedulable": value},
        }
        self._call(f"{verb} node {name}", self.core.patch_node, name, patch)

    def readyz(self) -> str | None:
        """None when the API server (etcd included) says it is ready, else what failed."""
        try:
            method, url, headers, body, post = self._client.param_serialize(
                "GET", "/readyz", query_params=[("verbose", "")], auth_settings=["BearerToken"]
            )
            response = self._client.call_api(
                method, url, headers, body, post, _request_timeout=REQUEST_TIMEOUT
            )
            response.read()
        except Exception as exc:
            return f"the API did not answer /readyz ({_reason(exc)})"
        if response.status == 200:
            return None
        text = (response.data or b"").decode("utf-8", "replace")
        failed = [ln.strip()[4:].split(" ")[0] for ln in text.splitlines() if ln.strip().startswith("[-]")]
        return f"/readyz answered {response.status}" + (f" (failing: {', '.join(failed)})" if failed else "")

    def pods_on(self, node: str) -> list[Pod]:
        found = self._call(
            f"list the pods on {node}",
            self.core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={node}",
        )
        return [_pod(p) for p in found.items or []]

    def evict(self, pod: Pod) -> tuple[int, str]:
        """(status, message): 201 evicted, 429 a disruption budget forbids it now, 404 gone."""
        from kubernetes.client.exceptions import ApiException

        m = self._models
        body = m.V1Eviction(
            metadata=m.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=m.V1DeleteOptions(preconditions=m.V1Preconditions(uid=pod.uid)),
        )
        try:
            self.core.create_namespaced_pod_eviction(
                pod.name, pod.namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
            return 201, ""
        except ApiException as exc:
            if exc.status in (401, 403):
                raise self._api_error(f"evict pod {pod.ref}", exc.status, exc.reason) from exc
            return int(exc.status or 0), _status_message(exc.body) or str(exc.reason or "")
        except Exception as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.server} ({self.shown}) to evict pod "
                f"{pod.ref}: {_reason(exc)}"
            ) from exc

    def pod_gone(self, pod: Pod) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.core.read_namespaced_pod(pod.name, pod.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise self._api_error(f"read pod {pod.ref}", exc.status, exc.reason) from exc
        except Exception as exc:
            raise ClusterError(
                f"cannot reach the Kubernetes API at {self.server} ({self.shown}): {_reason(exc)}"
            ) from exc
        return (
            found.metadata is None or found.metadata.uid != pod.uid
        )  # a new pod of the same name: ours is gone


def _node_state(node: Any) -> NodeState:
    ready, why = False, "no Ready condition yet"
    for c in (node.status.conditions if node.status else None) or []:
        if c.type == "Ready":
            ready = c.status == "True"
            why = "" if ready else f"Ready is {c.status}" + (f" ({c.reason})" if c.reason else "")
    info = node.status.node_info if node.status else None
    labels = node.metadata.labels or {}
    annotations = node.metadata.annotations or {}
    return NodeState(
        name=node.metadata.name,
        ready=ready,
        boot_id=(info.boot_id if info else "") or "",
        unschedulable=bool(node.spec.unschedulable) if node.spec else False,
        cordoned_by_rollout=annotations.get(CORDONED_BY) == "true",
        control_plane=CONTROL_PLANE_LABEL in labels,
        why=why,
    )


def _pod(pod: Any) -> Pod:
    meta = pod.metadata
    owners = tuple(o.kind for o in meta.owner_references or [] if o.controller)
    phase = pod.status.phase if pod.status else None
    return Pod(
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid or "",
        owner_kinds=owners,
        mirror="kubernetes.io/config.mirror" in (meta.annotations or {}),
        terminating=meta.deletion_timestamp is not None,
        finished=phase in ("Succeeded", "Failed"),
    )


def _status_message(body: Any) -> str:
    try:
        return str(json.loads(body).get("message") or "")
    except (TypeError, ValueError, AttributeError):
        return ""


def _reason(exc: BaseException) -> str:
    # urllib3's MaxRetryError wraps the cause; its own text repeats the URL and pool.
    inner = getattr(exc, "reason", None)
    if isinstance(inner, BaseException):
        exc = inner
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the server's TLS certificate is not trusted by the kubeconfig's certificate-authority"
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return _one_line(text.split(": ", 1)[-1] if "object at 0x" in text else text) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
