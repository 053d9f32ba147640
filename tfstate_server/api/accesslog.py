"""One access log line per request, and the request metrics: never headers, bodies or
query strings beyond ?ID.

The line is a tuple handed to the log writer (see logsetup): built here, formatted and
written by the writer's thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tfstate_server import logsetup
from tfstate_server.logsetup import ACCESS_LOGGER
from tfstate_server.metrics import METRICS

log = logging.getLogger(ACCESS_LOGGER)
_MAX_PATH = 200


def _printable(text: str) -> str:
    # The path comes from the client: keep log lines one line and bounded.
    text = text[:_MAX_PATH]
    return text if text.isprintable() else text.encode("unicode_escape").decode()


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        writer = logsetup.WRITER
        if writer is not None:
            if writer.access_enabled:
                writer.access_line(_fields(request, status, duration * 1000))
        elif log.isEnabledFor(logging.INFO):  # not configured by the CLI: plain logging
            log.info(logsetup.ACCESS_TEXT, *_fields(request, status, duration * 1000))


def _fields(request: web.Request, status: int, duration_ms: float) -> tuple[Any, ...]:
    """logsetup.ACCESS_FIELDS, in order."""
    return (
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
