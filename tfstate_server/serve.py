"""Running the app: listen, log readiness, and on SIGTERM/SIGINT finish in-flight requests."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from tfstate_server.api.app import ServerConfig, make_app
from tfstate_server.api.drain import Drain
from tfstate_server.connections import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectionGuard,
    RateLimitedLoopErrors,
    connection_cap,
    raise_open_file_limit,
)
from tfstate_server.heap import keep_freed_memory
from tfstate_server.metrics import Metrics
from tfstate_server.tls import ServerTLS
from tfstate_server.tlslisten import TLSListener

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


async def _serve_metrics(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(metrics.app(), access_log=None, shutdown_timeout=CLEANUP_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(
            exc.errno, f"--metrics-listen: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    for address in runner.addresses:
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        log.info("metrics on http://%s:%d/metrics", shown, address[1])
    return runner


async def serve(
    config: ServerConfig,
    host: str,
    port: int,
    limits: Limits,
    tls: ServerTLS | None = None,
    metrics: Metrics | None = None,
    metrics_address: tuple[str, int] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(RateLimitedLoopErrors())
    # Store calls block (fsync, boto3): they run here, so the event loop keeps serving.
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="tfstate-io")
    loop.set_default_executor(executor)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if tls is not None:
        loop.add_signal_handler(signal.SIGHUP, tls.reload)
    else:
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP: no TLS files to re-read")
    # A full parse of a large state (orjson: LockInfo bodies, states with integers
    # beyond 64 bits) allocates ~10^5 short-lived objects; with the default thresholds
    # the collector would run dozens of times per parse.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    keep_freed_memory()
    drain = Drain()
    cap = connection_cap(limits.max_connections, raise_open_file_limit())
    guard = ConnectionGuard(cap)
    app = make_app(config, drain, guard.middleware, metrics=metrics)
    # Handlers are waited for by the drain below, within the one shutdown timeout;
    # aiohttp's own wait at cleanup would double it (0 would mean no limit).
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=CLEANUP_TIMEOUT, keepalive_timeout=limits.header_timeout
    )
    await runner.setup()
    assert runner.server is not None
    guard.server = runner.server
    listener: asyncio.AbstractServer | TLSListener | None = None
    metrics_runner: web.AppRunner | None = None
    try:
        if metrics is not None and metrics_address is not None:
            metrics_runner = await _serve_metrics(metrics, *metrics_address)
        try:
            if tls is not None:
                listener = await TLSListener.start(
                    host, port, guard, tls.context, limits.header_timeout, backlog=1024, max_waiting=cap
                )
            else:
                listener = await loop.create_server(guard, host, port, reuse_address=True, backlog=1024)
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        scheme = "https" if tls else "http"
        for sock in listener.sockets:
            address = sock.getsockname()
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            log.info("listening on %s://%s:%d store=%s", scheme, shown, bound_port, config.states.url)
        if tls is not None:
            log.info(
                "TLS 1.2+ with %s%s (re-read on SIGHUP)",
                tls.files.cert,
                f", client certificates signed by {tls.files.client_ca}" if tls.files.client_ca else "",
            )
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
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        executor.shutdown(wait=True)
        config.states.close()
        if config.locks is not config.states:
            config.locks.close()
    log.info("stopped")
