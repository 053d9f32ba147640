"""fakepve (PyPI, AGPL, a test-only dependency) served on 127.0.0.1 with an API token.

    with FakePveServer() as pve:
        env["PROXMOX_VE_API_TOKEN"] = pve.api_token   # user@realm!tokenid=secret
        ... tofu apply against pve.url (insecure: the certificate is self-signed) ...
        vms = pve.call(lambda p: [vm.config for vm in p.vms])

The fake runs on its own asyncio loop in a daemon thread of this process; `call` runs
a function on that loop, so reading or changing the fake's state (faults included) never
races with a request in flight. The token secret is random per server and only ever
passed to child processes through their environment.

Where fakepve 0.5.0 differs from Proxmox VE in ways the bpg provider notices, the
`HarnessPve` subclass below fills the gap (each is a documented workaround, not a
change of what is being tested):

- A VM created through the API has no guest agent (`vm.agent is None`), so the agent
  answers "QEMU guest agent is not running" for ever and the provider, whose `agent`
  is enabled as a real Talos VM wants it, waits its whole `agent.timeout` (15 min).
  Here a running VM whose config enables the agent gets one, as a booted Talos with the
  qemu-guest-agent extension has: it reports an interface with the VM's own MAC and
  the address the harness was told for that MAC (`guest_addresses`).
- A path with a trailing slash misses fakepve's stateful routes and falls to its
  schema-driven catch-all, which answers with a plausible result and stores nothing.
  The provider deletes a VM with `DELETE /nodes/{node}/qemu/{vmid}/` (real PVE ignores
  the slash), so fakepve reported the deletion as done, kept the VM, and the provider
  polled for it to disappear until its timeout. Here such a request goes to the same
  handler as the path without the slash.
- Destroying a VM frees every volume its drives name, the ISO in its CD-ROM drive
  included, so removing one node deleted the Talos ISO the other nodes still use and the
  next plan replaced it. Proxmox frees only the VM's own disk images; so does this.
- `GET /nodes/{node}/query-url-metadata` answers `{}`; the provider then sees a
  remote file of unknown size on every refresh. Here it answers the file name, the
  1 MiB size fakepve's downloads have, and an ISO MIME type.
- Several hosts: storage content per host, the HA status and the migrate route the
  provider needs to move a VM (devenv/fakepve_hosts.py).
- Hosts as users have them: fakepve reports 4 CPUs per host (`GET /nodes`), 100 GiB of
  `local-lvm` and, from its schema, one bridge `vmbr0` on every host. Here each host has
  `host_cpus` CPUs (default 32), `local-lvm` holds 4 TiB, and `host_bridges` lists each
  host's bridges (default `vmbr0`), so the preflight's checks meet a plausible host and
  a test can make one smaller.
- The API token is not root's: `terraform@pve!e2e`, holding on `/` exactly the role the
  getting-started guide tells users to create (workflow.proxmox.privileges.DOCUMENTED_ROLE),
  so fakepve's permission checks (on as soon as an ACL exists) apply to every request the
  provider and the workflow make. `FakePveServer(token_role=None)` gives a root token.
  `privilege_checks` records each check made for the token (privilege, path, allowed).

For the rolling apply's tests (see `power_log`, `boot_secs`, `talos_addresses`):

- Every VM's power state is recorded over time, from the fake's side: each change of
  `vm.status` is appended to `power_log` as (monotonic time, vmid, name, status).
- A reboot, shutdown or start takes no time in fakepve by default, so a stop and start
  leave no window in which two VMs could be seen down together. `boot_secs` sets the
  simulated seconds a VM takes to shut down and to start (times `time_scale`).
- A stopped VM's guest agent is gone until the VM runs again (fakepve keeps answering).
- `power_listeners` are told (VM name, status) of every change, e.g. devenv/kube/kubelets.py's
  simulated kubelets, which keep Kubernetes Nodes in step; `request_listeners` are told
  (method, path) of every request before it is answered, for a fault that must start at
  a precise moment.
- A node's Talos API: a listening TCP socket on the node's address (`talos_addresses`,
  MAC -> a loopback address) and port 50000 while its VM runs; a name in `talos_down`
  keeps it closed, as a node that does not come back after a restart. The guest agent
  keeps reporting `guest_addresses`: the provider waits for a non-loopback address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from fakepve import FakePve
from fakepve.certs import make_cert
from fakepve.model import FakeVm
from fakepve.server import GENERIC, USER, ok, params

from devenv.fakepve_hosts import SeveralHosts
from workflow.proxmox.privileges import DOCUMENTED_ROLE

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
CALL_TIMEOUT = 60.0
# fakepve's download-url stores a file of this size unless the request says otherwise.
FAKE_DOWNLOAD_SIZE = 1024**2
TOKEN_USER = "terraform@pve"
TOKEN_NAME = "e2e"
HOST_CPUS = 32
LOCAL_LVM_BYTES = 4 * 1024**4
TALOS_PORT = 50000

T = TypeVar("T")


def _agent_enabled(value: Any) -> bool:
    """PVE's `agent` option: `1`, `enabled=1,...` or `1,fstrim_cloned_disks=1`."""
    first = str(value or "0").split(",")[0]
    return first.split("=")[-1] in ("1", "true", "on", "yes")


