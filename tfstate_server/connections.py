"""Keeping slow and idle clients from starving real ones.

- A cap on open connections, below the process's open-file limit, so accept() never
  fails for lack of descriptors while the store still has some for its files.
- At the cap, a new connection evicts the oldest one that is not running a request
  (idle keep-alive, or headers still arriving): a few hundred half-sent requests
  cannot lock out an authenticated client. When every connection is busy, the new
  one gets a 503 and is closed.
- Header read timeout: aiohttp's keep-alive timer runs from the moment a connection is
  made and from the end of each response until a request's headers are complete, so
  it is set to the header timeout (see serve.py). Body timeouts are in app.py.
- Errors the event loop reports (accept failures among them) are logged at a bounded
  rate, so a storm of them cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from tfstate_server.ratelog import RateLimitedLog

log = logging.getLogger("tfstate_server")
DEFAULT_MAX_CONNECTIONS = 1024
# Descriptors kept for everything but client connections: the store's files (up to
# two per I/O thread), the listening socket, the event loop, logs, S3 connections.
RESERVED_FDS = 96
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (as Go programs do); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(requested: int, open_files: int) -> int:
    return max(8, min(requested, open_files - RESERVED_FDS))


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.WriteTransport, transport).write(_BUSY)  # uvloop's is not a subclass
        transport.close()


class ConnectionGuard:
    """A protocol factory around aiohttp's, for loop.create_server."""

    def __init__(self, cap: int) -> None:
        self.server: web.Server | None = None  # set once the runner is set up
        self.cap = cap
        self.busy: set[Any] = set()  # protocols running a request (see middleware)
        self._closing: set[Any] = set()
        self._last_warning = 0.0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        self.busy.add(protocol)
        try:
            return await handler(request)
        finally:
            self.busy.discard(protocol)

    def __call__(self) -> asyncio.BaseProtocol:
        assert self.server is not None
        connections = self.server.connections  # oldest first
        self._closing.intersection_update(connections)
        if len(connections) - len(self._closing) >= self.cap:
            victim = next(
                (c for c in connections if c not in self.busy and c not in self._closing),
                None,
            )
            if victim is None:
                self._warn("all %d connections are running requests: refusing a new one", self.cap)
                return _Refuse()
            self._warn("at the cap of %d connections: closing the oldest idle one", self.cap)
            self._closing.add(victim)
            victim.force_close()
        return self.server()

    def _warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 10:
            self._last_warning = now
            log.warning(message, *args)


class RateLimitedLoopErrors:
    """An event-loop exception handler (accept failures among what it reports) that
    logs at a bounded rate."""

    def __init__(self) -> None:
        self._log = RateLimitedLog(log, "event loop errors")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self._log.log("%s%s", context.get("message", "event loop error"), f": {exc!r}" if exc else "")
