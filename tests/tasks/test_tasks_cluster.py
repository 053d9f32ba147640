"""The rolling apply with the cluster in view, through `task`, against fakepve and a real
Kubernetes control plane (devenv/kube: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) and simulated kubelets: Nodes follow their VMs' power (Ready with a new
bootID after each start), workers run a ReplicaSet guarded by a PodDisruptionBudget and a
DaemonSet, controllers their mirror pods. The budget's status is the disruption
controller's, evicted pods are recreated by the ReplicaSet controller and placed by the
scheduler, as in a real cluster.

The kubeconfig sits beside cluster.yaml, where the template setup leaves it: found with
no option, as an operator's would be.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.fakepve import FakePveServer
from devenv.kube import KubeControlPlane, SimulatedKubelets
from devenv.ports import free_port
from devenv.workspace import LOOPBACK_NET as NET
from devenv.workspace import HttpState
from tests.tasks.rollout_cluster import CONTROLLERS, WORKERS, Cluster, ok, rollout_pve

pytestmark = pytest.mark.e2e

READY_DELAY = 0.5  # a started VM's Node reports Ready this long after it runs
ROLES = {n: "controller" for n in CONTROLLERS} | {n: "worker" for n in WORKERS}
FAST = ("--node-timeout", "30", "--drain-timeout", "30")
# The drain a budget blocks must time out, but the workers drained before it must finish
# within the same timeout: three or four pods, one eviction a second (each waits for the
# previous pod's replacement to be Ready), the last one's 1 s grace period. 3 s were
# enough for the simulator's own controllers; the real ReplicaSet and disruption
# controllers and the scheduler take a little longer.
BLOCKED_DRAIN_TIMEOUT = 8


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeControlPlane]:
    with KubeControlPlane(tmp_path_factory.mktemp("kube")) as api:
        yield api


def clean(kube: KubeControlPlane) -> None:
    """Every test starts from an empty cluster: no Nodes, pods, budgets or workloads."""
    for path in (
        "/api/v1/nodes",
        "/apis/apps/v1/namespaces/default/replicasets",
        "/apis/apps/v1/namespaces/kube-system/daemonsets",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        "/api/v1/namespaces/default/pods?gracePeriodSeconds=0",
        "/api/v1/namespaces/kube-system/pods?gracePeriodSeconds=0",
    ):
        status, body = kube.request("DELETE", path)
        assert status in (200, 404), (path, status, body)


@pytest.fixture
def pve() -> Iterator[FakePveServer]:
    yield from rollout_pve()


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


class Live(Cluster):
    """The 3 + 3 cluster with its Kubernetes side running."""

    def __init__(self, root: Path, pve: FakePveServer, state: HttpState, kube: KubeControlPlane) -> None:
        super().__init__(root, pve, state)  # created: nothing to roll, no cluster yet
        self.kube = kube
        clean(kube)
        self.kubelets = SimulatedKubelets(kube, pve, ROLES, ready_delay=READY_DELAY, poll=0.05)
        self.kubelets.start()
        self.kubeconfig = kube.write_kubeconfig(root / "kubeconfig")
        self.kubelets.wait(lambda: len(self.kubelets.boot_ids()) == 6, 20, "six Ready Nodes")
        self.kubelets.deploy("web", 6, max_unavailable=1)
        self.kubelets.add_daemonset_pods()
        self.kubelets.add_mirror_pods()
        pve.call(lambda p: p.power_log.clear())

    def close(self) -> None:
        self.kubelets.stop()

    def stopped(self) -> list[str]:
        """Names of the VMs that stopped since the setup (in order, once each)."""
        names: list[str] = []
        for _at, _vmid, name, status in self.pve.call(lambda p: list(p.power_log)):
            if status != "running" and name not in names:
                names.append(name)
        return names

    def node(self, name: str) -> dict[str, Any]:
        status, body = self.kube.request("GET", f"/api/v1/nodes/{name}")
        assert status == 200, body
        return body

    def ready(self, name: str) -> bool:
        conditions = self.node(name).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def cordoned(self) -> dict[str, bool]:
        return {n: bool(self.node(n).get("spec", {}).get("unschedulable")) for n in ROLES}

    def cordoned_names(self) -> list[str]:
        status, body = self.kube.request("GET", "/api/v1/nodes")
        assert status == 200, body
        return [n["metadata"]["name"] for n in body["items"] if n.get("spec", {}).get("unschedulable")]

    def agent_address(self, name: str) -> str:
        """The address the guest agent reports (and the state keeps) for a node's VM."""
        interfaces = self.pve.call(lambda p: p._interfaces(next(vm for vm in p.vms if vm.name == name)))
        return str(interfaces[-1]["ip-addresses"][0]["ip-address"])

    def vm_ids(self) -> dict[str, int]:
        return self.pve.call(lambda p: {vm.name: vm.vmid for vm in p.vms})


