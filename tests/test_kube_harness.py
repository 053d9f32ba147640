"""devenv/kube: a real control plane on loopback (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler), and the simulated kubelets that keep Nodes and
pods in step with fakepve's VMs.

One control plane for the module (its start is the slow part); every test has its own
fakepve, VM names and namespace, and deletes its Nodes and DaemonSets afterwards, so the
controllers and the scheduler of a later test see no Node without a kubelet.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import json
import socket
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import devenv.kube.control_plane
from devenv.fakepve import FakePveServer
from devenv.kube import KubeControlPlane, SimulatedKubelets
from workflow.setup_tools import ToolsError

pytestmark = pytest.mark.e2e

READY_DELAY = 0.6
# The taints are the node lifecycle controller's: it looks at the Nodes every 0.5 s
# (devenv/kube/control_plane.py), and on a loaded 2-core machine it can lag a little.
TAINT_WAIT = 5.0
_names = itertools.count(1)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeControlPlane]:
    api = KubeControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        api.start()
    except ToolsError as exc:
        pytest.fail(f"the Kubernetes harness needs the control plane's binaries: {exc}", pytrace=False)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh prefix for this test's VM names and namespace."""
    return f"h{next(_names)}"


# ------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def cluster(
    kube: KubeControlPlane, prefix: str, vms: dict[str, tuple[str, str]], *, ready_delay: float = READY_DELAY
) -> Iterator[tuple[FakePveServer, SimulatedKubelets, dict[str, int]]]:
    """A fakepve with these VMs (short name -> (role, status)), names prefixed, and the
    simulated kubelets on it. Yields (fakepve, kubelets, full VM name -> vmid)."""
    ids = {f"{prefix}-{short}": 8100 + i for i, short in enumerate(vms)}
    with FakePveServer() as pve:

        def add(p: Any) -> None:
            for short, (_role, status) in vms.items():
                p.add_vm(ids[f"{prefix}-{short}"], f"{prefix}-{short}", status=status)

        pve.call(add)
        roles = {f"{prefix}-{short}": role for short, (role, _status) in vms.items()}
        try:
            with SimulatedKubelets(kube, pve, roles, ready_delay=ready_delay, poll=0.05) as kubelets:
                yield pve, kubelets, ids
        finally:
            forget(kube, prefix, roles)


def forget(kube: KubeControlPlane, prefix: str, nodes: dict[str, str]) -> None:
    """Delete this test's Nodes (no kubelet posts for them any more) and its DaemonSets."""
    for name in nodes:
        assert kube.request("DELETE", f"/api/v1/nodes/{name}")[0] in (200, 404)
    status, listed = kube.request("GET", "/apis/apps/v1/namespaces/kube-system/daemonsets")
    assert status == 200, listed
    for ds in listed["items"]:
        if ds["metadata"]["name"].startswith(f"{prefix}-"):
            path = f"/apis/apps/v1/namespaces/kube-system/daemonsets/{ds['metadata']['name']}"
            assert kube.request("DELETE", path)[0] in (200, 404)


def power(pve: FakePveServer, vmid: int, action: str) -> None:
    """POST .../status/{action} through fakepve's API, as the provider or the rollout would."""
    request = urllib.request.Request(
        f"{pve.url}/api2/json/nodes/pve1/qemu/{vmid}/status/{action}",
        method="POST",
        data=b"",
        headers={"Authorization": f"PVEAPIToken={pve.api_token}"},
    )
    ctx = ssl.create_default_context(cafile=pve.certfile)
    with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
        assert response.status == 200


def node(kube: KubeControlPlane, name: str) -> dict[str, Any]:
    status, body = kube.request("GET", f"/api/v1/nodes/{name}")
    assert status == 200, body
    return body


def ready(obj: dict[str, Any]) -> str:
    conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions") or []}
    return conds.get("Ready", "")


UNREACHABLE = {
    ("node.kubernetes.io/unreachable", "NoSchedule"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
}


def taints(kube: KubeControlPlane, name: str) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node(kube, name)["spec"].get("taints") or []}


