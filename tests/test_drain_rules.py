"""Which pods a drain evicts (kubectl drain's rules, workflow/cluster/drain.py), and which
CD-ROM drives a move ejects (workflow/rollout/eject.py). The drain itself runs against
the real kube-apiserver in tests/tasks/test_tasks_cluster.py."""

from __future__ import annotations

from workflow.cluster.api import Pod
from workflow.cluster.drain import plan_drain
from workflow.rollout.eject import local_isos


def pod(
    name: str, *owners: str, mirror: bool = False, terminating: bool = False, finished: bool = False
) -> Pod:
    return Pod("default", name, f"uid-{name}", owners, mirror, terminating, finished)


def test_what_a_drain_evicts_and_leaves() -> None:
    plan = plan_drain(
        [
            pod("web-1", "ReplicaSet"),
            pod("db-0", "StatefulSet"),
            pod("exporter", "DaemonSet"),
            pod("exporter-2", "DaemonSet"),
            pod("kube-apiserver-cp", "Node", mirror=True),
            pod("bare"),
            pod("job-done", "Job", finished=True),
            pod("going", "ReplicaSet", terminating=True),
        ]
    )
    assert [p.name for p in plan.evict] == ["web-1", "db-0"]
    assert [p.name for p in plan.wait] == ["going"]
    assert plan.left == [
        "default/bare is managed by no controller: left on the node (it restarts with it)",
        "2 DaemonSet pods left on the node",
    ]


def test_an_empty_node() -> None:
    plan = plan_drain([])
    assert (plan.evict, plan.wait, plan.left) == ([], [], [])


def test_local_isos_are_the_cdrom_drives_holding_an_image() -> None:
    config = {
        "ide2": "local:iso/talos-1.12.0-ce4c980550dd.iso,media=cdrom",
        "ide0": "none,media=cdrom",
        "sata1": "cdrom,media=cdrom",
        "scsi0": "local-lvm:vm-8010-disk-0,size=64G",
        "scsi5": "nfs:iso/other.iso,media=cdrom,size=1M",
        "net0": "virtio=BC:24:11:00:00:10,bridge=vmbr0",
        "ide2x": "local:iso/x.iso,media=cdrom",
    }
    assert local_isos(config) == [
        ("ide2", "local:iso/talos-1.12.0-ce4c980550dd.iso"),
        ("scsi5", "nfs:iso/other.iso"),
    ]
