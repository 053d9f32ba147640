"""The HTTP API: the tfstate-worker's routes, plus versions, on aiohttp."""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tfstate_server.api.accesslog import access_log_middleware
from tfstate_server.api.drain import Drain
from tfstate_server.auth import REALM_HEADER, Credentials
from tfstate_server.faults import StoreFault
from tfstate_server.locking import lockinfo
from tfstate_server.locking.locker import Locker, LockHeld, LockNotHeld
from tfstate_server.locking.lockinfo import InvalidLockInfo, LockInfo
from tfstate_server.metrics import METRICS, Metrics
from tfstate_server.names import StateKey, is_valid_name
from tfstate_server.offload import in_thread
from tfstate_server.ratelog import RateLimitedLog
from tfstate_server.statebody import HistoryPolicy, InvalidState, StateConflict, StateMeta, parse_state
from tfstate_server.storage.state_store import StateStore, WriteRequest

log = logging.getLogger("tfstate_server")
ANONYMOUS = "anonymous"  # the namespace when auth is off
STORE_ERRORS = RateLimitedLog(log, "store errors")
# Larger bodies are checked in a thread, so the event loop never stalls for long.
INLINE_PARSE_BYTES = 4 << 20


@dataclass(frozen=True)
class ServerConfig:
    states: StateStore
    locks: Locker
    credentials: Credentials | None  # None: no auth (explicitly asked for)
    max_state_bytes: int
    history: HistoryPolicy
    allow_force_unlock: bool = True
    body_timeout: float = 60.0  # seconds for a whole request body to arrive
    client_cert_required: bool = False  # mutual TLS: see tls.py


CONFIG = web.AppKey("config", ServerConfig)
Handler = Callable[[web.Request, StateKey, list[str]], Awaitable[web.StreamResponse]]


class ClientError(Exception):
    """A request this server refuses before doing anything: status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _locked(holder: LockInfo) -> web.Response:
    # Clients parse a 423 body as LockInfo to tell the user who holds the lock.
    return web.Response(status=423, body=holder.to_json(), content_type="application/json")


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over limit (without reading all of it); a body that
    does not arrive within the configured time is a 408 (slow clients hold no slot)."""
    timeout = request.app[CONFIG].body_timeout
    try:
        async with asyncio.timeout(timeout):
            return await _read_body_now(request, limit)
    except TimeoutError:
        raise ClientError(408, f"request body not received within {timeout:g} s") from None
    except ConnectionError:
        # The client went away mid-body: its mistake, nothing was written; the answer
        # is for the access log only.
        raise ClientError(400, "connection closed before the body was complete") from None