def boot_id(kube: KubeControlPlane, name: str) -> str:
    return str(node(kube, name)["status"]["nodeInfo"]["bootID"])


def pods(kube: KubeControlPlane, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    status, body = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods{query}")
    assert status == 200, body
    return sorted(body["items"], key=lambda p: p["metadata"]["name"])


def get_pod(kube: KubeControlPlane, namespace: str, name: str) -> dict[str, Any]:
    status, body = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    assert status == 200, body
    return body


def pdb_status(kube: KubeControlPlane, namespace: str, name: str) -> dict[str, Any]:
    status, body = kube.request("GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}")
    assert status == 200, body
    return dict(body.get("status") or {})


def evict(kube: KubeControlPlane, namespace: str, pod: str) -> tuple[int, dict[str, Any]]:
    return kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
        {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}},
    )


def get_with_kubeconfig(path: Path, api_path: str) -> tuple[int, bytes]:
    """GET api_path the way a client reads a kubeconfig: its current context's server,
    CA data and client certificate data."""
    config = yaml.safe_load(path.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    server = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    url = urlsplit(server["server"])
    assert url.hostname == "127.0.0.1"
    ctx = ssl.create_default_context(cadata=base64.b64decode(server["certificate-authority-data"]).decode())
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "client.crt"), Path(tmp, "client.key")
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(str(cert), str(key))
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=10)
    try:
        conn.request("GET", api_path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ------------------------------------------------------------------- the API server


def test_the_api_is_ready_and_its_etcd_too(kube: KubeControlPlane) -> None:
    assert kube.url.startswith("https://127.0.0.1:")
    assert kube.request("GET", "/readyz") == (200, {"text": "ok"})
    assert kube.request("GET", "/readyz/etcd") == (200, {"text": "ok"})
    status, version = kube.request("GET", "/version")
    assert status == 200
    assert version["gitVersion"] == "v1.34.2"


def test_admin_kubeconfig_has_everything_embedded_and_works(kube: KubeControlPlane) -> None:
    config = yaml.safe_load(kube.kubeconfig.read_text())
    assert [c["name"] for c in config["contexts"]] == [config["current-context"]]
    (cluster_entry,) = config["clusters"]
    (user,) = config["users"]
    assert set(cluster_entry["cluster"]) == {"server", "certificate-authority-data"}
    assert set(user["user"]) == {"client-certificate-data", "client-key-data"}
    assert cluster_entry["cluster"]["server"] == kube.url
    assert kube.kubeconfig.stat().st_mode & 0o077 == 0

    status, body = get_with_kubeconfig(kube.kubeconfig, "/api/v1/namespaces/default")
    assert status == 200, body
    assert json.loads(body)["metadata"]["name"] == "default"


def test_the_official_client_reads_the_admin_kubeconfig(kube: KubeControlPlane, tmp_path: Path) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.client.exceptions import ApiException

    with kubernetes.config.new_client_from_config(config_file=str(kube.kubeconfig)) as client:
        names = [ns.metadata.name for ns in kubernetes.client.CoreV1Api(client).list_namespace().items]
    assert "kube-system" in names

    untrusted = kube.write_kubeconfig(tmp_path / "untrusted", untrusted_client=True)
    with (
        kubernetes.config.new_client_from_config(config_file=str(untrusted)) as client,
        pytest.raises(ApiException) as caught,
    ):
        kubernetes.client.CoreV1Api(client).list_namespace()
    assert caught.value.status == 401


def test_a_client_certificate_from_another_ca_is_refused_with_401(
    kube: KubeControlPlane, tmp_path: Path
) -> None:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig", untrusted_client=True)
    status, body = get_with_kubeconfig(path, "/api/v1/nodes")
    assert status == 401, body


def test_a_ca_that_did_not_sign_the_server_fails_tls(kube: KubeControlPlane, tmp_path: Path) -> None:
    path = kube.write_kubeconfig(tmp_path / "kubeconfig", wrong_ca=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        get_with_kubeconfig(path, "/api/v1/nodes")


def test_another_server_url_is_unreachable(kube: KubeControlPlane, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = kube.write_kubeconfig(tmp_path / "kubeconfig", server=f"https://127.0.0.1:{port}")
    with pytest.raises(ConnectionRefusedError):
        get_with_kubeconfig(path, "/api/v1/nodes")


# ------------------------------------------------------------------------ the nodes


def test_nodes_follow_the_vms_power_state(kube: KubeControlPlane, prefix: str) -> None:
    vms = {"cp-0": ("controller", "running"), "w-0": ("worker", "running"), "w-1": ("worker", "stopped")}
    with cluster(kube, prefix, vms) as (pve, kubelets, ids):
        cp, w0, w1 = f"{prefix}-cp-0", f"{prefix}-w-0", f"{prefix}-w-1"
        assert node(kube, cp)["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
        assert "node-role.kubernetes.io/control-plane" not in node(kube, w0)["metadata"]["labels"]
        assert (ready(node(kube, cp)), ready(node(kube, w0)), ready(node(kube, w1))) == (
            "True",
            "True",
            "Unknown",
        )
        first = kubelets.boot_ids()
        assert set(first) == {cp, w0}
        assert boot_id(kube, w0) == first[w0]

        # The node lifecycle controller takes off the not-ready taint of the registration.
        kubelets.wait(lambda: taints(kube, w0) == set(), TAINT_WAIT, "no taint on a Ready worker")
        kubelets.wait(
            lambda: taints(kube, cp) == {("node-role.kubernetes.io/control-plane", "NoSchedule")},
            TAINT_WAIT,
            "only the control-plane taint on a Ready controller",
        )

        power(pve, ids[w0], "stop")
        kubelets.wait(lambda: ready(node(kube, w0)) == "Unknown", 2.0, "NotReady at once after the stop")
        kubelets.wait(lambda: taints(kube, w0) == UNREACHABLE, TAINT_WAIT, "the unreachable taints")

        started = time.monotonic()
        power(pve, ids[w0], "start")
        kubelets.wait(lambda: ready(node(kube, w0)) == "True", READY_DELAY + 2, "Ready after the start")
        assert time.monotonic() - started >= READY_DELAY * 0.9
        assert boot_id(kube, w0) == kubelets.boot_ids()[w0] != first[w0]
        kubelets.wait(lambda: taints(kube, w0) == set(), TAINT_WAIT, "no unreachable taints once Ready")
        assert boot_id(kube, cp) == first[cp]  # the others did not reboot

        power(pve, ids[w1], "start")
        kubelets.wait(lambda: ready(node(kube, w1)) == "True", READY_DELAY + 2, "the stopped VM's first boot")
        assert boot_id(kube, w1) not in ("", first[w0])


def test_a_cordoned_node_stays_cordoned_across_a_reboot(kube: KubeControlPlane, prefix: str) -> None:
    with cluster(kube, prefix, {"w-0": ("worker", "running")}) as (pve, kubelets, ids):
        name = f"{prefix}-w-0"
        status, _ = kube.request(
            "PATCH",
            f"/api/v1/nodes/{name}",
            {"spec": {"unschedulable": True}},
            content_type="application/merge-patch+json",
        )
        assert status == 200
        before = kubelets.boot_ids()[name]
        power(pve, ids[name], "reboot")  # a shutdown and a start within one task
        kubelets.wait(
            lambda: ready(node(kube, name)) == "True" and boot_id(kube, name) != before,
            READY_DELAY + 2,
            "Ready again with a new bootID",
        )
        assert node(kube, name)["spec"]["unschedulable"] is True
        kubelets.wait(
            lambda: taints(kube, name) == {("node.kubernetes.io/unschedulable", "NoSchedule")},
            TAINT_WAIT,
            "cordon taint",
        )


def test_a_change_no_listener_told_of_still_converges(kube: KubeControlPlane, prefix: str) -> None:
    with cluster(kube, prefix, {"w-0": ("worker", "running")}) as (pve, kubelets, ids):
        name = f"{prefix}-w-0"
        before = kubelets.boot_ids()[name]

        def recreate(p: Any) -> None:  # deleted and created again under the same name
            old = p.vm(ids[name])
            p.vms.remove(old)
            p.add_vm(ids[name], name, status="running")

        pve.call(recreate)
        kubelets.wait(lambda: boot_id(kube, name) != before, READY_DELAY + 3, "a new boot for the new VM")
        assert ready(node(kube, name)) == "True"

        # A stop the fake did not report (the status set behind the setter's back).
        pve.call(lambda p: p.vm(ids[name]).__dict__.update(_status="stopped"))
        kubelets.wait(lambda: ready(node(kube, name)) == "Unknown", 3, "NotReady from the periodic re-read")


def test_a_new_vm_under_the_name_is_no_node_until_it_rejoins(kube: KubeControlPlane, prefix: str) -> None:
    with cluster(kube, prefix, {"w-0": ("worker", "running")}) as (pve, kubelets, ids):
        name = f"{prefix}-w-0"
        before = kubelets.boot_ids()[name]

        def replace(p: Any) -> None:  # what a replaced VM is: another vmid under the name
            p.vms.remove(p.vm(ids[name]))
            p.add_vm(ids[name] + 1000, name, status="running")

        pve.call(replace)
        kubelets.wait(lambda: ready(node(kube, name)) == "Unknown", READY_DELAY + 3, "maintenance mode")
        time.sleep(READY_DELAY + 1.2)  # past a ready delay and a re-read: still no Node Ready
        assert ready(node(kube, name)) == "Unknown"
        kubelets.rejoin(name)
        kubelets.wait(
            lambda: ready(node(kube, name)) == "True" and boot_id(kube, name) != before,
            READY_DELAY + 3,
            "Ready with a new bootID once it rejoined",
        )


def test_a_node_set_missing_is_deleted_and_stays_away(kube: KubeControlPlane, prefix: str) -> None:
    vms = {"w-0": ("worker", "running"), "w-1": ("worker", "running")}
    with cluster(kube, prefix, vms) as (_pve, kubelets, _ids):
        kubelets.set_missing(f"{prefix}-w-1")
        time.sleep(0.5)  # several loops of the kubelets
        assert kube.request("GET", f"/api/v1/nodes/{prefix}-w-1")[0] == 404
        assert set(kubelets.boot_ids()) == {f"{prefix}-w-0"}


# ------------------------------------------------------------ pods, PDBs, evictions


def test_evictions_respect_the_budget_until_the_replacement_is_ready(
    kube: KubeControlPlane, prefix: str
) -> None:
    ns = prefix
    vms = {
        "cp-0": ("controller", "running"),
        "w-0": ("worker", "running"),
        "w-1": ("worker", "running"),
        "w-2": ("worker", "running"),
    }
    delay = 2.0
    with cluster(kube, prefix, vms, ready_delay=delay) as (_pve, kubelets, _ids):
        kubelets.deploy("web", 3, namespace=ns, max_unavailable=1)
        kubelets.add_daemonset_pods(f"{prefix}-exporter")
        kubelets.add_mirror_pods()

        web = pods(kube, ns, "app=web")
        assert sorted(p["spec"]["nodeName"] for p in web) == [f"{prefix}-w-{i}" for i in range(3)]
        for pod in web:
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
            assert ready(pod) == "True" and pod["status"]["phase"] == "Running"
        budget = pdb_status(kube, ns, "web")
        assert (budget["expectedPods"], budget["currentHealthy"], budget["desiredHealthy"]) == (3, 3, 2)
        assert budget["disruptionsAllowed"] == 1

        exporters = pods(kube, "kube-system", f"app={prefix}-exporter")
        assert sorted(p["spec"]["nodeName"] for p in exporters) == [f"{prefix}-w-{i}" for i in range(3)]
        assert {p["metadata"]["ownerReferences"][0]["kind"] for p in exporters} == {"DaemonSet"}
        mirror = [
            p for p in pods(kube, "kube-system") if p["metadata"]["name"] == f"kube-apiserver-{prefix}-cp-0"
        ]
        assert len(mirror) == 1 and "kubernetes.io/config.mirror" in mirror[0]["metadata"]["annotations"]

        first, second = web[0]["metadata"]["name"], web[1]["metadata"]["name"]
        evicted_at = time.monotonic()
        status, body = evict(kube, ns, first)
        assert status == 201, body
        status, body = evict(kube, ns, second)
        assert status == 429, body
        assert "disruption budget" in body["message"]

        def replacements() -> list[dict[str, Any]]:
            return [
                p
                for p in pods(kube, ns, "app=web")
                if p["metadata"]["name"] not in {first, second, web[2]["metadata"]["name"]}
            ]

        kubelets.wait(lambda: replacements(), 2, "a replacement created at once")
        (replacement,) = replacements()
        assert ready(replacement) != "True"
        assert evict(kube, ns, second)[0] == 429  # while the replacement is not Ready
        kubelets.wait(
            lambda: kube.request("GET", f"/api/v1/namespaces/{ns}/pods/{first}")[0] == 404,
            5,
            "evicted pod deleted",
        )

        deadline = time.monotonic() + delay + 5
        while (status := evict(kube, ns, second)[0]) == 429 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 201
        # Not granted before the replacement could be Ready.
        assert time.monotonic() - evicted_at >= delay
        assert ready(get_pod(kube, ns, replacement["metadata"]["name"])) == "True"

        kubelets.wait(lambda: {k for _, k, _ in kubelets.evictions} == {f"{ns}/{first}", f"{ns}/{second}"}, 3)
        assert [(k, n) for _, k, n in kubelets.evictions] == [
            (f"{ns}/{first}", web[0]["spec"]["nodeName"]),
            (f"{ns}/{second}", web[1]["spec"]["nodeName"]),
        ]
        kubelets.wait(lambda: pdb_status(kube, ns, "web").get("currentHealthy") == 3, delay + 5)
        assert kubelets.pdb_violations == []
        # The DaemonSet's and the mirror pods are left alone.
        assert len(pods(kube, "kube-system", f"app={prefix}-exporter")) == 3


def test_a_worker_stopped_without_a_drain_is_a_budget_violation(kube: KubeControlPlane, prefix: str) -> None:
    ns = prefix
    vms = {"w-0": ("worker", "running"), "w-1": ("worker", "running")}
    with cluster(kube, prefix, vms) as (pve, kubelets, ids):
        kubelets.deploy("db", 4, namespace=ns, max_unavailable=1)  # two on each worker
        assert kubelets.pdb_violations == []
        power(pve, ids[f"{prefix}-w-0"], "stop")
        kubelets.wait(lambda: kubelets.pdb_violations, 3, "a violation recorded")
        assert f"{ns}/db: currentHealthy 2 < desiredHealthy 3" in kubelets.pdb_violations[0]
        on_w0 = [p for p in pods(kube, ns, "app=db") if p["spec"]["nodeName"] == f"{prefix}-w-0"]
        assert [ready(p) for p in on_w0] == ["False", "False"]


def test_a_port_taken_between_choosing_and_binding_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = devenv.kube.control_plane.free_ports
    calls: list[list[int]] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()

        def first_one_taken(count: int) -> list[int]:
            ports = real(count)
            if not calls:
                ports[-1] = taken.getsockname()[1]  # the API server's secure port
            calls.append(ports)
            return ports

        monkeypatch.setattr(devenv.kube.control_plane, "free_ports", first_one_taken)
        with KubeControlPlane(tmp_path / "kube") as api:
            assert len(calls) == 2
            assert api.request("GET", "/readyz")[0] == 200
    assert "address already in use" in (tmp_path / "kube" / "kube-apiserver.log").read_text()