def _net_mac(value: Any) -> str | None:
    """The MAC of a `net0` value: `virtio=BC:24:11:00:00:10,bridge=vmbr0,...`."""
    for part in str(value).split(","):
        key, _, val = part.partition("=")
        if key == "macaddr" or (len(val) == 17 and val.count(":") == 5 and key != "bridge"):
            return val
    return None


class RecordedVm(FakeVm):  # type: ignore[misc]
    """A FakeVm whose every power state change reaches its HarnessPve."""

    harness: HarnessPve

    @property  # type: ignore[override]
    def status(self) -> str:
        return str(self.__dict__["_status"])

    @status.setter
    def status(self, value: str) -> None:
        old = self.__dict__.get("_status")
        self.__dict__["_status"] = value
        if old != value:
            self.harness.power_changed(self, value)


class RecordedVms(list):  # type: ignore[type-arg]
    """pve.vms: every VM added (created, cloned) becomes a RecordedVm."""

    def __init__(self, harness: HarnessPve) -> None:
        super().__init__()
        self.harness = harness

    def append(self, vm: Any) -> None:
        status = vm.__dict__.pop("status", "stopped")
        vm.__class__ = RecordedVm
        vm.harness = self.harness
        vm.__dict__["_status"] = None
        vm.status = status  # recorded
        vm.start_secs = vm.shutdown_secs = self.harness.boot_secs
        super().append(vm)


