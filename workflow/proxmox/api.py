"""A small Proxmox VE API client: token authentication, TLS as the provider does it, one
connection pool shared by the threads that read the cluster at once.

The token (`user@realm!tokenid=secret`) only ever travels in the Authorization header:
no message, exception or log line built here holds it.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import urllib3

from config import InfraConfig
from workflow.errors import WorkflowError

REQUEST_TIMEOUT = 5.0
# Parallel reads: enough to read a few hundred guests' configs in well under a second on a
# local Proxmox, few enough not to look like an attack on a busy one.
PARALLEL = 12

CONNECTION_PREFIX = re.compile(r"^(<[^>]*>|\w+Connection(Pool)?\([^)]*\)): ")
T = TypeVar("T")
R = TypeVar("R")


TOKEN_ENV = "PROXMOX_VE_API_TOKEN"  # where the workflow hands tofu the token


class ProxmoxError(OSError):
    """A request that failed: `status` is the HTTP status (None when no answer came),
    `message` what Proxmox (or the network) said, in one line, never the token."""

    def __init__(self, status: int | None, message: str, path: str = "") -> None:
        super().__init__(f"HTTP {status} {message}".strip() if status is not None else message)
        self.status = status
        self.message = message
        self.path = path

    @property
    def unreachable(self) -> bool:
        """No answer (refused, reset, timed out), or 595: Proxmox's own "no route to host"
        for a request about a host that is offline."""
        return self.status is None or self.status == 595

    @property
    def denied(self) -> bool:
        return self.status == 403


class ProxmoxApi:
    def __init__(
        self, endpoint: str, token: str, *, insecure: bool, timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.base = self.endpoint + "/api2/json"
        self.token_id = token.partition("=")[0]
        # As the provider (Go) sends it: UTF-8, control characters other than tab refused.
        self._authorization = "PVEAPIToken=" + token
        # Refused here: an HTTP library's own error for such a value may quote it, the secret.
        self._sendable = all(c == "\t" or " " <= c != "\x7f" for c in token)
        ctx = ssl.create_default_context()
        if insecure:  # as the provider's `insecure`: a self-signed certificate is accepted
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            # The operator chose it (proxmox_insecure): no warning on every request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=PARALLEL,
            ssl_context=ctx,
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
        )

    def close(self) -> None:
        self._pool.clear()

    # ------------------------------------------------------------------ requests

    def request(self, method: str, path: str, form: Mapping[str, str] | None = None) -> Any:
        """`data` of the answer; ProxmoxError when there is none."""
        if not self._sendable:
            raise ProxmoxError(None, "the API token holds a control character (a line break?)", path)
        body = urllib.parse.urlencode(form or {}) if method in ("POST", "PUT") else None
        # urllib3 sends a bytes value as it is: the token as UTF-8, where str would be Latin-1.
        headers: dict[str, Any] = {"Authorization": self._authorization.encode()}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            response = self._pool.request(
                method, self.base + path, body=body, headers=headers, preload_content=True, redirect=False
            )
        except urllib3.exceptions.SSLError as exc:
            raise ProxmoxError(None, f"TLS: {_reason(exc)}", path) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ProxmoxError(None, _reason(exc), path) from None
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {}
        if response.status >= 400:
            message = _message(data) or response.reason or "error"
            raise ProxmoxError(response.status, message, path)
        return data.get("data") if isinstance(data, dict) else None

    def get(self, path: str, **query: Any) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self.request("GET", path)

    def many(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn over items on PARALLEL threads, in order (fn catches what it expects)."""
        work = list(items)
        if len(work) <= 1:
            return [fn(item) for item in work]
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(work))) as pool:
            return list(pool.map(fn, work))

    # --------------------------------------------------------------- VM helpers

    @staticmethod
    def vm_path(host: str, vm_id: int, kind: str = "qemu") -> str:
        return f"/nodes/{urllib.parse.quote(host, safe='')}/{kind}/{vm_id}"

    def vm_status(self, host: str, vm_id: int) -> dict[str, Any]:
        return self.get(self.vm_path(host, vm_id) + "/status/current") or {}

    def vm_config(self, host: str, vm_id: int, kind: str = "qemu") -> dict[str, Any]:
        return self.get(self.vm_path(host, vm_id, kind) + "/config") or {}

    def set_vm_config(self, host: str, vm_id: int, values: dict[str, str]) -> None:
        self.request("PUT", self.vm_path(host, vm_id) + "/config", values)

    def guests(self) -> list[dict[str, Any]]:
        """Every VM and container the token may see (`/cluster/resources?type=vm`)."""
        return [g for g in self.get("/cluster/resources", type="vm") or [] if isinstance(g, dict)]


def _message(data: Any) -> str:
    """Proxmox's error text: `message`, and the per-field `errors` of a 400."""
    if not isinstance(data, dict):
        return ""
    message = str(data.get("message") or "").strip().splitlines()
    text = message[0] if message else ""
    errors = data.get("errors")
    if isinstance(errors, dict) and errors:
        detail = "; ".join(f"{k}: {str(v).strip()}" for k, v in sorted(errors.items()))
        text = f"{text} ({detail})" if text else detail
    return text


def _reason(exc: BaseException) -> str:
    """Why a request got no answer, in one phrase: the innermost cause urllib3 wraps."""
    inner: object = exc
    while isinstance(inner, urllib3.exceptions.HTTPError) and getattr(inner, "reason", None) is not None:
        inner = getattr(inner, "reason")  # noqa: B009 (MaxRetryError, ProtocolError... each have one)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    text = str(inner or exc)
    # urllib3 prefixes the connection object (`HTTPSConnection(host=..., port=...): ...`).
    return CONNECTION_PREFIX.sub("", text)


def api_from_env(config: InfraConfig, env: Mapping[str, str]) -> ProxmoxApi:
    """A client with the token tofu gets (PROXMOX_VE_API_TOKEN), for the config's Proxmox."""
    token = env.get(TOKEN_ENV)
    if config.proxmox is None:
        raise WorkflowError(
            "infrastructure is disabled (proxmox_api_url / proxmox_node unset): there is no Proxmox"
        )
    if not token:
        raise WorkflowError(
            f"no Proxmox API token ({TOKEN_ENV}): put proxmox_api_token_id and proxmox_api_token_secret "
            "in cluster.yaml and run `task configure`"
        )
    return ProxmoxApi(config.proxmox.endpoint, token, insecure=config.proxmox.insecure)
