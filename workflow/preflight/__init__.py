"""The preflight: read-only checks of the Proxmox cluster against the config and the
state, before any change (`task infra:preflight`; also first thing in `infra:plan`,
`infra:apply`, `infra:apply-auto` and `infra:destroy`).

It reads the cluster in two rounds of parallel requests (workflow/proxmox/inventory.py),
so it takes about the same time for 6 nodes as for 100, then checks (report.CHECKS): the
token, the Proxmox version, the hosts, quorum, the token's privileges, the storages, the
bridge, the ownership of the state's VMs, free vm_ids and MACs, CPUs, and the Talos image
URLs. Each problem is one line: what, where, and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from config import InfraConfig, KeyLocator
from workflow.preflight import checks, ownership
from workflow.preflight.report import BLOCK, OK, SKIPPED, WARN, Finding, Report
from workflow.preflight.state import StackState
from workflow.proxmox.api import ProxmoxApi, ProxmoxError
from workflow.proxmox.inventory import Inventory, read_cluster, read_details

# Checks --skip-preflight leaves out. The ownership checks always run: they are what keeps
# the stack off VMs it does not own, and need nothing but the guest list.
# A node key and the cluster.yaml key its value defaults to.
CLUSTER_DEFAULTS = {
    "proxmox_disk_storage": "proxmox_disk_storage",
    "vm_cores": "proxmox_vm_{role}_defaults",
}
SKIPPABLE = ("version", "hosts", "quorum", "privileges", "storages", "bridges", "cpus", "images")


def run_preflight(
    config: InfraConfig,
    pull_state: Callable[[], StackState],
    api: ProxmoxApi,
    where: KeyLocator | None,
    let_go: Callable[[str], str],
    *,
    skip: bool = False,
    read_only: bool = False,
) -> Report:
    """The checks (report.CHECKS) for `config` against the cluster `api` reaches and the
    state (`pull_state()`, called once the API has answered: tofu's state pull runs
    meanwhile). `skip`: only the ownership checks; and for a `read_only` command (a plan),
    not even those when the API cannot be reached at all (an emergency, said as a warning)."""
    started = time.monotonic()
    report = Report(skipped=SKIPPABLE if skip else ())
    proxmox = config.proxmox
    if proxmox is None:
        return report
    inv = read_cluster(api)
    error = inv.errors.get("version") or inv.errors.get("guests")
    token = _token_finding(api, error)
    if token.level == BLOCK and skip and read_only and error is not None and error.status is None:
        token = Finding(
            "token",
            WARN,
            f"{token.text.split('; nothing was changed')[0]}: nothing was checked, not even which VMs "
            "are the stack's (--skip-preflight, a plan only: an apply refuses)",
        )
        report.extend([token])
        report.seconds = time.monotonic() - started
        return report
    report.extend([token])
    if token.level == BLOCK:
        report.seconds = time.monotonic() - started
        return report

    roles = {vm.name: vm.role for vm in config.vms}

    def node_key(name: str, key: str) -> str:
        """Where the node's value came from: its own key, or the cluster.yaml key it
        defaults to."""
        if where is None:
            return f"node {name}, {key}"
        fallback = CLUSTER_DEFAULTS.get(key, "").format(role=roles.get(name, "worker"))
        if fallback and not where.node_has(name, key):
            return where.cluster_key(fallback)
        return where.node_key(name, key)

    def cluster_key(key: str) -> str:
        return where.cluster_key(key) if where else key

    state = pull_state()
    intended = ownership.intents(config, state, inv)
    new_ids = [i.new_id for i in intended if i.new_id is not None and i.new_id not in inv.guests]
    downloads = [(iso.host or proxmox.node, iso.url) for iso in config.isos]
    state_hosts = [vm.host for vm in state.vms if vm.host]
    read_details(
        api,
        inv,
        hosts=checks.used_hosts(config) + state_hosts,
        downloads=[] if skip else downloads,
        ids_to_confirm=new_ids,
    )
    owned, own_ids = ownership.check_state(state, inv, let_go)
    found: list[Finding] = []
    if not skip:
        found += checks.check_version(inv)
        found += checks.check_hosts(
            config, inv, cluster_key("proxmox_nodes" if config.multi_host else "proxmox_node"), state_hosts
        )
        found += checks.check_quorum(inv)
        state_ids = [vm.vm_id for vm in state.vms if vm.vm_id is not None]
        found += checks.check_privileges(config, inv, intended, api.token_id, state_ids)
        found += checks.check_storages(
            config,
            inv,
            intended,
            cluster_key("proxmox_iso_storage"),
            node_key,
            _iso_bytes(config, state, inv),
        )
        found += checks.check_bridges(config, inv, cluster_key("proxmox_vm_advanced"))
    found += owned
    found += ownership.check_ids(intended, inv, node_key)
    found += ownership.check_macs(config, own_ids, inv, node_key)
    if not skip:
        found += checks.check_cpus(config, inv, node_key)
        found += checks.check_images(config, inv)
    report.extend(found)
    report.seconds = time.monotonic() - started
    return report


def _token_finding(api: ProxmoxApi, error: ProxmoxError | None) -> Finding:
    if error is None:
        return Finding("token", OK, f"the token {api.token_id} authenticates at {api.endpoint}")
    if error.status == 401:
        return Finding(
            "token",
            BLOCK,
            f"the Proxmox API at {api.endpoint} does not accept the token {api.token_id} ({error}); "
            "nothing was changed; check proxmox_api_token_id and proxmox_api_token_secret in "
            "cluster.yaml and run `task configure` (or create the token: `pveum user token add`)",
        )
    if error.message.startswith("TLS"):
        return Finding(
            "token",
            BLOCK,
            f"cannot reach the Proxmox API at {api.endpoint}: {error.message}; nothing was changed; "
            "for a self-signed certificate set proxmox_insecure: true",
        )
    return Finding(
        "token",
        BLOCK,
        f"cannot reach the Proxmox API at {api.endpoint} ({error}); nothing was changed; check "
        "proxmox_api_url and that this machine reaches it",
    )


def _iso_bytes(config: InfraConfig, state: StackState, inv: Inventory) -> dict[tuple[str, str], int]:
    """(host, ISO storage) -> bytes of the ISOs the apply downloads there (the size the
    host's query-url-metadata reported)."""
    if config.proxmox is None:
        return {}
    out: dict[tuple[str, str], int] = {}
    storage = config.proxmox.iso_storage
    for iso in config.isos:
        host = iso.host or config.proxmox.node
        if (host, f"{storage}:iso/{iso.file_name}") in state.isos:
            continue
        size = inv.url_metadata.get((host, iso.url), {}).get("size")
        if isinstance(size, int):
            out[(host, storage)] = out.get((host, storage), 0) + size
    return out


__all__ = ["SKIPPED", "Report", "run_preflight"]
