"""Several Proxmox hosts: the placement rule, its validation, the control-plane warnings,
and the ISO downloads per host (config/placement.py, config/loader.py)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from config import ConfigError, ConfigPaths, load_config
from config.placement import place
from config.schema import ClusterFile, NodeEntry
from tests.support import BASE_CLUSTER, EXAMPLES, SCHEMATIC_A, SCHEMATIC_B, ConfigDir, node

HOSTS = ["pve1", "pve2", "pve3"]


def entries(roles: str, pins: dict[int, str] | None = None) -> list[NodeEntry]:
    """`roles` like "ccwcw": c = controller, w = worker; `pins`: index -> proxmox_node."""
    pins = pins or {}
    out = []
    for i, role in enumerate(roles):
        extra = {"proxmox_node": pins[i]} if i in pins else {}
        out.append(NodeEntry.model_validate(node(f"n-{i}", i, controller=role == "c", **extra)))
    return out


def cluster(hosts: list[str] | None = HOSTS, **extra: Any) -> ClusterFile:
    return ClusterFile.model_validate({**BASE_CLUSTER, "proxmox_nodes": hosts, **extra})


# --- the rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "roles", "pins", "expected"),
    [
        pytest.param(None, "cccwww", {}, ["pve1"] * 6, id="no-list-all-on-proxmox_node"),
        pytest.param(HOSTS, "cccwww", {}, HOSTS + HOSTS, id="three-and-three-spread"),
        pytest.param(
            HOSTS, "cwcwcw", {}, ["pve1", "pve1", "pve2", "pve2", "pve3", "pve3"], id="roles-counted-apart"
        ),
        pytest.param(["a", "b"], "ccccc", {}, ["a", "b", "a", "b", "a"], id="wraps-around"),
        pytest.param(HOSTS, "ccc", {0: "pve3"}, ["pve3", "pve2", "pve3"], id="pinned-node-keeps-its-slot"),
        pytest.param(None, "cw", {1: "pve7"}, ["pve1", "pve7"], id="pin-without-list"),
        pytest.param(["solo"], "cccw", {}, ["solo"] * 4, id="one-host-list"),
    ],
)
def test_placement_rule(hosts: list[str] | None, roles: str, pins: dict, expected: list[str]) -> None:
    assert place(cluster(hosts), entries(roles, pins)) == expected


@pytest.mark.parametrize("host_count", [1, 2, 3, 4])
@pytest.mark.parametrize("roles", ["cccwww", "cwcwcwcw", "wwwwcccc", "ccccccc", "wcwwcwwwc"])
def test_appending_a_node_never_moves_an_existing_vm(host_count: int, roles: str) -> None:
    hosts = [f"h{i}" for i in range(host_count)]
    pins = {2: hosts[-1]}
    full = place(cluster(hosts), entries(roles, pins))
    for length in range(len(roles) + 1):
        assert place(cluster(hosts), entries(roles[:length], pins))[:length] == full[:length], length


@pytest.mark.parametrize("roles", ["cccwww", "cwcwcwcw", "ccccc"])
def test_pinning_a_node_where_it_runs_moves_nothing(roles: str) -> None:
    before = place(cluster(), entries(roles))
    for i, host in enumerate(before):
        assert place(cluster(), entries(roles, {i: host})) == before, i


def test_removing_a_node_shifts_only_later_nodes_of_its_role() -> None:
    """The documented cost of the rule: later auto-placed nodes of the same role move up
    one host; the other role and earlier nodes stay."""
    before = dict(zip(range(6), place(cluster(), entries("cccwww")), strict=True))
    remaining = [0, 2, 3, 4, 5]  # node 1 (a controller) removed
    after = dict(zip(remaining, place(cluster(), [entries("cccwww")[i] for i in remaining]), strict=True))
    moved = sorted(i for i in remaining if after[i] != before[i])
    assert moved == [2]


# --- through load_config: hosts, ISOs, output switches ----------------------------------


def load(d: ConfigDir, cluster_extra: dict[str, Any], nodes: list[dict[str, Any]]):
    d.write({**BASE_CLUSTER, **cluster_extra}, nodes)
    return load_config(ConfigPaths(d.cluster, d.nodes))


SPREAD_NODES = [
    node("cp-0", 0),
    node("cp-1", 1),
    node("cp-2", 2),
    node("w-0", 3, controller=False, schematic_id=SCHEMATIC_B),
    node("w-1", 4, controller=False, schematic_id=SCHEMATIC_B, secureboot=True),
    node("w-2", 5, controller=False, schematic_id=SCHEMATIC_B),
]


@pytest.mark.parametrize(
    ("cluster_extra", "isos"),
    [
        pytest.param(
            {"proxmox_nodes": HOSTS},
            [
                (SCHEMATIC_A[:12], False, "pve1", "talos_iso_ce4c980550dd"),
                (SCHEMATIC_A[:12], False, "pve2", "talos_iso_ce4c980550dd_on_pve2"),
                (SCHEMATIC_A[:12], False, "pve3", "talos_iso_ce4c980550dd_on_pve3"),
                (SCHEMATIC_B[:12], False, "pve1", "talos_iso_376567988ad3"),
                (SCHEMATIC_B[:12], False, "pve3", "talos_iso_376567988ad3_on_pve3"),
                (SCHEMATIC_B[:12], True, "pve2", "talos_iso_376567988ad3_secureboot_on_pve2"),
            ],
            id="per-host",
        ),
        pytest.param(
            {"proxmox_nodes": HOSTS, "proxmox_iso_storage_shared": True},
            [
                (SCHEMATIC_A[:12], False, "pve1", "talos_iso_ce4c980550dd"),
                (SCHEMATIC_B[:12], False, "pve1", "talos_iso_376567988ad3"),
                (SCHEMATIC_B[:12], True, "pve1", "talos_iso_376567988ad3_secureboot"),
            ],
            id="shared",
        ),
        pytest.param(
            {"proxmox_node": "pve0", "proxmox_nodes": ["pve2"], "proxmox_iso_storage_shared": True},
            [
                (SCHEMATIC_A[:12], False, "pve0", "talos_iso_ce4c980550dd"),
                (SCHEMATIC_B[:12], False, "pve0", "talos_iso_376567988ad3"),
                (SCHEMATIC_B[:12], True, "pve0", "talos_iso_376567988ad3_secureboot"),
            ],
            id="shared-downloaded-on-proxmox_node-outside-the-list",
        ),
    ],
)
def test_iso_downloads_per_host_unless_shared(
    config_dir: ConfigDir, cluster_extra: dict[str, Any], isos: list[tuple[str, bool, str, str]]
) -> None:
    config = load(config_dir, cluster_extra, SPREAD_NODES).config
    got = sorted((i.schematic_id[:12], i.secureboot, i.host, i.logical_id) for i in config.isos)
    assert got == sorted(isos)
    for vm in config.vms:  # every VM boots an ISO its own host has (or the shared one)
        assert vm.iso.host == (
            vm.host
            if not cluster_extra.get("proxmox_iso_storage_shared")
            else cluster_extra.get("proxmox_node", "pve1")
        )
        assert (vm.iso.schematic_id, vm.iso.secureboot) in {
            (n["schematic_id"], n.get("secureboot", False)) for n in SPREAD_NODES if n["name"] == vm.name
        }


@pytest.mark.parametrize(
    ("cluster_extra", "node_extra", "multi_host"),
    [
        pytest.param({}, {}, False, id="single-host"),
        pytest.param({"proxmox_nodes": ["pve1"]}, {}, True, id="one-host-list"),
        pytest.param({}, {"proxmox_node": "pve2"}, True, id="a-pinned-node"),
        pytest.param({}, {"proxmox_disk_storage": "nvme"}, False, id="disk-override-alone"),
    ],
)
def test_hosts_configured_switches_the_multi_host_output(
    config_dir: ConfigDir, cluster_extra: dict, node_extra: dict, multi_host: bool
) -> None:
    config = load(config_dir, cluster_extra, [node("cp-0", 0, **node_extra)]).config
    assert config.multi_host is multi_host


def test_per_node_disk_storage_overrides_the_cluster_default(config_dir: ConfigDir) -> None:
    config = load(config_dir, {}, [node("cp-0", 0, proxmox_disk_storage="nvme"), node("cp-1", 1)]).config
    assert [vm.disk_storage for vm in config.vms] == ["nvme", "local-lvm"]


# --- validation: one line each, FILE:LINE: key: what (expected ...) ------------------------


@pytest.mark.parametrize(
    ("cluster_extra", "nodes", "expected"),
    [
        pytest.param(
            {"proxmox_nodes": ["pve1", "pve2"]},
            [node("cp-0", 0, proxmox_node="pve22")],
            "{nodes}:8: nodes[0].proxmox_node: 'pve22' is not in proxmox_nodes (did you mean 'pve2'?)",
            id="not-listed-close",
        ),
        pytest.param(
            {"proxmox_nodes": ["pve1", "pve2"]},
            [node("cp-0", 0, proxmox_node="storage9")],
            "{nodes}:8: nodes[0].proxmox_node: 'storage9' is not in proxmox_nodes "
            "(expected one of: pve1, pve2)",
            id="not-listed-far",
        ),
        pytest.param(
            {"proxmox_nodes": ["pve1", "pve2", "pve1"]},
            [node("cp-0", 0)],
            "{cluster}:10: proxmox_nodes[2]: duplicate host pve1 (expected each host once; also proxmox_nodes[0])",
            id="duplicate-host",
        ),
        pytest.param(
            {"proxmox_nodes": []},
            [node("cp-0", 0)],
            "{cluster}:7: proxmox_nodes: a list is not valid (expected a non-empty list of Proxmox node "
            "names (letters, digits and '-'))",
            id="empty-list",
        ),
        pytest.param(
            {"proxmox_nodes": ["pve_1"]},
            [node("cp-0", 0)],
            "{cluster}:8: proxmox_nodes[0]: 'pve_1' is not valid (expected a non-empty list of Proxmox node "
            "names (letters, digits and '-'))",
            id="bad-host-in-list",
        ),
        pytest.param(
            {"proxmox_nodes": "pve1"},
            [node("cp-0", 0)],
            "{cluster}:7: proxmox_nodes: 'pve1' is not valid (expected a non-empty list of Proxmox node "
            "names (letters, digits and '-'))",
            id="not-a-list",
        ),
        pytest.param(
            {"proxmox_iso_storage_shared": "yes"},
            [node("cp-0", 0)],
            "{cluster}:7: proxmox_iso_storage_shared: 'yes' is not valid (expected true or false)",
            id="shared-not-a-boolean",
        ),
        pytest.param(
            {},
            [node("cp-0", 0, proxmox_node="pve 2")],
            "{nodes}:8: nodes[0].proxmox_node: 'pve 2' is not valid (expected a Proxmox node name "
            "(letters, digits and '-'))",
            id="bad-node-host",
        ),
        pytest.param(
            {},
            [node("cp-0", 0, proxmox_disk_storage="")],
            "{nodes}:8: nodes[0].proxmox_disk_storage: '' is not valid (expected a datastore id such as 'local-lvm' (a-z, 0-9, '.', '_', '-'))",
            id="empty-disk-storage",
        ),
        pytest.param(
            {},
            [node("cp-0", 0, proxmox_nod="pve2")],
            "{nodes}:8: nodes[0].proxmox_nod: unknown key (did you mean 'proxmox_node'?)",
            id="typo-in-node-key",
        ),
    ],
)
def test_placement_validation(
    config_dir: ConfigDir, cluster_extra: dict, nodes: list[dict], expected: str
) -> None:
    config_dir.write({**BASE_CLUSTER, **cluster_extra}, nodes)
    with pytest.raises(ConfigError) as info:
        load_config(ConfigPaths(config_dir.cluster, config_dir.nodes))
    assert [str(p) for p in info.value.problems] == [
        expected.format(nodes=config_dir.nodes, cluster=config_dir.cluster)
    ]


def test_main_reports_a_host_not_in_the_list_with_exit_2(config_dir: ConfigDir) -> None:
    config_dir.write(
        {**BASE_CLUSTER, "proxmox_nodes": ["pve1", "pve2"]}, [node("cp-0", 0, proxmox_node="pve3")]
    )
    proc = config_dir.run_main()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{config_dir.nodes}:8: nodes[0].proxmox_node: 'pve3' is not in proxmox_nodes "
        "(expected one of: pve1, pve2)",
        "1 problem found; nothing was written.",
    ]
    assert not config_dir.outdir.exists() or not any(config_dir.outdir.rglob("cdk.tf.json"))


# --- warnings: one line each, naming hosts and nodes ---------------------------------


def ctrl(i: int, host: str | None = None) -> dict[str, Any]:
    return node(f"cp-{i}", i, **({"proxmox_node": host} if host else {}))


def work(i: int, host: str | None = None) -> dict[str, Any]:
    return node(f"w-{i}", 10 + i, controller=False, **({"proxmox_node": host} if host else {}))


@pytest.mark.parametrize(
    ("cluster_extra", "nodes", "expected"),
    [
        pytest.param(
            {"proxmox_nodes": HOSTS}, [ctrl(0), ctrl(1), ctrl(2), work(0)], [], id="spread-no-warning"
        ),
        pytest.param({}, [ctrl(0), ctrl(1), ctrl(2), work(0)], [], id="single-host-no-warning"),
        pytest.param(
            {"proxmox_nodes": HOSTS},
            [ctrl(0), ctrl(1, "pve1"), ctrl(2), work(0)],
            [
                "{nodes}:1: nodes: warning: pve1 runs 2 of 3 controllers (cp-0, cp-1): losing pve1 loses "
                "etcd quorum (expected fewer than half of the controllers on any one host)"
            ],
            id="half-or-more-on-one-host",
        ),
        pytest.param(
            {"proxmox_nodes": ["pve1", "pve2"]},
            [ctrl(0), ctrl(1), ctrl(2)],
            [
                "{nodes}:1: nodes: warning: pve1 runs 2 of 3 controllers (cp-0, cp-2): losing pve1 loses "
                "etcd quorum (expected fewer than half of the controllers on any one host)"
            ],
            id="three-controllers-two-hosts",
        ),
        pytest.param(
            {},
            [ctrl(0), ctrl(1), ctrl(2), ctrl(3), work(0)],
            [
                "{nodes}:1: nodes: warning: 4 controllers (cp-0, cp-1, cp-2, cp-3) are an even number: etcd "
                "survives no more failures than with 3 (expected an odd number of controllers)"
            ],
            id="even-number",
        ),
        pytest.param(
            {"proxmox_nodes": HOSTS},
            [ctrl(0, "pve2"), ctrl(1, "pve2"), ctrl(2, "pve2"), work(0), work(1)],
            [
                "{cluster}:7: proxmox_nodes: warning: every controller (cp-0, cp-1, cp-2) runs on pve2 "
                "although proxmox_nodes lists pve1, pve2, pve3: losing pve2 stops the control plane "
                "(expected controllers spread over the hosts)"
            ],
            id="all-on-one-host-of-several",
        ),
        pytest.param(
            {"proxmox_nodes": ["pve1", "pve2"]},
            [ctrl(0), ctrl(1)],
            [
                "{nodes}:1: nodes: warning: pve1 runs 1 of 2 controllers (cp-0): losing pve1 loses etcd "
                "quorum (expected fewer than half of the controllers on any one host)",
                "{nodes}:1: nodes: warning: pve2 runs 1 of 2 controllers (cp-1): losing pve2 loses etcd "
                "quorum (expected fewer than half of the controllers on any one host)",
                "{nodes}:1: nodes: warning: 2 controllers (cp-0, cp-1) are an even number: etcd survives no "
                "more failures than with 1 (expected an odd number of controllers)",
            ],
            id="two-controllers-two-hosts",
        ),
    ],
)
def test_control_plane_warnings(
    config_dir: ConfigDir, cluster_extra: dict, nodes: list[dict], expected: list[str]
) -> None:
    result = load(config_dir, cluster_extra, nodes)
    want = [line.format(nodes=config_dir.nodes, cluster=config_dir.cluster) for line in expected]
    assert [str(w) for w in result.warnings] == want


def test_warnings_reach_stderr_and_the_output_is_still_written(config_dir: ConfigDir) -> None:
    config_dir.write({**BASE_CLUSTER, "proxmox_nodes": HOSTS}, [ctrl(0, "pve1"), ctrl(1, "pve1"), ctrl(2)])
    proc = config_dir.run_main()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{config_dir.nodes}:1: nodes: warning: pve1 runs 2 of 3 controllers (cp-0, cp-1): losing pve1 loses "
        "etcd quorum (expected fewer than half of the controllers on any one host)"
    ]
    assert "VMs per host:\n  pve1:  cp-0, cp-1\n  pve3:  cp-2\n" in proc.stdout
    assert (config_dir.outdir / "stacks" / "proxmox" / "cdk.tf.json").exists()


@pytest.mark.parametrize("host_count", [1, 2, 3, 4])
def test_appending_never_moves_for_every_role_pattern_of_six(host_count: int) -> None:
    hosts = [f"h{i}" for i in range(host_count)]
    for pattern in itertools.product("cw", repeat=6):
        roles = "".join(pattern)
        full = place(cluster(hosts), entries(roles))
        for length in range(7):
            assert place(cluster(hosts), entries(roles[:length])) == full[:length], roles


def test_multi_host_example_places_as_its_comments_say(config_dir: ConfigDir) -> None:
    example = EXAMPLES / "multi-host"
    config_dir.write(example.joinpath("cluster.yaml").read_text(), example.joinpath("nodes.yaml").read_text())
    result = load_config(ConfigPaths(config_dir.cluster, config_dir.nodes))
    assert result.warnings == []
    assert {vm.name: (vm.host, vm.disk_storage) for vm in result.config.vms} == {
        "k8s-ctrl-0": ("pve1", "local-lvm"),
        "k8s-ctrl-1": ("pve2", "local-lvm"),
        "k8s-ctrl-2": ("pve3", "local-lvm"),
        "k8s-work-0": ("pve1", "local-lvm"),
        "k8s-work-1": ("pve2", "local-lvm"),
        "k8s-work-2": ("pve3", "nvme"),
    }