async def _read_body_now(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None:
        if request.content_length > limit:
            return None
        if request.content_length == 0:
            return b""
        try:
            return await request.content.readexactly(request.content_length)
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("client sent less than its Content-Length") from None
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


# -- state --------------------------------------------------------------------------


async def get_state(request: web.Request, key: StateKey, _: list[str]) -> web.StreamResponse:
    body = await request.app[CONFIG].states.get(key)
    if body is None:
        return web.Response(status=204)  # no state yet
    return web.Response(body=body, content_type="application/json")


def _query_id(request: web.Request) -> str | None:
    """The ?ID of a write, read strictly from the raw query: one at most, UTF-8."""
    raw = request.raw_path.partition("?")[2]
    found: list[str] = []
    for pair in raw.split("&") if raw else []:
        name, _, value = pair.partition("=")
        try:
            name = urllib.parse.unquote_plus(name, errors="strict")
            value = urllib.parse.unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise ClientError(400, "query is not UTF-8") from None
        if name == "ID":
            found.append(value)
    if len(found) > 1:
        raise ClientError(400, "query has more than one ID")
    if found and not found[0].isprintable():
        raise ClientError(400, "lock ID in the query has control characters")
    return found[0] if found and found[0] else None


async def post_state(request: web.Request, key: StateKey, _: list[str]) -> web.StreamResponse:
    config = request.app[CONFIG]
    lock_id = _query_id(request)
    request["tfstate_lock"] = lock_id
    body = await _read_body(request, config.max_state_bytes)
    if body is None:
        return _error(413, f"state larger than {config.max_state_bytes} bytes")
    if not body:
        return _error(400, "empty body")
    # The JSON check is fast (simdjson): done first, so a body it refuses never touches the
    # store, which checks the Content-MD5 as it stores the body.
    try:
        if len(body) <= INLINE_PARSE_BYTES:
            meta = parse_state(body)
        else:
            meta = await in_thread(parse_state, body)
    except InvalidState as exc:
        return _error(400, str(exc))
    write = WriteRequest(
        key=key,
        body=body,
        meta=meta,
        who=request["tfstate_user"],
        created=lockinfo.now_rfc3339(),
        content_md5=request.headers.get("Content-MD5"),
    )
    check = functools.partial(_check_history, config.history, meta)
    try:
        version = await config.states.put(write, lock_id, check)
    except InvalidState as exc:
        return _error(400, str(exc))
    except LockHeld as exc:
        return _locked(exc.holder)
    except LockNotHeld:
        return _error(409, f"lock {lock_id} is not held (was it force-unlocked?)")
    except StateConflict as exc:
        return _error(409, str(exc))
    request["tfstate_version"] = version
    metrics = request.app[METRICS]
    if metrics is not None:
        metrics.state_writes.inc()
        metrics.bytes_written.inc(len(body))
    return web.Response(status=200)


def _check_history(policy: HistoryPolicy, new: StateMeta, current: StateMeta | None) -> None:
    policy.check(current, new)


# -- locks --------------------------------------------------------------------------


async def get_lock(request: web.Request, key: StateKey, _: list[str]) -> web.StreamResponse:
    holder = await request.app[CONFIG].locks.holder(key)
    if holder is None:
        return web.Response(status=204)
    return web.Response(body=holder.to_json(), content_type="application/json")


async def lock(request: web.Request, key: StateKey, _: list[str]) -> web.StreamResponse:
    body = await _read_body(request, lockinfo.MAX_LOCK_BODY)
    if body is None:
        return _error(413, "lock body too large")
    try:
        info = lockinfo.parse(body)
    except InvalidLockInfo as exc:
        return _error(400, str(exc))
    request["tfstate_lock"] = info.id
    locks = request.app[CONFIG].locks
    metrics = request.app[METRICS]
    try:
        await locks.acquire(key, info)
    except LockHeld as exc:
        if metrics is not None:
            metrics.lock_conflicts.inc()
        return _locked(exc.holder)
    except StateConflict as exc:
        return _error(409, str(exc))
    if metrics is not None:
        metrics.lock_grants.inc()
    return web.Response(body=info.to_json(), content_type="application/json")


def _unlock_id(body: bytes) -> str:
    """The ID from an UNLOCK body. Terraform resends its LOCK body; OpenTofu >= 1.10
    sends LockInfo whose other fields are zero values on force-unlock."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidLockInfo("unlock body is not UTF-8 JSON") from None
    lock_id = data.get("ID") if isinstance(data, dict) else None
    if not isinstance(lock_id, str) or not lock_id:
        raise InvalidLockInfo("unlock body has no ID")
    return lock_id


async def unlock(request: web.Request, key: StateKey, _: list[str]) -> web.StreamResponse:
    config = request.app[CONFIG]
    body = await _read_body(request, lockinfo.MAX_LOCK_BODY)
    if body is None:
        return _error(413, "unlock body too large")
    lock_id: str | None
    if body.strip():
        try:
            lock_id = _unlock_id(body)
        except InvalidLockInfo as exc:
            return _error(400, str(exc))
        request["tfstate_lock"] = lock_id
    else:
        # `terraform force-unlock ID` never sends the ID: an empty body is a force-unlock.
        lock_id = None
        request["tfstate_lock"] = "(force)"
        if not config.allow_force_unlock:
            holder = await config.locks.holder(key)
            if holder is None:
                return web.Response(status=200)
            return _locked(holder)
    try:
        await config.locks.release(key, lock_id)
    except LockHeld as exc:
        return _locked(exc.holder)
    except StateConflict as exc:
        return _error(409, str(exc))
    return web.Response(status=200)


# -- versions -----------------------------------------------------------------------


async def list_versions(request: web.Request, key: StateKey, _: list[str]) -> web.StreamResponse:
    versions = await request.app[CONFIG].states.versions(key)
    return _json([v.to_json() for v in versions])


async def get_version(request: web.Request, key: StateKey, rest: list[str]) -> web.StreamResponse:
    # isdigit() alone would let "²" or Arabic-Indic digits through to int().
    if not (rest[0].isascii() and rest[0].isdigit()) or len(rest[0]) > 19:
        return _error(400, "serial must be a non-negative integer of ASCII digits")
    body = await request.app[CONFIG].states.version(key, int(rest[0]))
    if body is None:
        return _error(404, f"no kept version with serial {rest[0]}")
    return web.Response(body=body, content_type="application/json")


# -- routing ------------------------------------------------------------------------

# (segments after /states/<name>) -> method -> handler
ROUTES: dict[tuple[str, ...], dict[str, Handler]] = {
    (): {"GET": get_state, "POST": post_state},
    ("lock",): {
        "GET": get_lock,
        "LOCK": lock,
        "PUT": lock,
        "UNLOCK": unlock,
        "DELETE": unlock,
    },
    ("versions",): {"GET": list_versions},
    ("versions", "*"): {"GET": get_version},
}
ROUTE_LABELS = {(): "state", ("lock",): "lock", ("versions",): "versions", ("versions", "*"): "version"}


def _method_not_allowed(methods: Iterable[str]) -> web.Response:
    response = _error(405, "method not allowed")
    response.headers["Allow"] = ", ".join(methods)
    return response


def _has_client_cert(request: web.Request) -> bool:
    transport = request.transport
    return bool(transport is not None and transport.get_extra_info("peercert"))


def _authenticate(request: web.Request) -> str | None:
    credentials = request.app[CONFIG].credentials
    if credentials is None:
        return ANONYMOUS
    return credentials.check(request.headers.get("Authorization"))


async def dispatch(request: web.Request) -> web.StreamResponse:
    # Route on the raw path and decode each segment alone, so an encoded "/" or ".."
    # can never become a path separator or a traversal.
    raw = request.raw_path.split("?", 1)[0]
    try:
        segments = [urllib.parse.unquote(s, errors="strict") for s in raw.split("/")[1:]]
    except UnicodeDecodeError:
        return _error(400, "path is not UTF-8")
    if segments == ["health"]:
        request["tfstate_route"] = "health"
        if request.method != "GET":
            return _method_not_allowed(("GET",))
        return _json({"status": "ok"})
    if not segments or segments[0] != "states" or len(segments) < 2:
        return _error(404, "not found")
    if request.app[CONFIG].client_cert_required and not _has_client_cert(request):
        return _error(403, "a client certificate is required (mutual TLS)")
    rest = segments[2:]
    pattern: tuple[str, ...] | None = tuple(rest) if len(rest) <= 1 else None
    if len(rest) == 2 and rest[0] == "versions":
        pattern = ("versions", "*")
    methods = ROUTES.get(pattern) if pattern is not None else None
    if methods is not None:
        request["tfstate_route"] = ROUTE_LABELS[pattern]  # type: ignore[index]
    user = _authenticate(request)
    if user is None:
        return web.Response(
            status=401,
            headers={"WWW-Authenticate": REALM_HEADER},
            body=b'{"error":"unauthorized"}',
            content_type="application/json",
        )
    request["tfstate_user"] = user
    name = segments[1]
    if not is_valid_name(name):
        return _error(400, "state name must be one path segment of [A-Za-z0-9._-]")
    request["tfstate_name"] = name
    if methods is None:
        return _error(404, "not found")
    handler = methods.get(request.method)
    if handler is None:
        return _method_not_allowed(methods)
    key = StateKey(user, name)
    try:
        return await handler(request, key, rest[1:])
    except ClientError as exc:
        response = _error(exc.status, exc.reason)
        if exc.status in (400, 408):
            response.force_close()  # the rest of a body may still come
        return response
    except StoreFault as exc:
        # The details (paths, endpoints) go to the log, at a bounded rate; the client
        # gets the reason, and a hint to its retry logic (go-retryablehttp honours
        # Retry-After on 503).
        STORE_ERRORS.log("%s %s: %s (%s)", request.method, key, exc.reason, exc.detail)
        metrics = request.app[METRICS]
        if metrics is not None:
            metrics.store_fault(exc.status)
        response = _error(exc.status, exc.reason)
        if exc.status == 503:
            response.headers["Retry-After"] = "5"
        return response


def make_app(
    config: ServerConfig,
    drain: Drain | None = None,
    *extra: Callable[..., Awaitable[web.StreamResponse]],
    metrics: Metrics | None = None,
) -> web.Application:
    middlewares = [*extra, access_log_middleware] + ([drain.middleware] if drain else [])
    # Bodies are read by the handlers with their own limits.
    app = web.Application(middlewares=middlewares, client_max_size=1 << 40)
    app[CONFIG] = config
    app[METRICS] = metrics
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
