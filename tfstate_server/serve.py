"""Running the app: listen, log readiness, and on SIGTERM/SIGINT finish in-flight requests."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from tfstate_server.app import ServerConfig, make_app
from tfstate_server.connections import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectionGuard,
    RateLimitedLoopErrors,
    connection_cap,
    raise_open_file_limit,
)
from tfstate_server.drain import Drain

log = logging.getLogger("tfstate_server")
IO_THREADS = 32
GC_THRESHOLD = 100_000
CLEANUP_TIMEOUT = 0.05


class ListenError(OSError):
    pass


@dataclass(frozen=True)
class Limits:
    shutdown_timeout: float = 30.0
    header_timeout: float = 10.0  # connection made / last response -> request headers
    max_connections: int = DEFAULT_MAX_CONNECTIONS


async def serve(config: ServerConfig, host: str, port: int, limits: Limits) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(RateLimitedLoopErrors())
    # Store calls block (fsync, boto3): they run here, so the event loop keeps serving.
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="tfstate-io")
    loop.set_default_executor(executor)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # A full parse of a large state (orjson: LockInfo bodies, states with integers
    # beyond 64 bits) allocates ~10^5 short-lived objects; with the default thresholds
    # the collector would run dozens of times per parse.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    drain = Drain()
    cap = connection_cap(limits.max_connections, raise_open_file_limit())
    guard = ConnectionGuard(cap)
    app = make_app(config, drain, guard.middleware)
    # Handlers are waited for by the drain below, within the one shutdown timeout;
    # aiohttp's own wait at cleanup would double it (0 would mean no limit).
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=CLEANUP_TIMEOUT, keepalive_timeout=limits.header_timeout
    )
    await runner.setup()
    assert runner.server is not None
    guard.server = runner.server
    listener: asyncio.AbstractServer | None = None
    try:
        try:
            listener = await loop.create_server(guard, host, port, reuse_address=True, backlog=1024)
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        for sock in listener.sockets:
            address = sock.getsockname()
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            log.info("listening on http://%s:%d store=%s", shown, bound_port, config.store.url)
        log.info(
            "limits: %d connections, headers within %gs, bodies within %gs, states up to %d bytes",
            cap,
            limits.header_timeout,
            config.body_timeout,
            config.max_state_bytes,
        )
        await stop.wait()
        listener.close()  # no new connections
        log.info("shutting down: finishing %d in-flight request(s)", drain.active)
        if not await drain.wait_idle(limits.shutdown_timeout):
            log.warning("requests still running after %gs; closing anyway", limits.shutdown_timeout)
    finally:
        if listener is not None:
            listener.close()
        # Closes connections; store calls already started then run to their end in the
        # executor (a write is either whole or not done).
        await runner.cleanup()
        executor.shutdown(wait=True)
        config.store.close()
    log.info("stopped")
