"""A real Kubernetes API on loopback, and simulated kubelets that follow fakepve.

    roles = {"cp-0": "controller", "w-0": "worker", "w-1": "worker"}   # VM names in fakepve
    with KubeApi(tmp / "kube") as api, SimulatedKubelets(api, pve, roles) as kubelets:
        kubelets.deploy("web", 3)    # pods + a PodDisruptionBudget, Running and Ready
        ... the code under test reads api.kubeconfig (an admin kubeconfig as Talos writes one) ...
        kubelets.wait(lambda: ..., timeout=10)

`KubeApi` runs etcd and kube-apiserver the way controller-runtime's envtest does: every
port on 127.0.0.1, a CA, serving and client certificates and service-account keys made
here (`cryptography`), RBAC with an admin client certificate in `system:masters`, the
ServiceAccount admission plugin off (no controller creates the `default` service
account). The binaries come from `scripts/setup-tools --kube` (built from their Go modules
and cached outside the repository), found through `workflow.setup_tools.ensure_tools`.

No kube-controller-manager, scheduler or kubelet runs. `SimulatedKubelets` (one
background thread) plays the parts a rolling apply notices:

- kubelets: one Node per VM name, Ready with a fresh heartbeat and a random
  `status.nodeInfo.bootID` while the VM runs in fakepve (a new one `ready_delay` seconds
  after every start), Ready=Unknown as soon as it stops or disappears. The VM power
  changes come from fakepve's `power_listeners` (queued, never handled on the fake's
  loop) and from a periodic re-read of its VM list, so a missed change still converges.
  The kubelets write only the status subresource, so a cordon (`spec.unschedulable`)
  survives a reboot; the node lifecycle controller's taints (not-ready, unreachable,
  unschedulable) follow the Ready condition and the cordon, other taints are left alone.
  Pods bound to a node are set Running/Ready while it is Ready and NotReady when it is
  not; a pod with a `deletionTimestamp` is deleted (grace 0) once its grace period
  has passed and only while its node is Ready, as a kubelet that is down deletes nothing.
- ReplicaSet and DaemonSet controllers for the workloads made here (`deploy`,
  `add_daemonset_pods`): a missing replica is created on a Ready worker that is not
  cordoned and becomes Ready `ready_delay` seconds later.
- the disruption controller: the status of every PodDisruptionBudget (the Eviction API
  decides on it), written with the PDB's resourceVersion so an eviction in between makes
  the write fail with 409 and be redone from a fresh read; `status.disruptedPods` entries
  the API server adds stay until their pod is gone.

Everything an eviction does is recorded (`evictions`), and so is every moment a budget
was not met (`pdb_violations`).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as dt
import http.client
import ipaddress
import json
import math
import queue
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from workflow.setup_tools import Tools, ensure_tools

if TYPE_CHECKING:
    from devenv.fakepve import FakePveServer

HOST = "127.0.0.1"
START_ATTEMPTS = 3  # a free port taken by someone else between choosing it and binding it
START_TIMEOUT = 120.0  # per attempt; about 10 s on a quiet 2-core machine
STOP_TIMEOUT = 10.0  # the API server's graceful stop (about 1 s), then SIGKILL
# etcd stopped during its start waits for its own election for seconds; its data is
# thrown away (it never fsyncs either), so it gets little time.
ETCD_STOP_TIMEOUT = 2.0
REQUEST_TIMEOUT = 30.0
KUBERNETES_VERSION = "v1.34.2"
CLUSTER_NAME = "harness"
ADMIN_USER = f"admin@{CLUSTER_NAME}"
SERVICE_CIDR = "10.0.0.0/24"  # stored in Services only; nothing routes to it
LOG_TAIL_LINES = 30

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
CONDITION_TAINTS = (NOT_READY_TAINT, UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT)
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
HEARTBEAT_SECS = 5.0  # a Ready node's lastHeartbeatTime is never older than this (plus a poll)
RESYNC_SECS = 1.0  # the VM list is re-read at least this often
CONFLICT_RETRIES = 5
POD_GRACE_SECS = 1  # terminationGracePeriodSeconds of the pods made here

_tools_lock = threading.Lock()
_tools: Tools | None = None


class KubeError(RuntimeError):
    """The API could not be started, or answered something the harness cannot go on with."""


class _PortTaken(KubeError):
    pass


# ----------------------------------------------------------------------------- PKI


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rfc3339(when: dt.datetime | None = None) -> str:
    return (when or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


@dataclass(frozen=True)
class _Pair:
    cert: bytes  # PEM
    key: bytes  # PEM


def _issue(
    subject: x509.Name,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for a new P-256 key, signed by issuer (self-signed CA when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    start = _now() - dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(HOST)),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                critical=False,
            )
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


@dataclass(frozen=True)
class _Pki:
    """What the API server and its clients need, as PEM; files under `dir` for the processes."""

    dir: Path
    ca: bytes
    server: _Pair
    admin: _Pair
    other_ca: bytes  # a CA the server does not know: the wrong_ca kubeconfig
    untrusted: _Pair  # a client certificate from other_ca: the API answers 401
    sa_key: bytes
    sa_pub: bytes

    @classmethod
    def create(cls, directory: Path) -> _Pki:
        ca = _issue(_name("kubernetes"), None)
        server = _issue(_name("kube-apiserver"), ca, server=True)
        admin = _issue(_name("admin", "system:masters"), ca, client=True)
        other = _issue(_name("another-kubernetes"), None)
        untrusted = _issue(_name("admin", "system:masters"), other, client=True)
        sa = ec.generate_private_key(ec.SECP256R1())
        pki = cls(
            dir=directory,
            ca=_pem_cert(ca[0]),
            server=_Pair(_pem_cert(server[0]), _pem_key(server[1])),
            admin=_Pair(_pem_cert(admin[0]), _pem_key(admin[1])),
            other_ca=_pem_cert(other[0]),
            untrusted=_Pair(_pem_cert(untrusted[0]), _pem_key(untrusted[1])),
            sa_key=_pem_key(sa),
            sa_pub=sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in pki.files().items():
            path = directory / name
            path.write_bytes(data)
            path.chmod(0o600)
        return pki

    def files(self) -> dict[str, bytes]:
        return {
            "ca.crt": self.ca,
            "apiserver.crt": self.server.cert,
            "apiserver.key": self.server.key,
            "admin.crt": self.admin.cert,
            "admin.key": self.admin.key,
            "sa.key": self.sa_key,
            "sa.pub": self.sa_pub,
        }


# ------------------------------------------------------------------------- KubeApi


def _kube_tools(log: Path) -> Tools:
    """setup-tools --kube, once per process (it is idempotent, but not free)."""
    global _tools
    with _tools_lock:
        if _tools is None:
            _tools = ensure_tools("--kube", log=log)
        return _tools


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _child_env(tools: Tools) -> dict[str, str]:
    """setup-tools' PATH, and no proxy: etcd's and the API server's clients stay on loopback."""
    env = {k: v for k, v in tools.environ().items() if not k.lower().endswith("_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = f"{HOST},localhost"
    return env


class _Process:
    """A child process whose combined output goes to a log file in the work directory."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str], cwd: Path, stop_timeout: float
    ) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self.log = log
        with log.open("ab") as sink:
            sink.write(f"--- {name} started at {_rfc3339()}\n".encode())
            self.offset = sink.tell()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode(errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log.name}: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self) -> None:
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


class KubeApi:
    """etcd + kube-apiserver on loopback (free ports), an admin kubeconfig, admin requests.

    A context manager: `start()` returns once `/readyz` answers ok (bounded), `stop()`
    kills both processes whatever happened. Logs: etcd.log and kube-apiserver.log in the
    work directory (their tails are in every start failure).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.url = ""
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.startup_seconds = 0.0  # of the last start(), setup-tools included
        self._pki: _Pki | None = None
        self._processes: list[_Process] = []
        self._local = threading.local()
        self._connections: list[http.client.HTTPSConnection] = []
        self._conn_lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> KubeApi:
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
            tools = _kube_tools(self.workdir / "setup-tools.log")
            env = _child_env(tools)
            binaries = {}
            for name in ("etcd", "kube-apiserver"):
                found = shutil.which(name, path=env.get("PATH", ""))
                if not found:
                    raise KubeError(
                        f"scripts/setup-tools --kube succeeded but no `{name}` is on the PATH it printed"
                    )
                binaries[name] = found
            if self._pki is None:
                self._pki = _Pki.create(self.workdir / "pki")
            atexit.register(self.stop)
            failures = []
            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self._start_once(attempt, binaries, env)
                    break
                except _PortTaken as exc:
                    self._kill()
                    failures.append(str(exc))
            else:
                raise KubeError(
                    f"the Kubernetes API did not start in {START_ATTEMPTS} attempts (ports taken):\n"
                    + "\n".join(failures)
                )
            self.write_kubeconfig(self.kubeconfig)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _start_once(self, attempt: int, binaries: dict[str, str], env: dict[str, str]) -> None:
        assert self._pki is not None
        client, peer, secure = _free_ports(3)
        data = self.workdir / f"etcd-data-{attempt}"
        shutil.rmtree(data, ignore_errors=True)
        etcd_url = f"http://{HOST}:{client}"
        peer_url = f"http://{HOST}:{peer}"
        etcd = [
            binaries["etcd"],
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
        pki = self._pki.dir
        self.url = f"https://{HOST}:{secure}"
        apiserver = [
            binaries["kube-apiserver"],
            f"--advertise-address={HOST}",
            f"--bind-address={HOST}",
            f"--secure-port={secure}",
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={self.workdir / 'cert-dir'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.url}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # No controller creates the `default` service account this plugin wants.
            "--disable-admission-plugins=ServiceAccount",
            "--profiling=false",
            # The `kubernetes` Endpoints may not hold a loopback address: no reconciler.
            "--endpoint-reconciler-type=none",
        ]
        self._processes.append(
            _Process("etcd", etcd, self.workdir / "etcd.log", env, self.workdir, ETCD_STOP_TIMEOUT)
        )
        self._processes.append(
            _Process(
                "kube-apiserver",
                apiserver,
                self.workdir / "kube-apiserver.log",
                env,
                self.workdir,
                STOP_TIMEOUT,
            )
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        while True:
            for process in self._processes:
                code = process.proc.poll()
                if code is not None:
                    message = f"{process.name} exited with code {code} during start\n{self._tails()}"
                    if "address already in use" in process.tail(200):
                        raise _PortTaken(message)
                    raise KubeError(message)
            probe = self._fresh_connection(5.0)
            try:
                status, body = self._request_once(probe, "GET", "/readyz", None, "")
                if status == 200:
                    return
                last = f"/readyz answered {status}: {str(body.get('text', body))[:300]}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"/readyz: {exc}"
            finally:
                probe.close()
            if time.monotonic() >= deadline:
                raise KubeError(
                    f"the Kubernetes API at {self.url} was not ready within {START_TIMEOUT:.0f} s ({last})\n"
                    + self._tails()
                )
            time.sleep(0.2)

    def _tails(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log.name}, last lines) ---\n{p.tail()}" for p in self._processes)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, then SIGKILL if they linger)."""
        atexit.unregister(self.stop)
        with self._conn_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._kill()

    def _kill(self) -> None:
        processes, self._processes = self._processes, []
        try:
            for process in reversed(processes):  # the API server first, then its etcd
                process.stop()
                process.wait_stopped()
        finally:
            for process in processes:  # whatever happened above: none outlives stop()
                if process.proc.poll() is None:
                    process.proc.kill()
                    process.proc.wait(STOP_TIMEOUT)

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
        if self._pki is None or not (server or self.url):
            raise KubeError("write_kubeconfig: the API has not been started")
        pair = self._pki.untrusted if untrusted_client else self._pki.admin
        ca = self._pki.other_ca if wrong_ca else self._pki.ca

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {"server": server or self.url, "certificate-authority-data": b64(ca)},
                }
            ],
            "contexts": [
                {
                    "name": ADMIN_USER,
                    "context": {"cluster": CLUSTER_NAME, "namespace": "default", "user": ADMIN_USER},
                }
            ],
            "current-context": ADMIN_USER,
            "users": [
                {
                    "name": ADMIN_USER,
                    "user": {"client-certificate-data": b64(pair.cert), "client-key-data": b64(pair.key)},
                }
            ],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------------- requests

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            if self._pki is None:
                raise KubeError("request: the API has not been started")
            ctx = ssl.create_default_context(cafile=str(self._pki.dir / "ca.crt"))
            ctx.load_cert_chain(str(self._pki.dir / "admin.crt"), str(self._pki.dir / "admin.key"))
            self._ctx = ctx
        return self._ctx

    def _fresh_connection(self, timeout: float = REQUEST_TIMEOUT) -> http.client.HTTPSConnection:
        parts = urlsplit(self.url)
        if parts.hostname != HOST:
            raise KubeError(f"the harness talks to {HOST} only, not {self.url!r}")
        return http.client.HTTPSConnection(HOST, parts.port, context=self._context(), timeout=timeout)

    def _connection(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._fresh_connection()
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

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
        if not self.url:
            raise KubeError("request: the API has not been started")
        for attempt in range(2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                return self._request_once(conn, method, path, body, content_type)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                self._local.conn = None
                if attempt or not reused:  # only a kept-alive connection closed by the server is retried
                    raise KubeError(f"{method} {path}: {exc}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _request_once(
        conn: http.client.HTTPSConnection,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        content_type: str,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            parsed = {"text": raw.decode(errors="replace")}
        return response.status, parsed


# --------------------------------------------------------------- SimulatedKubelets


@dataclass
class _Node:
    name: str
    role: str
    running: bool = False  # the VM runs, as last seen
    ready_at: float | None = None  # when the kubelet of the current boot reports Ready
    new_boot: bool = False  # the next Ready report carries a new bootID
    boot_seen: tuple[Any, Any] | None = None  # (vmid, started_at) the last VM re-read saw
    vm_id: Any = None  # the VM this Node belongs to; another id under its name is a new VM
    maintenance: bool = False  # a new VM under the name: no Node until rejoin()
    boot_id: str = ""  # as reported to the API
    reported: tuple[bool, str] | None = None  # (ready, bootID) last written
    transition: str = ""  # lastTransitionTime of the Ready condition
    heartbeat: str = ""  # lastHeartbeatTime last written
    heartbeat_at: float = 0.0
    uid: str = ""


@dataclass
class _Workload:
    kind: str  # ReplicaSet | DaemonSet
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    replicas: int = 0  # ReplicaSet only
    first_fill: bool = True  # the pods of deploy() itself are Ready at once


@dataclass
class _PdbSeen:
    healthy_once: bool = False
    violation: tuple[int, int] | None = None


@dataclass
class _Tick:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # API Nodes by name
    pods: list[dict[str, Any]] = field(default_factory=list)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


def _pod_key(pod: dict[str, Any]) -> str:
    return f"{_meta(pod).get('namespace')}/{_meta(pod).get('name')}"


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def _pod_ready(pod: dict[str, Any]) -> bool:
    return (
        pod.get("status", {}).get("phase") == "Running" and _condition(pod, "Ready").get("status") == "True"
    )


def _controller(pod: dict[str, Any]) -> dict[str, Any] | None:
    for ref in _meta(pod).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions). An empty one matches every pod."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels.get(key) in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _disrupted_this_pod(pod: dict[str, Any], when: str) -> bool:
    """A disruptedPods entry (time of the eviction) is about this pod, not an earlier one of
    the same name (a mirror pod created again): it was created no later. Both RFC 3339 in
    seconds, as the API server writes them."""
    return str(_meta(pod).get("creationTimestamp") or "") <= str(when)


def _scaled(value: Any, total: int) -> int:
    """An IntOrString (3 or "50%") of total, percentages rounded up, as Kubernetes does."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


class SimulatedKubelets:
    """Nodes, pods and PodDisruptionBudget status kept in step with fakepve (see the module
    docstring). A context manager: one background thread, stopped on exit; every loop is
    bounded. roles: VM name -> "controller" | "worker"."""

    def __init__(
        self,
        api: KubeApi,
        pve: FakePveServer,
        roles: dict[str, str],
        *,
        ready_delay: float = 1.0,
        poll: float = 0.1,
    ) -> None:
        for name, role in roles.items():
            if role not in ("controller", "worker"):
                raise ValueError(f"roles[{name!r}] is {role!r}: expected 'controller' or 'worker'")
        self.api = api
        self.pve = pve
        self.roles = dict(roles)
        self.ready_delay = ready_delay
        self.poll = poll
        self.evictions: list[tuple[float, str, str]] = []
        self.pdb_violations: list[str] = []
        self._nodes = {name: _Node(name, role) for name, role in roles.items()}
        self._missing: set[str] = set()
        self._events: queue.SimpleQueue[tuple[float, str, str]] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._listening = False
        self._next_resync = 0.0
        self._workloads: dict[str, _Workload] = {}  # by uid
        self._mirror_pods = False
        self._pod_ready_at: dict[str, float] = {}  # pod uid -> when it is Ready (pods made here)
        self._deleting_since: dict[str, float] = {}  # pod uid -> when its deletionTimestamp was seen
        self._evicted: set[str] = set()  # pods recorded: their uid and "ns/pod"
        self._pdbs: dict[str, _PdbSeen] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> SimulatedKubelets:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self._check()

    def start(self) -> None:
        try:
            self.pve.call(lambda p: p.power_listeners.append(self._on_power), timeout=10)
            self._listening = True
            with self._lock:
                self._resync(initial=True)
                self._tick()
            self._thread = threading.Thread(target=self._run, name="simulated-kubelets", daemon=True)
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(REQUEST_TIMEOUT + 10)
        if self._listening:
            self._listening = False
            with contextlib.suppress(Exception):  # the fake already stopped: it calls nobody
                self.pve.call(lambda p: p.power_listeners.remove(self._on_power), timeout=5)

    def _on_power(self, name: str, status: str) -> None:
        """fakepve's listener, on its asyncio loop: queue only, never block."""
        self._events.put((time.monotonic(), name, status))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    event: tuple[float, str, str] | None = self._events.get(timeout=self.poll)
                except queue.Empty:
                    event = None
                with self._lock:
                    while event is not None:
                        self._power(*event)
                        try:
                            event = self._events.get_nowait()
                        except queue.Empty:
                            event = None
                    if time.monotonic() >= self._next_resync:
                        self._resync()
                    self._tick()
        except BaseException as exc:
            self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"the simulated kubelets stopped: {self._error!r}") from self._error

    # ------------------------------------------------------------------ public helpers

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str = "") -> None:
        """Poll predicate() until it is true; AssertionError after timeout seconds (or at
        once when the background thread failed)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            if predicate():
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"not true within {timeout} s: {what or predicate}")
            time.sleep(min(0.05, self.poll))

    def boot_ids(self) -> dict[str, str]:
        """VM name -> the bootID its Node reports now (nodes that have reported one)."""
        with self._lock:
            return {
                n.name: n.boot_id for n in self._nodes.values() if n.boot_id and n.name not in self._missing
            }

    def rejoin(self, name: str) -> None:
        """What `task talos:apply-node` does for a replaced VM: its Talos config installed,
        it boots into the cluster and its Node turns Ready (a new bootID) after ready_delay."""
        ids = self.pve.call(lambda p: [vm.vmid for vm in p.vms if vm.name == name], timeout=10)
        with self._lock:
            node = self._nodes[name]
            node.maintenance = False
            node.vm_id = ids[-1] if ids else node.vm_id
            if node.running:
                self._boot(node, time.monotonic() + self.ready_delay)

    def set_missing(self, node: str) -> None:
        """Delete that Node and never register it again (a VM without its Node)."""
        with self._lock:
            self._missing.add(node)
            status, body = self.api.request("DELETE", f"/api/v1/nodes/{quote(node)}")
            if status not in (200, 404):
                raise KubeError(f"deleting Node {node}: {status} {body}")

    def deploy(
        self, name: str, replicas: int, *, namespace: str = "default", max_unavailable: int = 1
    ) -> None:
        """A ReplicaSet's pods spread over the Ready, schedulable workers, and a policy/v1
        PodDisruptionBudget (maxUnavailable) selecting them; returns once all are Ready and
        the budget's status says so."""
        labels = {"app": name}
        self._ensure_namespace(namespace)
        rs = self._create(
            f"/apis/apps/v1/namespaces/{namespace}/replicasets",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": self._pod_spec(None)},
                },
            },
        )
        self._create(
            f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets",
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": labels}},
            },
        )
        with self._lock:
            uid = _meta(rs)["uid"]
            self._workloads[uid] = _Workload("ReplicaSet", name, namespace, uid, labels, replicas=replicas)

        def healthy() -> bool:
            status, pdb = self.api.request(
                "GET", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}"
            )
            st = pdb.get("status", {})
            return (
                status == 200
                and st.get("observedGeneration") == _meta(pdb).get("generation")
                and st.get("currentHealthy") == replicas
            )

        self.wait(
            healthy, 10 + self.ready_delay, f"{replicas} Ready pods of {namespace}/{name} in its PDB status"
        )

    def add_daemonset_pods(self, name: str = "node-exporter", namespace: str = "kube-system") -> None:
        """A DaemonSet and one pod of it per worker (a drain must leave them); returns once
        every registered worker has one."""
        labels = {"app": name}
        self._ensure_namespace(namespace)
        ds = self._create(
            f"/apis/apps/v1/namespaces/{namespace}/daemonsets",
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": self._pod_spec(None)},
                },
            },
        )
        uid = _meta(ds)["uid"]
        with self._lock:
            self._workloads[uid] = _Workload("DaemonSet", name, namespace, uid, labels)
        workers = [n for n, r in self.roles.items() if r == "worker" and n not in self._missing]
        self.wait(
            lambda: (
                {
                    p["spec"]["nodeName"]
                    for p in self._list_pods(namespace)
                    if (_controller(p) or {}).get("uid") == uid
                }
                >= set(workers)
            ),
            10,
            f"a pod of DaemonSet {namespace}/{name} on every worker",
        )

    def add_mirror_pods(self) -> None:
        """A mirror pod (annotation kubernetes.io/config.mirror) per controller:
        kube-system/kube-apiserver-<node>; returns once they exist."""
        with self._lock:
            self._mirror_pods = True
        controllers = {f"kube-apiserver-{n}" for n, r in self.roles.items() if r == "controller"}
        controllers -= {f"kube-apiserver-{n}" for n in self._missing}
        self.wait(
            lambda: {_meta(p)["name"] for p in self._list_pods("kube-system")} >= controllers,
            10,
            "a mirror pod per controller",
        )

    # ------------------------------------------------------------------ API helpers

    def _ok(self, what: str, answer: tuple[int, dict[str, Any]], *allowed: int) -> dict[str, Any]:
        status, body = answer
        if status not in allowed:
            raise KubeError(f"{what}: HTTP {status}: {body.get('message') or body}")
        return body

    def _create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._ok(f"POST {path}", self.api.request("POST", path, obj), 201)

    def _ensure_namespace(self, namespace: str) -> None:
        self._ok(
            f"namespace {namespace}",
            self.api.request(
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            ),
            201,
            409,
        )

    def _list_pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        return list(self._ok(f"GET {path}", self.api.request("GET", path), 200).get("items") or [])

    @staticmethod
    def _pod_spec(node: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "containers": [{"name": "app", "image": PAUSE_IMAGE}],
            "terminationGracePeriodSeconds": POD_GRACE_SECS,
        }
        if node:
            spec["nodeName"] = node
        return spec

    # ------------------------------------------------------------------ VM power

    def _power(self, at: float, name: str, status: str) -> None:
        node = self._nodes.get(name)
        if node is None:
            return
        if status == "running":
            ids = self.pve.call(lambda p: [vm.vmid for vm in p.vms if vm.name == name], timeout=10)
            if ids:
                self._identify(node, ids[-1])
            if not node.running:
                self._boot(node, at + self.ready_delay)
        elif node.running:
            self._down(node)

    def _boot(self, node: _Node, ready_at: float) -> None:
        node.running = True
        node.ready_at = ready_at
        node.new_boot = True
        node.boot_seen = None  # adopted by the next VM re-read

    @staticmethod
    def _identify(node: _Node, vmid: Any) -> None:
        """A VM created again under the node's name (another vmid) boots an empty disk into
        Talos maintenance mode: it is no Node of the cluster until rejoin()."""
        if node.vm_id is None:
            node.vm_id = vmid
        elif vmid != node.vm_id:
            node.maintenance = True

    @staticmethod
    def _down(node: _Node) -> None:
        node.running = False
        node.ready_at = None

    def _resync(self, *, initial: bool = False) -> None:
        """Re-read fakepve's VMs: a power change whose event was missed still converges; a
        running VM whose (vmid, start time) changed (reset, deleted and created again) is a
        new boot."""
        vms = self.pve.call(
            lambda p: [
                (str(vm.config.get("name") or vm.name), vm.status, vm.vmid, getattr(vm, "started_at", None))
                for vm in p.vms
            ],
            timeout=10,
        )
        seen: dict[str, tuple[Any, Any] | None] = {}
        for name, status, vmid, started in vms:
            if status == "running":
                seen[name] = (vmid, started)
                if name in self._nodes:
                    self._identify(self._nodes[name], vmid)
            else:
                seen.setdefault(name, None)
        now = time.monotonic()
        for node in self._nodes.values():
            boot = seen.get(node.name)
            if boot is not None and not node.running:
                self._boot(node, now if initial else now + self.ready_delay)
                node.boot_seen = boot
            elif boot is None and node.running:
                self._down(node)
            elif boot is not None:
                if node.boot_seen is not None and boot != node.boot_seen:
                    self._boot(node, now + self.ready_delay)
                node.boot_seen = boot
        self._next_resync = now + RESYNC_SECS

    # ------------------------------------------------------------------ the loop

    def _tick(self) -> None:
        tick = _Tick()
        self._sync_nodes(tick)
        tick.pods = self._list_pods()
        self._finish_deletions(tick)
        self._create_missing_pods(tick)
        self._sync_pod_status(tick)
        self._sync_pdbs(tick)

    def _node_ready(self, name: str, now: float | None = None) -> bool:
        node = self._nodes.get(name)
        if node is None or name in self._missing or not node.running or node.ready_at is None:
            return False
        if node.maintenance:
            return False
        return (now or time.monotonic()) >= node.ready_at

    def _sync_nodes(self, tick: _Tick) -> None:
        listed = self._ok("GET /api/v1/nodes", self.api.request("GET", "/api/v1/nodes"), 200)
        tick.nodes = {_meta(n)["name"]: n for n in listed.get("items") or []}
        now = time.monotonic()
        for node in self._nodes.values():
            if node.name in self._missing:
                continue
            obj = tick.nodes.get(node.name)
            if obj is None:
                obj = self._register(node)
                tick.nodes[node.name] = obj
                node.reported = None
            node.uid = _meta(obj).get("uid", "")
            ready = self._node_ready(node.name, now)
            if ready and node.new_boot:
                node.boot_id = str(uuid.uuid4())
                node.new_boot = False
            wanted = (ready, node.boot_id)
            if wanted != node.reported or (ready and now - node.heartbeat_at >= HEARTBEAT_SECS):
                if node.reported is None or wanted[0] != node.reported[0] or not node.transition:
                    node.transition = _rfc3339()
                if ready:
                    node.heartbeat, node.heartbeat_at = _rfc3339(), now
                answer = self.api.request(
                    "PATCH",
                    f"/api/v1/nodes/{quote(node.name)}/status",
                    {"status": self._node_status(node, ready)},
                    content_type="application/merge-patch+json",
                )
                if answer[0] == 404:  # deleted meanwhile: registered again next time
                    tick.nodes.pop(node.name, None)
                    node.reported = None
                    continue
                tick.nodes[node.name] = self._ok(f"Node {node.name} status", answer, 200)
                node.reported = wanted
            self._sync_taints(node.name, ready, tick)

    def _sync_taints(self, name: str, ready: bool, tick: _Tick) -> None:
        """The taints kube-controller-manager's node lifecycle controller keeps in step with
        the Ready condition and spec.unschedulable (the API adds not-ready at registration);
        other taints are left alone. Written with the Node's resourceVersion: a conflict is
        retried on the next loop."""
        obj = tick.nodes.get(name)
        if obj is None:
            return
        spec = obj.get("spec") or {}
        taints = list(spec.get("taints") or [])
        keep = [t for t in taints if t.get("key") not in CONDITION_TAINTS]
        wanted = list(keep)
        if not ready:
            old = {(t.get("key"), t.get("effect")): t for t in taints}
            for effect in ("NoSchedule", "NoExecute"):
                taint = {"key": UNREACHABLE_TAINT, "effect": effect}
                if effect == "NoExecute":
                    taint["timeAdded"] = (
                        old.get((UNREACHABLE_TAINT, effect), {}).get("timeAdded") or _rfc3339()
                    )
                wanted.append(taint)
        if spec.get("unschedulable"):
            wanted.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"})

        def keys(items: list[dict[str, Any]]) -> set[tuple[Any, Any]]:
            return {(t.get("key"), t.get("effect")) for t in items}

        if keys(wanted) == keys(taints):
            return
        answer = self.api.request(
            "PATCH",
            f"/api/v1/nodes/{quote(name)}",
            {"metadata": {"resourceVersion": _meta(obj).get("resourceVersion")}, "spec": {"taints": wanted}},
            content_type="application/merge-patch+json",
        )
        if answer[0] in (404, 409):
            return
        tick.nodes[name] = self._ok(f"Node {name} taints", answer, 200)

    def _register(self, node: _Node) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": node.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        spec: dict[str, Any] = {}
        if node.role == "controller":
            labels[CONTROL_PLANE_LABEL] = ""
            spec["taints"] = [{"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}]
        path = "/api/v1/nodes"
        answer = self.api.request(
            "POST",
            path,
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": labels},
                "spec": spec,
            },
        )
        if answer[0] == 409:  # registered by an earlier harness on this API: take it over
            return self._ok(f"Node {node.name}", self.api.request("GET", f"{path}/{quote(node.name)}"), 200)
        return self._ok(f"registering Node {node.name}", answer, 201)

    def _node_status(self, node: _Node, ready: bool) -> dict[str, Any]:
        if ready:
            cond = {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        else:  # what the node controller writes once the kubelet stops posting
            cond = {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
            }
        cond["lastTransitionTime"] = node.transition
        cond["lastHeartbeatTime"] = node.heartbeat or node.transition
        resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        return {
            "conditions": [cond],
            "addresses": [{"type": "Hostname", "address": node.name}],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, node.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, node.name)),
                "bootID": node.boot_id,
                "kernelVersion": "6.12.57-talos",
                "osImage": "Talos (v1.11.5)",
                "containerRuntimeVersion": "containerd://2.1.5",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _ours(self, pod: dict[str, Any]) -> bool:
        """Bound to a node these kubelets run."""
        node = pod.get("spec", {}).get("nodeName")
        return node in self._nodes and node not in self._missing

    def _finish_deletions(self, tick: _Tick) -> None:
        now = time.monotonic()
        remaining = []
        for pod in tick.pods:
            meta = _meta(pod)
            if not meta.get("deletionTimestamp") or not self._ours(pod):
                remaining.append(pod)
                continue
            uid = meta["uid"]
            self._record_eviction(pod, _pod_key(pod), pod["spec"]["nodeName"])
            since = self._deleting_since.setdefault(uid, now)
            grace = meta.get("deletionGracePeriodSeconds") or 0
            if not self._node_ready(pod["spec"]["nodeName"], now) or now < since + grace:
                remaining.append(pod)
                continue
            answer = self.api.request(
                "DELETE",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{quote(meta['name'])}",
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
            if answer[0] not in (200, 404, 409):
                self._ok(f"deleting pod {_pod_key(pod)}", answer, 200)
            self._deleting_since.pop(uid, None)
            self._pod_ready_at.pop(uid, None)
        tick.pods = remaining

    def _record_eviction(self, pod: dict[str, Any] | None, key: str, node: str) -> None:
        """Once per pod, whether seen deleting or in a PDB's disruptedPods first (then
        perhaps after the pod is gone: by name)."""
        uid = _meta(pod).get("uid") if pod else None
        if (uid or key) in self._evicted:
            return
        self._evicted.update(x for x in (uid, key) if x)
        self.evictions.append((time.monotonic(), key, node))

    def _create_missing_pods(self, tick: _Tick) -> None:
        now = time.monotonic()
        workers = [n for n in sorted(self._nodes) if self.roles[n] == "worker" and n not in self._missing]
        for wl in list(self._workloads.values()):
            mine = [p for p in tick.pods if (_controller(p) or {}).get("uid") == wl.uid]
            if wl.kind == "ReplicaSet":
                active = [p for p in mine if not _meta(p).get("deletionTimestamp")]
                schedulable = [
                    n
                    for n in workers
                    if self._node_ready(n, now)
                    and not tick.nodes.get(n, {}).get("spec", {}).get("unschedulable")
                ]
                for _ in range(wl.replicas - len(active)):
                    if not schedulable:
                        break
                    load = {n: 0 for n in schedulable}
                    for pod in active:
                        if pod["spec"].get("nodeName") in load:
                            load[pod["spec"]["nodeName"]] += 1
                    target = min(schedulable, key=lambda n: (load[n], n))
                    pod = self._create_pod(wl, target, now if wl.first_fill else now + self.ready_delay)
                    active.append(pod)
                    tick.pods.append(pod)
                if len(active) >= wl.replicas:
                    wl.first_fill = False
            else:
                covered = {p["spec"].get("nodeName") for p in mine}
                for target in workers:
                    if target not in covered:
                        tick.pods.append(
                            self._create_pod(wl, target, now + (0 if wl.first_fill else self.ready_delay))
                        )
                wl.first_fill = False
        if self._mirror_pods:
            present = {_pod_key(p) for p in tick.pods}
            for name in sorted(self._nodes):
                if self.roles[name] != "controller" or name in self._missing or name not in tick.nodes:
                    continue
                if f"kube-system/kube-apiserver-{name}" not in present:
                    tick.pods.append(self._create_mirror_pod(name, tick.nodes[name]))

    def _create_pod(self, wl: _Workload, node: str, ready_at: float) -> dict[str, Any]:
        pod = self._create(
            f"/api/v1/namespaces/{wl.namespace}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{wl.name}-{secrets.token_hex(3)}",
                    "namespace": wl.namespace,
                    "labels": dict(wl.labels),
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": wl.kind,
                            "name": wl.name,
                            "uid": wl.uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": self._pod_spec(node),
            },
        )
        self._pod_ready_at[_meta(pod)["uid"]] = ready_at
        return pod

    def _create_mirror_pod(self, node: str, node_obj: dict[str, Any]) -> dict[str, Any]:
        digest = secrets.token_hex(16)
        pod = self._create(
            "/api/v1/namespaces/kube-system/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"kube-apiserver-{node}",
                    "namespace": "kube-system",
                    "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                    "annotations": {
                        MIRROR_ANNOTATION: digest,
                        "kubernetes.io/config.hash": digest,
                        "kubernetes.io/config.source": "file",
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Node",
                            "name": node,
                            "uid": _meta(node_obj).get("uid", ""),
                            "controller": True,
                        }
                    ],
                },
                "spec": {**self._pod_spec(node), "priorityClassName": "system-node-critical"},
            },
        )
        self._pod_ready_at[_meta(pod)["uid"]] = time.monotonic()
        return pod

    def _sync_pod_status(self, tick: _Tick) -> None:
        now = time.monotonic()
        for i, pod in enumerate(tick.pods):
            meta = _meta(pod)
            if not self._ours(pod) or meta.get("deletionTimestamp"):
                continue
            node = pod["spec"]["nodeName"]
            node_ready = self._node_ready(node, now)
            running = pod.get("status", {}).get("phase") == "Running"
            if not running and not node_ready:
                continue  # Pending until its kubelet runs
            ready = node_ready and now >= self._pod_ready_at.get(meta["uid"], 0.0)
            if running and (_condition(pod, "Ready").get("status") == "True") == ready:
                continue
            flag = "True" if ready else "False"
            stamp = _rfc3339()
            status = {
                "phase": "Running",
                "startTime": pod.get("status", {}).get("startTime") or stamp,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                    {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp},
                    {"type": "Ready", "status": flag, "lastTransitionTime": stamp},
                ],
            }
            answer = self.api.request(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/pods/{quote(meta['name'])}/status",
                {"status": status},
                content_type="application/merge-patch+json",
            )
            if answer[0] == 404:
                continue
            tick.pods[i] = self._ok(f"pod {_pod_key(pod)} status", answer, 200)

    # ------------------------------------------------------------------ disruption controller

    def _sync_pdbs(self, tick: _Tick) -> None:
        path = "/apis/policy/v1/poddisruptionbudgets"
        for pdb in self._ok(f"GET {path}", self.api.request("GET", path), 200).get("items") or []:
            for _ in range(CONFLICT_RETRIES):
                meta = _meta(pdb)
                ns, name = meta["namespace"], meta["name"]
                self._record_disrupted(pdb, tick)
                pods = self._pdb_pods(pdb, tick)
                status = self._pdb_status(pdb, pods)
                self._check_budget(f"{ns}/{name}", status, pods)
                if self._same_status(pdb.get("status") or {}, status):
                    break
                url = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{quote(name)}"
                body = {
                    **pdb,
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {k: v for k, v in meta.items() if k != "managedFields"},
                    "status": status,
                }
                answer = self.api.request("PUT", f"{url}/status", body)
                if answer[0] == 200 or answer[0] == 404:
                    break
                if answer[0] != 409:
                    self._ok(f"PDB {ns}/{name} status", answer, 200)
                # An eviction changed it since it was read: read it again, decide again.
                answer = self.api.request("GET", url)
                if answer[0] == 404:
                    break
                pdb = self._ok(f"PDB {ns}/{name}", answer, 200)

    def _record_disrupted(self, pdb: dict[str, Any], tick: _Tick) -> None:
        ns = _meta(pdb)["namespace"]
        pods = {_pod_key(p): p for p in tick.pods}
        for pod_name, when in ((pdb.get("status") or {}).get("disruptedPods") or {}).items():
            key = f"{ns}/{pod_name}"
            pod = pods.get(key)
            if pod is not None and not _disrupted_this_pod(pod, when):
                continue
            self._record_eviction(pod, key, (pod or {}).get("spec", {}).get("nodeName", ""))

    @staticmethod
    def _pdb_pods(pdb: dict[str, Any], tick: _Tick) -> list[dict[str, Any]]:
        ns, selector = _meta(pdb)["namespace"], (pdb.get("spec") or {}).get("selector")
        return [
            p
            for p in tick.pods
            if _meta(p).get("namespace") == ns and _matches(selector, _meta(p).get("labels") or {})
        ]

    def _pdb_status(self, pdb: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
        """What the disruption controller would write."""
        meta, spec, old = _meta(pdb), pdb.get("spec") or {}, pdb.get("status") or {}
        # An entry stays until its pod is gone (a pod of the same name created since is another).
        present = {_meta(p)["name"]: p for p in pods}
        disrupted = {
            k: v
            for k, v in (old.get("disruptedPods") or {}).items()
            if k in present and _disrupted_this_pod(present[k], v)
        }
        expected = 0
        if spec.get("maxUnavailable") is not None or (
            spec.get("minAvailable") is not None and isinstance(spec["minAvailable"], str)
        ):
            expected = self._expected_scale(pods)
        elif spec.get("minAvailable") is not None:
            expected = len(pods)
        if spec.get("maxUnavailable") is not None:
            desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
        elif spec.get("minAvailable") is not None:
            desired = _scaled(spec["minAvailable"], expected)
        else:
            desired = 0
        healthy = sum(
            1
            for p in pods
            if not _meta(p).get("deletionTimestamp") and _meta(p)["name"] not in disrupted and _pod_ready(p)
        )
        allowed = max(0, healthy - desired)
        generation = meta.get("generation", 1)
        old_cond = next((c for c in old.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), {})
        flag = "True" if allowed > 0 else "False"
        condition = {
            "type": "DisruptionAllowed",
            "status": flag,
            "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": old_cond.get("lastTransitionTime")
            if old_cond.get("status") == flag
            else _rfc3339(),
        }
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": [condition],
        }
        if disrupted:
            status["disruptedPods"] = disrupted
        return status

    def _expected_scale(self, pods: list[dict[str, Any]]) -> int:
        """The pods' controllers' scale: a ReplicaSet made here counts its replicas, a
        DaemonSet made here a pod per worker, any other controller (or none) its pods."""
        total = 0
        counted: set[str] = set()
        for pod in pods:
            ref = _controller(pod) or {}
            uid = ref.get("uid") or _meta(pod).get("uid", "")
            wl = self._workloads.get(uid)
            if wl is None:
                total += 1
            elif uid not in counted:
                counted.add(uid)
                total += (
                    wl.replicas
                    if wl.kind == "ReplicaSet"
                    else sum(1 for n, r in self.roles.items() if r == "worker" and n not in self._missing)
                )
        return total

    @staticmethod
    def _same_status(old: dict[str, Any], new: dict[str, Any]) -> bool:
        keys = (
            "observedGeneration",
            "disruptionsAllowed",
            "currentHealthy",
            "desiredHealthy",
            "expectedPods",
        )
        if any(old.get(k) != new.get(k) for k in keys):
            return False
        if (old.get("disruptedPods") or {}) != (new.get("disruptedPods") or {}):
            return False
        strip = [({**c, "lastTransitionTime": None}) for c in old.get("conditions") or []]
        return strip == [{**c, "lastTransitionTime": None} for c in new["conditions"]]

    def _check_budget(self, key: str, status: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        seen = self._pdbs.setdefault(key, _PdbSeen())
        healthy, desired, expected = (
            status["currentHealthy"],
            status["desiredHealthy"],
            status["expectedPods"],
        )
        if expected > 0 and healthy >= expected:
            seen.healthy_once = True
        if not seen.healthy_once or healthy >= desired:
            seen.violation = None
            return
        if seen.violation == (healthy, desired):
            return
        seen.violation = (healthy, desired)
        unhealthy = sorted(
            f"{_meta(p)['name']} on {p.get('spec', {}).get('nodeName')}"
            for p in pods
            if _meta(p).get("deletionTimestamp") or not _pod_ready(p)
        )
        self.pdb_violations.append(
            f"{time.monotonic():.3f} {key}: currentHealthy {healthy} < desiredHealthy {desired} "
            f"(expectedPods {expected}; not healthy: {', '.join(unhealthy) or 'none listed'})"
        )


__all__ = ["KubeApi", "KubeError", "SimulatedKubelets"]