@pytest.fixture
def live(tmp_path: Path, pve: FakePveServer, state: HttpState, kube: KubeControlPlane) -> Iterator[Live]:
    cluster = Live(tmp_path, pve, state, kube)
    try:
        yield cluster
    finally:
        cluster.close()
    assert cluster.kubelets.pdb_violations == []


def lines_of(out: str, name: str) -> list[str]:
    return [ln.split(f"rollout: {name}: ", 1)[1] for ln in out.splitlines() if f"rollout: {name}: " in ln]


def test_memory_change_drains_each_worker_and_checks_the_control_plane(live: Live) -> None:
    before = live.kubelets.boot_ids()
    live.more_memory()
    ok(live.ws.task("infra:plan"))
    out = ok(live.ws.task("infra:apply", "--", *FAST)).stdout
    assert "rollout: the cluster is in view: Kubernetes API https://127.0.0.1:" in out
    assert "(kubeconfig from ./kubeconfig)" in out
    assert "cannot see the cluster" not in out
    assert live.stopped() == [*WORKERS, *CONTROLLERS]  # workers first, each once, in order

    for name in WORKERS:
        said = lines_of(out, name)
        assert said[0] == "cordoned", said
        assert said[1] == "1 DaemonSet pod left on the node", said
        assert re.fullmatch(r"drained \(\d pods? evicted\)", said[2]), said
        assert said[-2:] == ["Node Ready with a new bootID", "uncordoned"], said
    # One worker at a time: the next is cordoned only after the previous was uncordoned.
    events = [ln for ln in out.splitlines() if re.search(r": (cordoned|uncordoned)$", ln)]
    assert [e.split(": ")[1:] for e in events] == [
        [w, s] for w in WORKERS for s in ("cordoned", "uncordoned")
    ]

    # Every web pod left its worker through the Eviction API; the budget always held.
    evicted_from = {node for _t, ref, node in live.kubelets.evictions}
    assert evicted_from == set(WORKERS), live.kubelets.evictions
    assert all(ref.startswith("default/web-") for _t, ref, _n in live.kubelets.evictions)
    assert live.kubelets.pdb_violations == []
    assert live.cordoned() == dict.fromkeys(ROLES, False)

    for name in CONTROLLERS:
        said = lines_of(out, name)
        assert said[0] == "control plane ready (3 control-plane Nodes Ready, /readyz passes)", said
        assert said[-1] == "Node Ready with a new bootID, /readyz passes", said
    after = live.kubelets.boot_ids()
    assert all(after[n] != before[n] for n in ROLES), (before, after)
    assert live.memory() == {n: 10240 for n in CONTROLLERS} | {n: 18432 for n in WORKERS}


