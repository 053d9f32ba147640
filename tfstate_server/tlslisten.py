"""The HTTPS listener: a plain-HTTP request on the TLS port gets a 400 that says so.

An SSL server socket cannot answer a client that speaks plain HTTP: the handshake fails
and the client only sees the connection close (`EOF`, "empty reply"). So connections are
accepted here, and the first byte is peeked at without reading it: a TLS handshake record
(0x16) goes on to the TLS transport with the connection untouched; anything else is
answered `400` in plain HTTP, as Go's servers do, and closed. A connection that sends
nothing within the header timeout is closed; beyond max_waiting such connections (the
connection cap), the oldest is closed for a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from tfstate_server.ratelog import RateLimitedLog

log = logging.getLogger("tfstate_server")
TLS_HANDSHAKE = 0x16
_PLAIN_BODY = b'{"error":"this server speaks HTTPS: use https:// in the address"}'
PLAIN_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_PLAIN_BODY)).encode() + b"\r\n\r\n" + _PLAIN_BODY
)


class TLSListener:
    """Like the asyncio.Server loop.create_server returns, as far as serve() uses it."""

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        header_timeout: float,
        max_waiting: int = 1024,
    ) -> None:
        self.sockets = sockets
        self.max_waiting = max_waiting
        self.factory = factory
        self.context = context
        self.header_timeout = header_timeout
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiting: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._errors = RateLimitedLog(log, "accept errors")
        self._closed = False
        for sock in sockets:
            self._spawn(self._accept(sock))

    @classmethod
    async def start(
        cls,
        host: str,
        port: int,
        factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        header_timeout: float,
        backlog: int,
        max_waiting: int = 1024,
    ) -> TLSListener:
        """Bind every address of host, as loop.create_server does; OSError if one fails."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            for sock in sockets:
                sock.close()
            raise
        return cls(sockets, factory, context, header_timeout, max_waiting)

    def _spawn(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, listening: socket.socket) -> None:
        while not self._closed:
            try:
                conn, _ = await self._loop.sock_accept(listening)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # out of descriptors, aborted connections: go on
                if self._closed:
                    return
                self._errors.log("accept failed: %s", exc.strerror or exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._waiting) >= self.max_waiting:  # a flood of silent connections
                self._give_up(next(iter(self._waiting)))  # the oldest goes
            fd = conn.fileno()
            timer = self._loop.call_later(self.header_timeout, self._give_up, fd)
            self._waiting[fd] = (conn, timer)
            self._loop.add_reader(fd, self._first_byte, fd)

    def _forget(self, fd: int) -> socket.socket | None:
        entry = self._waiting.pop(fd, None)
        if entry is None:
            return None
        conn, timer = entry
        timer.cancel()
        self._loop.remove_reader(fd)
        return conn

    def _give_up(self, fd: int) -> None:
        conn = self._forget(fd)
        if conn is not None:
            conn.close()

    def _first_byte(self, fd: int) -> None:
        conn = self._waiting[fd][0]
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return  # not yet: the reader stays
        except OSError:
            first = b""
        forgotten = self._forget(fd)
        assert forgotten is conn
        if not first:
            conn.close()
        elif first[0] == TLS_HANDSHAKE:
            self._spawn(self._handshake(conn))
        else:
            self._refuse_plain(conn)

    def _refuse_plain(self, conn: socket.socket) -> None:
        # Read what the request sent so far, so closing sends a FIN, not a reset that
        # could reach the client before the answer.
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass
        with contextlib.suppress(OSError):
            conn.send(PLAIN_ANSWER)
            conn.shutdown(socket.SHUT_WR)
        conn.close()

    async def _handshake(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self.factory, conn, ssl=self.context, ssl_handshake_timeout=self.header_timeout
            )
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, ssl.SSLError, TimeoutError, EOFError):
            conn.close()  # a failed handshake: the client was told by an alert, if at all

    def close(self) -> None:
        """No new connections; connections not yet past their handshake are closed."""
        if self._closed:
            return
        self._closed = True
        for fd in list(self._waiting):
            self._give_up(fd)
        for task in list(self._tasks):
            task.cancel()  # accept loops and handshakes; the loop lets go of their sockets
        # Closed once the cancelled accepts have let go of them (callbacks run in order).
        self._loop.call_soon(self._close_sockets)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