class HarnessPve(SeveralHosts, FakePve):  # type: ignore[misc]
    """FakePve with the gaps above filled (see the module docstring), and several hosts
    (devenv/fakepve_hosts.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lower-case MAC -> IPv4 address the simulated guest agent reports.
        self.guest_addresses: dict[str, str] = {}
        # False: behave as fakepve does (no agent on new VMs), to test the provider's wait.
        self.simulate_agent = True
        # (time.monotonic(), vmid, name, status) of every power state change.
        self.power_log: list[tuple[float, int, str, str]] = []
        # Simulated seconds of a VM's shutdown and of its start (each).
        self.boot_secs = 0.0
        # Lower-case MAC -> loopback address of the node's fake Talos API (port 50000);
        # names in talos_down keep theirs closed.
        self.talos_addresses: dict[str, str] = {}
        self.talos_down: set[str] = set()
        # Fake Talos APIs that could not listen (the address in use): a reason for a test.
        self.talos_errors: list[str] = []
        self._talos_sockets: dict[int, socket.socket] = {}
        # Per host (default HOST_CPUS, and vmbr0): what GET /nodes and /nodes/{node}/network say.
        self.host_cpus: dict[str, int] = {}
        self.host_bridges: dict[str, list[str]] = {}
        self.storages["local-lvm"]["total"] = LOCAL_LVM_BYTES
        # Called with (VM name, status) after every power state change, on the fake's
        # loop: a listener must return at once (queue the event) and not raise.
        self.power_listeners: list[Callable[[str, str], None]] = []
        # Called with (method, path) before each request is answered, on the fake's loop: a
        # test's fault can start at a precise request (the n-th cluster status read, ...).
        self.request_listeners: list[Callable[[str, str], None]] = []
        # (privilege, ACL path) of every permission check Proxmox's rules made, allowed or
        # not: what a token really needs for what a test did.
        self.privilege_checks: list[tuple[str, str, bool]] = []
        self.vms = RecordedVms(self)

    def allowed(self, user: str, path: str, priv: str) -> bool:
        result = bool(super().allowed(user, path, priv))
        if user.split("!")[0] != "root@pam":
            self.privilege_checks.append((priv, path, result))
        return result

    # ------------------------------------------------------------ power and Talos

    def power_changed(self, vm: Any, status: str) -> None:
        name = str(vm.config.get("name") or vm.name)
        self.power_log.append((time.monotonic(), vm.vmid, name, status))
        if status != "running":
            vm.agent = None  # the guest (and its agent) is down
        self._sync_talos(vm)
        for listener in list(self.power_listeners):
            listener(name, status)

    def set_talos_down(self, name: str, down: bool) -> None:
        (self.talos_down.add if down else self.talos_down.discard)(name)
        for vm in self.vms:
            self._sync_talos(vm)

    def close_talos(self) -> None:
        for sock in self._talos_sockets.values():
            sock.close()
        self._talos_sockets.clear()

    def _talos_address(self, vm: Any) -> str | None:
        for key in sorted(k for k in vm.config if k.startswith("net") and k[3:].isdigit()):
            address = self.talos_addresses.get((_net_mac(vm.config[key]) or "").lower())
            if address:
                return address
        return None

    def _sync_talos(self, vm: Any) -> None:
        name = str(vm.config.get("name") or vm.name)
        up = vm.status == "running" and name not in self.talos_down and vm in self.vms
        sock = self._talos_sockets.get(vm.vmid)
        if up and sock is None:
            address = self._talos_address(vm)
            if address is None:
                return
            if not ipaddress.ip_address(address).is_loopback:
                raise ValueError(f"the fake Talos API listens on loopback only, not {address}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, TALOS_PORT))
            except OSError as exc:
                # Raised from a power change, it would end fakepve's task without an end
                # (the provider then waits for ever): the node stays down, and says why.
                sock.close()
                self.talos_errors.append(f"{name}: cannot listen on {address}:{TALOS_PORT}: {exc}")
                return
            sock.listen(16)  # the kernel completes connections; nothing is read
            self._talos_sockets[vm.vmid] = sock
        elif not up and sock is not None:
            sock.close()
            del self._talos_sockets[vm.vmid]

    async def _answer(self, request: Any, handler: Any, generic: Any, path_node: str | None) -> Any:
        for listener in list(self.request_listeners):
            listener(request.method, request.path)
        return await super()._answer(request, handler, generic, path_node)

    async def _generic(self, request: Any) -> Any:
        match = request[GENERIC]
        if match is not None and request.path.endswith("/"):
            handler = self._stateful_handlers().get((request.method, match.template))
            if handler is not None:
                user = request[USER]

                async def call(_match: Any, values: dict[str, Any]) -> Any:
                    return await handler(values, user)

                return ok(await self.answer(request, match, await params(request), user, call))
        return await super()._generic(request)

    def _stateful_handlers(self) -> dict[tuple[str, str], Callable[..., Any]]:
        """(method, schema template) -> handler of every `_routes_*` table."""
        table = {}
        for name in dir(self):
            if name.startswith("_routes_") and name != "_routes_harness":
                for method, template, handler in getattr(self, name)():
                    table[(method, template)] = handler
        return table

    def _qm_free(self, volid: str) -> None:
        volume = self._qm_volume(volid)
        if volume is not None and volume.get("content") not in ("images", "rootdir"):
            return  # an ISO or template the VM only referenced: not the VM's to free
        super()._qm_free(volid)

    def _routes_harness(self) -> list[tuple[str, str, Callable[..., Any]]]:
        # Registered by fakepve's StatefulRoutes (every `_routes_*` method), ahead of the
        # schema's catch-all handler.
        return [
            ("GET", "/nodes/{node}/query-url-metadata", self._url_metadata),
            ("GET", "/nodes/{node}/network", self._network),
        ]

    async def _network(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for bridge in self.host_bridges.get(str(values["node"]), ["vmbr0"]):
            out.append(
                {
                    "iface": bridge,
                    "type": "bridge",
                    "active": 1,
                    "autostart": 1,
                    "exists": 1,
                    "method": "manual",
                    "method6": "manual",
                    "families": ["inet"],
                    "priority": 3,
                }
            )
        return out

    async def _nodes(self, request: Any) -> Any:
        response = await super()._nodes(request)
        data = json.loads(response.text)
        for item in data.get("data") or []:
            if item.get("maxcpu"):
                item["maxcpu"] = self.host_cpus.get(item["node"], HOST_CPUS)
        return web.json_response(data)

    async def _url_metadata(self, values: dict[str, Any], user: str) -> dict[str, Any]:
        name = Path(urllib.parse.urlsplit(str(values.get("url", ""))).path).name or "download"
        return {"filename": name, "size": FAKE_DOWNLOAD_SIZE, "mimetype": "application/x-iso9660-image"}

    async def _agent_call(self, match: Any, values: dict[str, Any]) -> Any:
        vm = self.vm(int(values["vmid"]))
        if (
            self.simulate_agent
            and vm is not None
            and vm.agent is None
            and vm.status == "running"
            and _agent_enabled(vm.config.get("agent"))
        ):
            vm.agent = {"interfaces": self._interfaces(vm)}
        return await super()._agent_call(match, values)

    def _interfaces(self, vm: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "name": "lo",
                "hardware-address": "00:00:00:00:00:00",
                "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}],
            }
        ]
        for key in sorted(k for k in vm.config if k.startswith("net") and k[3:].isdigit()):
            mac = (_net_mac(vm.config[key]) or "").lower()
            if not mac:
                continue
            address = self.guest_addresses.get(mac) or str(
                ipaddress.IPv4Address("192.0.2.0") + (vm.vmid % 250) + 1
            )
            out.append(
                {
                    "name": f"eth{key[3:]}",
                    "hardware-address": mac,
                    "ip-addresses": [{"ip-address": address, "ip-address-type": "ipv4", "prefix": 24}],
                }
            )
        return out


class FakePveServer:
    """A HarnessPve listening on https://127.0.0.1:<free port>, token registered.

    time_scale 0 (the default) finishes every PVE task before its request returns; a
    positive value makes fakepve's simulated durations (shutdowns, lock waits) real
    seconds times the scale.
    """

    def __init__(
        self,
        *,
        time_scale: float = 0.0,
        host: str = HOST,
        token_role: tuple[str, ...] | None = DOCUMENTED_ROLE,
    ) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="devenv-fakepve-"))
        self.certfile, keyfile, _ = make_cert(str(self._tmp), hosts=(host,))
        self.pve = HarnessPve(user="root@pam", password=secrets.token_urlsafe(16), host=host, port=0)
        self.pve.time_scale = time_scale
        user = TOKEN_USER if token_role is not None else "root@pam"
        self.token_id = f"{user}!{TOKEN_NAME}"
        # A prefix: a secret starting `0b` or all digits would need quoting in cluster.yaml.
        self._token_secret = "pve-" + secrets.token_hex(16)
        self.pve.apitokens[self.token_id] = self._token_secret
        if token_role is not None:
            # The token's user holds the role on / (propagated), as the guide's
            # `pveum aclmod / -user terraform@pve -role TerraformProv` gives it.
            self.pve.grant(user, "/", *token_role)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="devenv-fakepve", daemon=True)
        self._started = False
        try:
            self._thread.start()
            self._await(self.pve.start(self.certfile, keyfile), START_TIMEOUT)
            self._started = True
        except BaseException:
            self.stop()
            raise
        finally:
            # The key is loaded into the server; nothing else needs it.
            Path(keyfile).unlink(missing_ok=True)

    # ------------------------------------------------------------------ access

    @property
    def url(self) -> str:
        """https://127.0.0.1:<port>, the provider's `endpoint`."""
        return str(self.pve.url)

    @property
    def api_token(self) -> str:
        """`user@realm!tokenid=secret`, for PROXMOX_VE_API_TOKEN (environment only)."""
        return f"{self.token_id}={self._token_secret}"

    @property
    def token_secret(self) -> str:
        return self._token_secret

    def call(self, fn: Callable[[HarnessPve], T], timeout: float = CALL_TIMEOUT) -> T:
        """fn(pve) on the server's loop: a consistent view, no race with requests."""

        async def run() -> T:
            return fn(self.pve)

        return self._await(run(), timeout)

    def run(self, coro_fn: Callable[[HarnessPve], Any], timeout: float = CALL_TIMEOUT) -> Any:
        """Await coro_fn(pve) on the server's loop (fakepve's async scenarios)."""

        async def run() -> Any:
            return await coro_fn(self.pve)

        return self._await(run(), timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once the server answers /version with the token (it does once started)."""
        import json
        import ssl
        import time
        import urllib.request

        ctx = ssl.create_default_context(cafile=self.certfile)
        request = urllib.request.Request(
            f"{self.url}/api2/json/version", headers={"Authorization": f"PVEAPIToken={self.api_token}"}
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, context=ctx, timeout=5) as response:
                    json.load(response)
                    return
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"fakepve at {self.url} did not answer within {timeout} s: {last}")

    # -------------------------------------------------------------- lifecycle

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _await(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"fakepve call did not finish within {timeout} s") from None

    def stop(self) -> None:
        """Stop listening, stop the loop's thread, remove the certificate files."""
        try:
            self.pve.close_talos()
            if self._started:
                self._started = False
                self._await(self.pve.stop(), START_TIMEOUT)
        finally:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(START_TIMEOUT)
            if not self._thread.is_alive() and not self._loop.is_closed():
                self._loop.close()
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FakePveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