def test_a_controller_not_ready_stops_the_rollout_before_the_controllers(live: Live) -> None:
    def down(p: Any) -> None:  # k8s-ctrl-2's VM stopped outside the tool: its Node goes NotReady
        next(vm for vm in p.vms if vm.name == "k8s-ctrl-2").status = "stopped"

    live.more_memory()
    ok(live.ws.task("infra:plan"))
    live.pve.call(down)
    live.kubelets.wait(lambda: not live.ready("k8s-ctrl-2"), 10)
    live.pve.call(lambda p: p.power_log.clear())
    stopped = live.ws.task("infra:apply", "--", *FAST)
    assert stopped.returncode != 0
    assert errors(stopped) == [
        "error: rollout stopped [4/6]: before restarting k8s-ctrl-0: control-plane node "
        "k8s-ctrl-2 is not Ready (Ready is Unknown (NodeStatusUnknown)); nothing more was applied; run the "
        "task again once it is Ready; not restarted: k8s-ctrl-1, k8s-ctrl-2"
    ], stopped.stderr
    assert live.stopped() == list(WORKERS)  # no controller restarted
    assert live.memory()["k8s-ctrl-0"] == 8192


def test_a_replaced_controller_needs_allow_replace_and_stops_until_its_node_is_ready(live: Live) -> None:
    ids = live.vm_ids()
    live.nodes[1]["vm_id"] = 8111  # k8s-ctrl-1: a new vm_id makes the provider replace the VM
    live.write()
    ok(live.ws.task("infra:plan"))

    refused = live.ws.task("infra:apply")
    assert refused.returncode != 0  # task: 201
    assert errors(refused) == [
        "error: refusing to replace k8s-ctrl-1 (its disk and its etcd member) without --allow-replace; "
        "nothing was applied; review the plan, then run `task infra:apply -- --allow-replace`"
    ], refused.stderr
    assert (
        "rollout: k8s-ctrl-1 (controller) is REPLACED: destroyed and created again; lost: its disk "
        "and its etcd member" in refused.stdout
    )
    assert live.vm_ids() == ids and live.stopped() == []  # nothing applied

    first = live.ws.task("infra:apply", "--", "--allow-replace", *FAST)
    assert first.returncode != 0
    assert errors(first) == [
        "error: rollout stopped [1/1]: k8s-ctrl-1 was replaced and boots into Talos "
        "maintenance mode; run `task talos:apply-node IP=" + NET + ".11` to make it a node of the "
        "cluster again, then run this task again to resume"
    ], first.stderr
    assert live.vm_ids()["k8s-ctrl-1"] == 8111

    again = live.ws.task("infra:apply", "--", "--allow-replace", "--node-timeout", "2")
    assert again.returncode != 0
    assert "rollout: checking k8s-ctrl-1 first" in again.stdout
    assert errors(again)[0].startswith(
        "error: rollout stopped before it went on: k8s-ctrl-1 did not come back within 2 s: "
    ), again.stderr
    assert errors(again)[0].endswith(
        f"run `task talos:apply-node IP={NET}.11`, then run the task again to resume"
    )

    live.kubelets.rejoin("k8s-ctrl-1")  # what `task talos:apply-node` does for the new VM
    done = ok(live.ws.task("infra:apply", "--", "--allow-replace", *FAST))
    assert "rollout: k8s-ctrl-1: healthy" in done.stdout
    assert not (live.ws.stack_dir / "rollout-state.json").exists()


def test_two_of_three_controllers_removed_is_refused(live: Live) -> None:
    ids = live.vm_ids()
    live.nodes = [n for n in live.nodes if n["name"] not in ("k8s-ctrl-1", "k8s-ctrl-2")]
    live.write()
    ok(live.ws.task("infra:plan"))
    for command in (("infra:apply",), ("infra:apply-auto", "--", "--yes", "--allow-replace")):
        refused = live.ws.task(*command)
        assert refused.returncode != 0, refused.stdout[-3000:]  # task: 201
        assert errors(refused) == [
            "error: refusing to apply: the plan deletes or replaces 2 of the 3 controllers "
            "(k8s-ctrl-1, k8s-ctrl-2), and etcd would lose quorum (3 members need 2 alive); nothing "
            "was applied; remove them one apply at a time, each after leaving etcd "
            f"(`talosctl -n {live.agent_address('k8s-ctrl-1')} reset --graceful`)"
        ], refused.stderr
    assert live.vm_ids() == ids and live.stopped() == []


