"""moto_server with one request at a time: `python serial_moto.py HOST PORT`.

Real S3 and R2 apply a conditional write (If-None-Match: *, If-Match) atomically. moto
checks the condition and then stores the object as two steps, and its server runs
requests on threads, so two racing conditional creates can both succeed there: a fault
of the emulator, not of the store under test. Serializing requests makes each one
atomic, as on the real services; the app is moto's own, unchanged.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def serialized(app: WSGIApp) -> WSGIApp:
    lock = threading.Lock()

    def serve_one(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))  # the whole answer under the lock

    return serve_one


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
