"""The control plane's certificates and keys, made per run (devenv/pki.py).

One CA signs the serving certificates (kube-apiserver, kube-controller-manager and
kube-scheduler, for 127.0.0.1) and the client certificates: the admin in
`system:masters`, and `system:kube-controller-manager` and `system:kube-scheduler`, the
users Kubernetes' default RBAC grants those components' rights to. The controller
manager signs service-account tokens for its controllers with `sa.key`; the API server
checks them with `sa.pub`. A second CA, which the server does not know, makes the broken
kubeconfigs error tests need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devenv.pki import CertificateAuthority, KeyPair, new_key, pem_key, pem_public_key

API_SERVER_NAMES = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
)
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class ControlPlaneCertificates:
    """PEM data, and the files the processes read under `dir`."""

    dir: Path
    ca: bytes
    serving: dict[str, KeyPair]  # component -> its serving certificate
    clients: dict[str, KeyPair]  # "admin" and the components that call the API server
    other_ca: bytes  # a CA the server does not know: the wrong_ca kubeconfig
    untrusted: KeyPair  # an admin client certificate from other_ca: the API answers 401

    @classmethod
    def create(cls, directory: Path) -> ControlPlaneCertificates:
        ca = CertificateAuthority("kubernetes")
        other = CertificateAuthority("another-kubernetes")
        serving = {
            name: ca.issue(
                name,
                server=True,
                names=API_SERVER_NAMES if name == "kube-apiserver" else ("127.0.0.1", "localhost"),
            )
            for name in COMPONENTS
        }
        clients = {
            "admin": ca.issue("admin", organization="system:masters", client=True),
            "kube-controller-manager": ca.issue("system:kube-controller-manager", client=True),
            "kube-scheduler": ca.issue("system:kube-scheduler", client=True),
        }
        certs = cls(
            dir=directory,
            ca=ca.pem,
            serving=serving,
            clients=clients,
            other_ca=other.pem,
            untrusted=other.issue("admin", organization="system:masters", client=True),
        )
        ca.write(directory / "ca.crt")
        for name, pair in serving.items():
            pair.write(directory, name)
        certs.clients["admin"].write(directory, "admin")
        signing = new_key()
        for name, data in (("sa.key", pem_key(signing)), ("sa.pub", pem_public_key(signing))):
            path = directory / name
            path.write_bytes(data)
            path.chmod(0o600)
        return certs

    def path(self, name: str) -> Path:
        return self.dir / name
