"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, supervised as child processes.

    with KubeControlPlane(tmp / "kube") as cp:
        cp.request("GET", "/api/v1/nodes")       # as the admin
        ... the code under test reads cp.kubeconfig (an admin kubeconfig as Talos writes one) ...

The binaries come from `scripts/setup-tools --kube` (built from the k8s.io/kubernetes and
etcd Go modules, cached outside the repository), found through `workflow.setup_tools.ensure_tools`.
Every port is a free one on 127.0.0.1 (a start that loses a port race is retried), etcd
keeps its data in the work directory without fsync, and certificates are made per run
(devenv/kube/certificates.py). The API server runs as controller-runtime's envtest runs
it (RBAC, client certificates, the ServiceAccount admission plugin off: no pod needs a
token). The controller manager runs only the controllers a drain meets (CONTROLLERS),
each with its own service-account credentials as kubeadm runs it; neither it nor the
scheduler elects a leader. No taint-eviction controller runs: a Node's NoExecute taints
(added while it is down) never evict a pod, as pods tolerate them for 300 s anyway.
"""

from __future__ import annotations

import atexit
import http.client
import shutil
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from devenv.kube.certificates import ControlPlaneCertificates
from devenv.kube.client import HOST, ApiClient
from devenv.kube.errors import KubeError, PortTaken
from devenv.kube.kubeconfig import CLUSTER_NAME, write_kubeconfig
from devenv.kube.process import ChildProcess, child_env
from devenv.ports import free_ports
from workflow.setup_tools import Tools, ensure_tools

KUBERNETES_VERSION = "v1.34.2"
ADMIN_USER = f"admin@{CLUSTER_NAME}"
SERVICE_CIDR = "10.0.0.0/24"  # stored in Services only; nothing routes to it
START_ATTEMPTS = 3  # a free port taken by someone else between choosing it and binding it
START_TIMEOUT = 120.0  # per attempt; about 10 s on a quiet 2-core machine
STOP_TIMEOUT = 10.0  # the API server's graceful stop (about 1 s), then SIGKILL
# etcd stopped during its start waits for its own election for seconds; its data is
# thrown away (it never fsyncs either), so it gets little time. The controller manager
# and the scheduler keep no state at all.
ETCD_STOP_TIMEOUT = 2.0
COMPONENT_STOP_TIMEOUT = 3.0
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# What a drain meets: ReplicaSets and DaemonSets kept at size, PodDisruptionBudget status
# (the Eviction API decides on it), dependents deleted with their owner, the Node taints
# that follow Ready and the cordon; service-account tokens for the controllers themselves.
CONTROLLERS = (
    "serviceaccount-token-controller",
    "replicaset-controller",
    "daemonset-controller",
    "disruption-controller",
    "garbage-collector-controller",
    "node-lifecycle-controller",
)
# How often the node lifecycle controller looks at the Nodes (default 5 s): the NoExecute
# taint of a stopped node follows within this. Its grace period stays the default 50 s: the
# simulated kubelets report a stopped VM's Node themselves at once and heartbeat every 5 s.
NODE_MONITOR_PERIOD = "500ms"
# Nodes per second it may put a NoExecute taint on (default 0.1: one node every 10 s after
# the first). Those taints evict nothing here (no taint-eviction controller), so they can
# follow every stopped node at once, as the tests of several nodes going down expect.
NODE_TAINT_RATE = "100"

_tools_lock = threading.Lock()
_tools: Tools | None = None


def _kube_tools(log: Path) -> Tools:
    """setup-tools --kube, once per process (it is idempotent, but not free)."""
    global _tools
    with _tools_lock:
        if _tools is None:
            _tools = ensure_tools("--kube", log=log)
        return _tools


class KubeControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback, an
    admin kubeconfig, admin requests.

    A context manager: `start()` returns once the API server's `/readyz` and the two
    components' `/healthz` answer ok (bounded), `stop()` stops every process whatever
    happened. Logs: <binary>.log in the work directory (their tails are in every start
    failure).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.url = ""
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.startup_seconds = 0.0  # of the last start(), setup-tools included
        self._certs: ControlPlaneCertificates | None = None
        self._processes: list[ChildProcess] = []
        self._client: ApiClient | None = None
        self._ctx: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> KubeControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._processes:
            return
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            env = child_env(_kube_tools(self.workdir / "setup-tools.log"))
            binaries = {}
            for name in BINARIES:
                found = shutil.which(name, path=env.get("PATH", ""))
                if not found:
                    raise KubeError(
                        f"scripts/setup-tools --kube succeeded but no `{name}` is on the PATH it printed"
                    )
                binaries[name] = found
            if self._certs is None:
                self._certs = ControlPlaneCertificates.create(self.workdir / "pki")
            atexit.register(self.stop)
            failures = []
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self._start_once(attempt, binaries, env)
                    break
                except PortTaken as exc:
                    self._kill()
                    failures.append(str(exc))
            else:
                raise KubeError(
                    f"the control plane did not start in {START_ATTEMPTS} attempts (ports taken):\n"
                    + "\n".join(failures)
                )
            self.write_kubeconfig(self.kubeconfig)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _start_once(self, attempt: int, binaries: dict[str, str], env: dict[str, str]) -> None:
        certs = self._certs
        assert certs is not None
        # The API server's port last: the port-race test takes that one.
        client, peer, kcm_port, scheduler_port, secure = free_ports(5)
        self.url = f"https://{HOST}:{secure}"
        self._client = ApiClient(self.url, self._context())
        etcd_url = self._start_etcd(attempt, binaries["etcd"], client, peer, env)
        self._spawn("kube-apiserver", self._apiserver_argv(binaries["kube-apiserver"], etcd_url, secure), env)
        self._wait_healthy({"kube-apiserver": (self._client, "/readyz")})
        components = {}
        for name, port, argv in (
            ("kube-controller-manager", kcm_port, self._controller_manager_argv),
            ("kube-scheduler", scheduler_port, self._scheduler_argv),
        ):
            kubeconfig = write_kubeconfig(
                self.workdir / f"{name}.kubeconfig",
                server=self.url,
                ca=certs.ca,
                client=certs.clients[name],
                user=f"system:{name}",
            )
            self._spawn(name, [binaries[name], *self._serving_args(name, port, kubeconfig), *argv()], env)
            components[name] = (ApiClient(f"https://{HOST}:{port}", self._context()), "/healthz")
        self._wait_healthy(components)

    def _start_etcd(self, attempt: int, binary: str, client: int, peer: int, env: dict[str, str]) -> str:
        data = self.workdir / f"etcd-data-{attempt}"
        shutil.rmtree(data, ignore_errors=True)
        etcd_url = f"http://{HOST}:{client}"
        peer_url = f"http://{HOST}:{peer}"
        argv = [
            binary,
            "--name=harness",
            f"--data-dir={data}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=harness={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        self._spawn("etcd", argv, env, ETCD_STOP_TIMEOUT)
        return etcd_url

    def _apiserver_argv(self, binary: str, etcd_url: str, secure: int) -> list[str]:
        assert self._certs is not None
        pki = self._certs.path
        return [
            binary,
            f"--advertise-address={HOST}",
            f"--bind-address={HOST}",
            f"--secure-port={secure}",
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={self.workdir / 'cert-dir'}",
            f"--tls-cert-file={pki('kube-apiserver.crt')}",
            f"--tls-private-key-file={pki('kube-apiserver.key')}",
            f"--client-ca-file={pki('ca.crt')}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={pki('sa.pub')}",
            f"--service-account-signing-key-file={pki('sa.key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # No pod here needs a token, and none of the controllers run creates the
            # `default` service account this plugin wants in every namespace.
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false",
            # The `kubernetes` Endpoints may not hold a loopback address: no reconciler.
            "--endpoint-reconciler-type=none",
        ]

    def _serving_args(self, name: str, port: int, kubeconfig: Path) -> list[str]:
        """What the controller manager and the scheduler share: the API server through
        their own kubeconfig (for authenticating and authorizing their own HTTPS clients
        too), HTTPS on a free loopback port with a certificate of the harness's CA, no
        leader election (one of each runs)."""
        assert self._certs is not None
        pki = self._certs.path
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--client-ca-file={pki('ca.crt')}",
            f"--bind-address={HOST}",
            f"--secure-port={port}",
            f"--tls-cert-file={pki(name + '.crt')}",
            f"--tls-private-key-file={pki(name + '.key')}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _controller_manager_argv(self) -> list[str]:
        assert self._certs is not None
        pki = self._certs.path
        return [
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki('sa.key')}",
            f"--root-ca-file={pki('ca.crt')}",
            f"--node-monitor-period={NODE_MONITOR_PERIOD}",
            f"--node-eviction-rate={NODE_TAINT_RATE}",
        ]

    @staticmethod
    def _scheduler_argv() -> list[str]:
        return []

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], stop_timeout: float = 0.0) -> None:
        timeout = stop_timeout or (STOP_TIMEOUT if name == "kube-apiserver" else COMPONENT_STOP_TIMEOUT)
        log = self.workdir / f"{name}.log"
        self._processes.append(ChildProcess(name, argv, log, env, self.workdir, timeout))

    def _wait_healthy(self, checks: dict[str, tuple[ApiClient, str]]) -> None:
        """Until every check answers 200; a process that exits meanwhile fails the start
        (PortTaken when its log says its port was taken)."""
        deadline = time.monotonic() + START_TIMEOUT
        pending = dict(checks)
        last = dict.fromkeys(checks, "no answer yet")
        while True:
            for process in self._processes:
                code = process.exited()
                if code is not None:
                    message = f"{process.name} exited with code {code} during start\n{self._tails()}"
                    if "address already in use" in process.tail(200):
                        raise PortTaken(message)
                    raise KubeError(message)
            for name, (client, path) in list(pending.items()):
                try:
                    status, body = client.probe(path)
                except (OSError, http.client.HTTPException) as exc:
                    last[name] = f"{path}: {exc}"
                    continue
                if status == 200:
                    del pending[name]
                else:
                    last[name] = f"{path} answered {status}: {str(body.get('text', body))[:300]}"
            if not pending:
                return
            if time.monotonic() >= deadline:
                waiting = "; ".join(f"{name} ({last[name]})" for name in pending)
                raise KubeError(f"not ready within {START_TIMEOUT:.0f} s: {waiting}\n{self._tails()}")
            time.sleep(0.2)

    def _tails(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log.name}, last lines) ---\n{p.tail()}" for p in self._processes)

    def stop(self) -> None:
        """Stop the controller manager and the scheduler, then the API server, then etcd
        (SIGTERM, then SIGKILL if they linger)."""
        atexit.unregister(self.stop)
        if self._client is not None:
            self._client.close()
        self._kill()

    def _kill(self) -> None:
        processes, self._processes = self._processes, []
        try:
            components = [p for p in processes if p.name in ("kube-controller-manager", "kube-scheduler")]
            for process in components:  # both at once: neither outlives the other's stop
                process.terminate()
            for process in components:
                process.wait_stopped()
            for process in reversed([p for p in processes if p not in components]):
                process.terminate()  # the API server first, then its etcd
                process.wait_stopped()
        finally:
            for process in processes:  # whatever happened above: none outlives stop()
                process.kill()

    # ----------------------------------------------------------------- kubeconfig

    def write_kubeconfig(
        self,
        path: Path,
        *,
        untrusted_client: bool = False,
        wrong_ca: bool = False,
        server: str | None = None,
    ) -> Path:
        """An admin kubeconfig as `talosctl kubeconfig` writes one (data embedded, one
        context, current-context set). untrusted_client: a client certificate from another
        CA (the API answers 401); wrong_ca: a CA that did not sign the server's certificate
        (TLS verification fails); server: another URL."""
        if self._certs is None or not (server or self.url):
            raise KubeError("write_kubeconfig: the API has not been started")
        certs = self._certs
        return write_kubeconfig(
            path,
            server=server or self.url,
            ca=certs.other_ca if wrong_ca else certs.ca,
            client=certs.untrusted if untrusted_client else certs.clients["admin"],
            user=ADMIN_USER,
        )

    # ------------------------------------------------------------------- requests

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            if self._certs is None:
                raise KubeError("request: the API has not been started")
            pki = self._certs.path
            ctx = ssl.create_default_context(cafile=str(pki("ca.crt")))
            ctx.load_cert_chain(str(pki("admin.crt")), str(pki("admin.key")))
            self._ctx = ctx
        return self._ctx

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        """An admin request: (HTTP status, JSON body). A body that is not JSON (/readyz's
        "ok") comes back as {"text": ...}. Patches: content_type
        "application/merge-patch+json" or "application/strategic-merge-patch+json"."""
        if self._client is None or not self.url:
            raise KubeError("request: the API has not been started")
        return self._client.request(method, path, body, content_type=content_type)
