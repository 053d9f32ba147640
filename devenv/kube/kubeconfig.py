"""Kubeconfig files as `talosctl kubeconfig` writes them: one cluster, one user, one
context (current), the CA and the client certificate embedded as base64 data."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from devenv.pki import KeyPair

CLUSTER_NAME = "harness"


def write_kubeconfig(path: Path, *, server: str, ca: bytes, client: KeyPair, user: str) -> Path:
    """Write the kubeconfig (0600) and return its path."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "contexts": [
            {"name": user, "context": {"cluster": CLUSTER_NAME, "namespace": "default", "user": user}}
        ],
        "current-context": user,
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(client.cert), "client-key-data": b64(client.key)},
            }
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
