"""moto_server with one request at a time: `python serial_moto.py HOST PORT`.

Real S3 and R2 apply a conditional write (If-None-Match: *, If-Match) atomically. moto
checks the condition and then stores the object as two steps, and its server runs
requests on threads, so two racing conditional creates can both succeed there: a fault
of the emulator, not of the store under test. Serializing requests makes each one
atomic, as on the real services; the app is moto's own, unchanged.

moto (5.2) also ignores `x-amz-copy-source-if-match` on a copy, which S3 and R2 refuse
with 412 when the source's ETag differs (the store keeps the current state as a version
with such a copy): checked here, under the same lock, before moto sees the request.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import s3_backends
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def serialized(app: WSGIApp) -> WSGIApp:
    lock = threading.Lock()

    def serve_one(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))  # the whole answer under the lock

    return serve_one


PRECONDITION_FAILED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
    b"<Message>At least one of the pre-conditions you specified did not hold</Message>"
    b"<Condition>x-amz-copy-source-If-Match</Condition></Error>"
)


def _etag(bucket: str, key: str) -> str | None:
    try:
        found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key)
    except Exception:  # no such bucket: moto answers that itself
        return None
    return None if found is None else str(found.etag).strip('"')


def copy_conditions(app: WSGIApp) -> WSGIApp:
    def check(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        wanted = environ.get("HTTP_X_AMZ_COPY_SOURCE_IF_MATCH")
        source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if environ.get("REQUEST_METHOD") == "PUT" and wanted and source:
            bucket, _, key = unquote(source.split("?", 1)[0]).lstrip("/").partition("/")
            etag = _etag(bucket, key)
            if etag is not None and etag != wanted.strip('"'):
                start_response("412 Precondition Failed", [("Content-Type", "application/xml")])
                return [PRECONDITION_FAILED]
        return app(environ, start_response)

    return check


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host, port, serialized(copy_conditions(app)), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
