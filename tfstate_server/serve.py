"""Running the app: listen, log readiness, and on SIGTERM/SIGINT finish in-flight requests."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from tfstate_server.app import ServerConfig, make_app
from tfstate_server.drain import Drain

log = logging.getLogger("tfstate_server")
IO_THREADS = 32
GC_THRESHOLD = 100_000


class ListenError(OSError):
    pass


async def serve(config: ServerConfig, host: str, port: int, shutdown_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    # Store calls block (fsync, boto3): they run here, so the event loop keeps serving.
    executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="tfstate-io")
    loop.set_default_executor(executor)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Parsing a large state allocates ~10^5 short-lived objects; with the default
    # thresholds the collector runs dozens of times per parse (~30% of its time).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    drain = Drain()
    app = make_app(config, drain)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
        for address in runner.addresses:
            bound_host, bound_port = address[0], address[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            log.info("listening on http://%s:%d store=%s", shown, bound_port, config.store.url)
        await stop.wait()
        await site.stop()  # no new connections
        log.info("shutting down: finishing %d in-flight request(s)", drain.active)
        if not await drain.wait_idle(shutdown_timeout):
            log.warning("requests still running after %.0fs; closing anyway", shutdown_timeout)
    finally:
        # Closes connections (waiting for handlers once more); the executor then
        # finishes any store call already started.
        await runner.cleanup()
        executor.shutdown(wait=True)
        config.store.close()
    log.info("stopped")
