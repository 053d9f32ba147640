"""One access log line per request: never headers, bodies or query strings beyond ?ID."""

from __future__ import annotations

import logging
import time

from aiohttp import web

log = logging.getLogger("tfstate_server.access")
_MAX_PATH = 200


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
        if log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
            _log_line(request, status, (time.perf_counter() - start) * 1000)


def _log_line(request: web.Request, status: int, duration_ms: float) -> None:
    log.info(
        "%s %s %s %d user=%s state=%s lock=%s version=%s %.1fms",
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
