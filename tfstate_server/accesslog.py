"""One access log line per request, and the request metrics: never headers, bodies or
query strings beyond ?ID.

The line is a log record handed to the log queue (see logsetup): built here, formatted
and written by the log thread.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from tfstate_server.logsetup import ACCESS_LOGGER
from tfstate_server.metrics import METRICS

log = logging.getLogger(ACCESS_LOGGER)
_MAX_PATH = 200
_FORMAT = "%s %s %s %d user=%s state=%s lock=%s version=%s %.1fms"


def _printable(text: str) -> str:
    # The path comes from the client: keep log lines one line and bounded.
    text = text[:_MAX_PATH]
    return text if text.isprintable() else text.encode("unicode_escape").decode()


@web.middleware
async def access_log_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        duration = time.perf_counter() - start
        metrics = request.app[METRICS]
        if metrics is not None:
            metrics.observe(request, status, duration)
        if log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
            _log_line(request, status, duration * 1000)


def _log_line(request: web.Request, status: int, duration_ms: float) -> None:
    args = (
        request.remote or "-",
        request.method,
        _printable(request.raw_path.split("?", 1)[0]),
        status,
        request.get("tfstate_user", "-"),
        request.get("tfstate_name", "-"),
        _printable(str(request.get("tfstate_lock") or "-")),
        request.get("tfstate_version", "-"),
        duration_ms,
    )
    # makeRecord + handle: what log.info does, without looking up the caller's frame.
    log.handle(log.makeRecord(ACCESS_LOGGER, logging.INFO, "", 0, _FORMAT, args, None))