def test_a_controller_still_in_the_cluster_is_not_deleted_and_a_removed_worker_is_drained(live: Live) -> None:
    live.nodes = [n for n in live.nodes if n["name"] not in ("k8s-ctrl-2", "k8s-work-2")]
    live.write()
    ok(live.ws.task("infra:plan"))
    refused = live.ws.task("infra:apply", "--", *FAST)
    assert refused.returncode != 0  # task: 201
    ip = live.agent_address("k8s-ctrl-2")  # no longer in nodes.yaml: as the state has it
    assert (
        f"rollout: before k8s-ctrl-2 is deleted it must leave etcd: `talosctl -n {ip} reset --graceful`"
        in (refused.stdout)
    )
    assert errors(refused) == [
        "error: refusing to delete controller k8s-ctrl-2: its Node is still Ready, so it has not left "
        f"etcd; run `talosctl -n {ip} reset --graceful` first; nothing was applied"
    ], refused.stderr
    assert len(live.vm_ids()) == 6 and live.cordoned()["k8s-work-2"] is False

    def reset(p: Any) -> None:  # `talosctl reset`: the node leaves etcd and powers off
        next(vm for vm in p.vms if vm.name == "k8s-ctrl-2").status = "stopped"

    live.pve.call(reset)
    live.kubelets.wait(lambda: not live.ready("k8s-ctrl-2"), 10)
    out = ok(live.ws.task("infra:apply", "--", *FAST)).stdout
    said = lines_of(out, "k8s-work-2")
    assert said[0] == "cordoned" and said[2].startswith("drained ("), said
    assert {node for _t, _ref, node in live.kubelets.evictions} == {"k8s-work-2"}
    assert sorted(live.vm_ids()) == sorted(n for n in ROLES if n not in ("k8s-ctrl-2", "k8s-work-2"))


def test_without_a_kubeconfig_the_vm_checks_with_a_notice(live: Live) -> None:
    live.kubeconfig.unlink()
    live.more_memory(controllers=False)
    ok(live.ws.task("infra:plan"))
    out = ok(live.ws.task("infra:apply", "--", *FAST)).stdout
    notices = [ln for ln in out.splitlines() if "cannot see the cluster" in ln]
    assert notices == [
        "rollout: cannot see the cluster (no kubeconfig: none given with --kubeconfig, KUBECONFIG unset, "
        "no ./kubeconfig): checking VMs only, not Kubernetes nodes, and no drain"
    ]
    assert "cordoned" not in out and live.kubelets.evictions == []
    assert live.stopped() == list(WORKERS)
    assert "rollout: done: 3 nodes restarted" in out
    # What the drain prevents: with no drain, restarting workers took pods the budget needed.
    assert live.kubelets.pdb_violations != []
    live.kubelets.pdb_violations.clear()


