"""A small JSON client for the Kubernetes API over HTTPS with a client certificate: one
kept-alive connection per thread, (status, body) answers, no retries but one for a kept-alive
connection the server closed.

Hand-written rather than the official client on purpose: the harness reads and writes raw
objects (status subresources, merge patches, collection deletes) in a background thread
at a high rate, and must not share the code under test's client library.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from devenv.kube.errors import KubeError

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0


def request_once(
    conn: http.client.HTTPSConnection,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    """One request on conn: (HTTP status, JSON body); a body that is not a JSON object
    (/readyz's "ok") comes back as {"text": ...}."""
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


class ApiClient:
    """Requests to one loopback HTTPS server, as the holder of a client certificate."""

    def __init__(self, url: str, ctx: ssl.SSLContext) -> None:
        parts = urlsplit(url)
        if parts.hostname != HOST or parts.port is None:
            raise KubeError(f"the harness talks to {HOST} only, not {url!r}")
        self.url = url
        self.port = parts.port
        self.ctx = ctx
        self._local = threading.local()
        self._connections: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def fresh_connection(self, timeout: float = REQUEST_TIMEOUT) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(HOST, self.port, context=self.ctx, timeout=timeout)

    def probe(self, path: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """A request on a connection of its own (a health check while the server starts)."""
        conn = self.fresh_connection(timeout)
        try:
            return request_once(conn, "GET", path)
        finally:
            conn.close()

    def _connection(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.fresh_connection()
            self._local.conn = conn
            with self._lock:
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
        """(HTTP status, JSON body). Patches: content_type "application/merge-patch+json"
        or "application/strategic-merge-patch+json"."""
        for attempt in range(2):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                return request_once(conn, method, path, body, content_type)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                self._local.conn = None
                if attempt or not reused:  # only a kept-alive connection closed by the server is retried
                    raise KubeError(f"{method} {path}: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
