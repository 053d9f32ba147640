"""Slow and idle clients cannot starve real ones: a connection cap below the open-file
limit with eviction of idle connections, header and body timeouts, a bounded log, and a
shutdown timeout honoured once."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfstate_harness import (
    Paths,
    Server,
    basic,
    lock_body,
    running_server,
    state_body,
    store_files,
    wait_until,
)

HALF_SENT = b"POST /states/idle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"


@contextlib.contextmanager
def half_sent_requests(port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(HALF_SENT)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def log_lines(server: Server) -> int:
    return len(server.log().splitlines())


@pytest.mark.parametrize("open_files", [256, 512])
def test_idle_half_sent_requests_do_not_starve_real_clients(
    store: tuple[str, dict[str, str]], tmp_path: Path, open_files: int
) -> None:
    url, env = store
    p = Paths("real")
    held = open_files - 6  # the case: 250 of 256
    with running_server(url, tmp_path, open_files=open_files, **env) as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
        lines_before = log_lines(server)
        started = time.monotonic()
        with half_sent_requests(server.port, held):
            for method, path, body, status in [
                ("GET", p.state, None, 200),
                ("POST", p.state, state_body(2), 200),
                ("LOCK", p.lock, lock_body("0b5e7a7c-0000-4000-8000-000000000001"), 200),
                ("UNLOCK", p.lock, b"", 200),
            ]:
                begin = time.monotonic()
                reply = server.request(method, path, body, timeout=1.0)
                assert reply.status == status, (method, reply.status, reply.body)
                assert time.monotonic() - begin < 1.0
            time.sleep(1.0)  # let anything the flood causes reach the log
        elapsed = time.monotonic() - started
        assert server.request("GET", p.state).body == state_body(2)
        added = log_lines(server) - lines_before
        # The four access lines, a warning about the cap, and little else.
        assert added <= 4 + 3 * elapsed, server.log()[-3000:]
        assert server.proc is not None and server.proc.poll() is None


def test_header_timeout_closes_half_sent_requests(tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    with (
        running_server(store, tmp_path, "--header-timeout", "0.5") as server,
        half_sent_requests(server.port, 3) as sockets,
    ):
        for sock in sockets:
            sock.settimeout(5)
            begin = time.monotonic()
            assert sock.recv(100) == b""  # closed by the server
            assert time.monotonic() - begin < 3


def test_connection_cap_refuses_when_every_connection_is_busy(tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    with running_server(store, tmp_path, "--max-connections", "8", "--body-timeout", "5") as server:
        busy = []
        try:
            for _ in range(8):  # requests whose bodies never finish: busy, not idle
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                sock.sendall(
                    f"POST /states/slow HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
                    "Content-Length: 1000\r\n\r\n{".encode()
                )
                busy.append(sock)
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                assert extra.recv(100).startswith(b"HTTP/1.1 503")
        finally:
            for sock in busy:
                sock.close()
        # Freed slots serve again; the writes cut short were no server errors.
        wait_until(lambda: server.request("GET", "/health", auth=None).status == 200, 5, "a free slot")
        assert " 500 " not in server.log() and "Traceback" not in server.log()


@pytest.mark.parametrize("sent", [b"", b'{"serial": 2, '], ids=["nothing", "part"])
def test_body_timeout_is_408_and_writes_nothing(tmp_path: Path, sent: bytes) -> None:
    store = (tmp_path / "store").as_uri()
    p = Paths("slowbody")
    with running_server(store, tmp_path, "--body-timeout", "0.5") as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
        before = store_files(store)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                f"POST {p.state} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
                "Content-Length: 5000\r\n\r\n".encode()
                + sent
            )
            begin = time.monotonic()
            answer = sock.recv(4096)
            assert time.monotonic() - begin < 3
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert "not received within 0.5 s" in json.loads(body)["error"]
        assert store_files(store) == before
        assert server.request("GET", p.state).body == state_body(1)


@pytest.mark.parametrize("timeout", [1, 2])
def test_shutdown_timeout_is_honoured_once(tmp_path: Path, timeout: int) -> None:
    store = (tmp_path / "store").as_uri()
    args = ("--shutdown-timeout", str(timeout), "--body-timeout", "60")
    with running_server(store, tmp_path, *args) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            # A write whose body never completes keeps a request in flight.
            sock.sendall(
                f"POST /states/stuck HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n"
                "Content-Length: 1000\r\n\r\n{".encode()
            )
            time.sleep(0.3)
            assert server.proc is not None
            begin = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(30)
            took = time.monotonic() - begin
        assert timeout - 0.1 <= took < timeout + 1.0, took
        assert "still running after" in server.log()