def test_a_node_the_operator_cordoned_stays_cordoned(live: Live) -> None:
    status, body = live.kube.request(
        "PATCH",
        "/api/v1/nodes/k8s-work-1",
        {"spec": {"unschedulable": True}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    live.more_memory(controllers=False)
    ok(live.ws.task("infra:plan"))
    out = ok(live.ws.task("infra:apply", "--", *FAST)).stdout
    assert lines_of(out, "k8s-work-1")[0] == "already cordoned (stays cordoned afterwards)"
    assert "rollout: k8s-work-1: uncordoned" not in out
    assert live.cordoned() == dict.fromkeys(ROLES, False) | {"k8s-work-1": True}
    assert live.stopped() == list(WORKERS)


def test_a_drain_a_budget_blocks_stops_the_rollout_with_the_node_cordoned(live: Live) -> None:
    live.kubelets.deploy("stuck", 1, max_unavailable=0)  # no disruption ever allowed
    status, pods = live.kube.request("GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dstuck")
    assert status == 200 and len(pods["items"]) == 1
    where = pods["items"][0]["spec"]["nodeName"]
    live.more_memory(controllers=False)
    ok(live.ws.task("infra:plan"))
    timeout = BLOCKED_DRAIN_TIMEOUT
    stopped = live.ws.task("infra:apply", "--", "--drain-timeout", str(timeout), "--node-timeout", "30")
    assert stopped.returncode != 0
    position = WORKERS.index(where)
    rest = ", ".join(WORKERS[position + 1 :])
    line = errors(stopped)
    assert len(line) == 1, stopped.stderr
    assert line[0].startswith(
        f"error: rollout stopped [{position + 1}/3]: the drain of {where} did not finish within {timeout} s: "
        f"evicting default/{pods['items'][0]['metadata']['name']} was refused: Cannot evict pod as it would "
        "violate the pod's disruption budget."
    ), line
    assert line[0].endswith(
        f"; {where} stays cordoned and was not restarted" + (f"; not restarted: {rest}" if rest else "")
    )
    assert live.stopped() == list(WORKERS[:position])  # the blocked worker never stopped
    assert live.cordoned()[where] is True

    # The budget relaxed, a rerun resumes: the cordon was the rollout's own, so it is lifted.
    status, body = live.kube.request(
        "PATCH",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/stuck",
        {"spec": {"maxUnavailable": 1}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    resumed = ok(live.ws.task("infra:apply", "--", *FAST)).stdout
    assert lines_of(resumed, where)[0] == "still cordoned by an earlier run", resumed
    assert live.cordoned() == dict.fromkeys(ROLES, False)
    assert sorted(live.stopped()) == sorted(WORKERS)


@pytest.mark.parametrize(
    "case", ["invalid", "directory", "unreachable", "refused", "wrong-ca", "node-missing"]
)
def test_cluster_errors_are_one_line_and_apply_nothing(live: Live, case: str) -> None:
    path = live.kubeconfig
    expect = {
        "invalid": f"error: {path}: line 2: not valid YAML (expected a kubeconfig)",
        "directory": f"error: {path}: not a regular file (expected a kubeconfig)",
        "unreachable": "error: cannot reach the Kubernetes API at https://127.0.0.1:{port} ({path}) "
        "to list the nodes: connection refused; nothing more was applied",
        "refused": "error: the Kubernetes API at {server} ({path}) refused the kubeconfig's "
        "credentials (401 Unauthorized) to list the nodes; nothing more was applied",
        "wrong-ca": "error: cannot reach the Kubernetes API at {server} ({path}) to list the nodes: "
        "the server's TLS certificate is not trusted by the kubeconfig's certificate-authority; nothing "
        "more was applied",
        "node-missing": "error: k8s-work-1: no Node named k8s-work-1 in the cluster at {server} (expected "
        "one Node per VM, named as in nodes.yaml); nothing was applied; is this the cluster's kubeconfig? "
        "(or pass --cluster-check off)",
    }[case]
    port = free_port()
    if case == "invalid":
        path.write_text("{ not: [yaml\n")
    elif case == "directory":
        path.unlink()
        path.mkdir()
    elif case == "unreachable":
        live.kube.write_kubeconfig(path, server=f"https://127.0.0.1:{port}")
    elif case == "refused":
        live.kube.write_kubeconfig(path, untrusted_client=True)
    elif case == "wrong-ca":
        live.kube.write_kubeconfig(path, wrong_ca=True)
    else:
        live.kubelets.set_missing("k8s-work-1")
    live.more_memory()
    ok(live.ws.task("infra:plan"))
    refused = live.ws.task("infra:apply", "--", *FAST)
    assert refused.returncode != 0, refused.stdout[-3000:]  # task: 201
    assert errors(refused) == [expect.format(port=port, server=live.kube.url, path=path)], refused.stderr
    assert "Traceback" not in refused.stderr
    assert live.stopped() == [] and live.cordoned_names() == []
    assert set(live.memory().values()) == {8192, 16384}
    key = next(
        u["user"]["client-key-data"] for u in yaml.safe_load(live.kube.kubeconfig.read_text())["users"]
    )
    assert key[:16] not in refused.stdout + refused.stderr
