"""The harness's several-hosts additions to fakepve (devenv/fakepve_hosts.py), over HTTP on
loopback as the provider uses them: storage content per host, the HA status, migration
and Proxmox's refusals."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devenv.fakepve import FakePveServer

ISO = "talos.iso"


@pytest.fixture(scope="module")
def pve() -> Iterator[FakePveServer]:
    srv = FakePveServer()
    try:
        srv.wait_ready()
        srv.call(lambda p: [p.add_host(h) for h in ("pve2", "pve3")])
        yield srv
    finally:
        srv.stop()


def api(pve: FakePveServer, method: str, path: str, **params: Any) -> tuple[int, Any]:
    """(status, data or message) of one API request with the token."""
    body = urllib.parse.urlencode(params).encode() if params else None
    request = urllib.request.Request(
        f"{pve.url}/api2/json{path}",
        data=body,
        method=method,
        headers={"Authorization": f"PVEAPIToken={pve.api_token}"},
    )
    ctx = ssl.create_default_context(cafile=pve.certfile)
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=30) as response:
            return response.status, json.load(response)["data"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc).get("message", "").strip()


def task_status(pve: FakePveServer, upid: str) -> str:
    return pve.call(lambda p: p.tasks[upid]["exitstatus"])


def new_vm(pve: FakePveServer, vmid: int, host: str) -> None:
    status, upid = api(
        pve,
        "POST",
        f"/nodes/{host}/qemu",
        vmid=vmid,
        name=f"vm{vmid}",
        scsi0="local-lvm:4",
        ide2=f"local:iso/{ISO},media=cdrom",
    )
    assert status == 200 and task_status(pve, upid) == "OK"


def test_iso_content_is_per_host_and_shared_storage_is_common(pve: FakePveServer) -> None:
    status, _ = api(
        pve,
        "POST",
        "/nodes/pve2/storage/local/download-url",
        content="iso",
        filename=ISO,
        url="https://x/t.iso",
    )
    assert status == 200
    files = pve.call(lambda p: p.iso_files())
    assert files["pve2"]["local"] == {ISO}
    assert files["pve1"]["local"] == set() and files["pve3"]["local"] == set()
    listed = {h: api(pve, "GET", f"/nodes/{h}/storage/local/content")[1] for h in ("pve1", "pve2")}
    assert [v["volid"] for v in listed["pve2"]] == [f"local:iso/{ISO}"] and listed["pve1"] == []
    # A storage every host mounts is one storage.
    pve.call(
        lambda p: p.storages.update(shared={"type": "dir", "path": "/mnt/s", "shared": 1, "content": "iso"})
    )
    assert pve.call(lambda p: p.storages_on("pve3")["shared"] is p.storages_on("pve1")["shared"])


def test_a_vm_needs_its_iso_on_its_own_host(pve: FakePveServer) -> None:
    # pve3 never downloaded it: the create task fails, as on Proxmox.
    status, upid = api(pve, "POST", "/nodes/pve3/qemu", vmid=310, ide2=f"local:iso/{ISO},media=cdrom")
    assert status == 200
    assert task_status(pve, upid) == f"unable to create VM 310 - volume local:iso/{ISO} does not exist"
    assert pve.call(lambda p: p.vm(310)) is None


def test_ha_status_answers_no_such_resource_unless_managed(pve: FakePveServer) -> None:
    new_vm(pve, 201, "pve2")
    assert api(pve, "GET", "/cluster/ha/resources/vm:201") == (500, "no such resource 'vm:201'")
    pve.call(lambda p: setattr(p.vm(201), "ha_state", "started"))
    status, data = api(pve, "GET", "/cluster/ha/resources/vm:201")
    assert status == 200 and (data["sid"], data["state"]) == ("vm:201", "started")
    pve.call(lambda p: setattr(p.vm(201), "ha_state", None))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"target": "pve2"}, "target is local node.", id="same-host"),
        pytest.param({"target": "pve9"}, "no such cluster node 'pve9'", id="unknown-host"),
    ],
)
def test_migrate_refuses_a_bad_target(pve: FakePveServer, params: dict, message: str) -> None:
    new_vm(pve, 202 if params["target"] == "pve2" else 203, "pve2")
    vmid = 202 if params["target"] == "pve2" else 203
    assert api(pve, "POST", f"/nodes/pve2/qemu/{vmid}/migrate", **params) == (500, message)


def test_migrate_refuses_a_local_iso_then_moves_vm_and_disks(pve: FakePveServer) -> None:
    new_vm(pve, 204, "pve2")
    status, upid = api(pve, "POST", "/nodes/pve2/qemu/204/migrate", target="pve3", online=1)
    assert status == 200 and task_status(pve, upid) == "migration aborted"
    log = pve.call(lambda p: p.tasks[upid]["log"])
    assert f"can't migrate local disk 'local:iso/{ISO}': local cdrom image" in log
    assert pve.call(lambda p: p.vm(204).node) == "pve2"

    pve.call(lambda p: p.vm(204).config.update(ide2="none,media=cdrom"))  # qm set --ide2 none
    status, upid = api(pve, "POST", "/nodes/pve2/qemu/204/migrate", target="pve3", online=1)
    assert status == 200 and task_status(pve, upid) == "OK"
    assert pve.call(lambda p: p.vm(204).node) == "pve3"
    volumes = pve.call(lambda p: {h: set(p.storages_on(h)["local-lvm"]["volumes"]) for h in ("pve2", "pve3")})
    assert "vm-204-disk-0" in volumes["pve3"] and "vm-204-disk-0" not in volumes["pve2"]
    # Its config is now read on pve3, and no longer on pve2.
    assert api(pve, "GET", "/nodes/pve3/qemu/204/config")[0] == 200
    assert api(pve, "GET", "/nodes/pve2/qemu/204/config")[0] == 500
