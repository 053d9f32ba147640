"""Free TCP ports on loopback, for the servers the tests and benches start."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now (held open together while chosen, so none repeats).
    Another process may still take one before it is used: callers that cannot retry bind
    at once."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """One port free now (see free_ports)."""
    return free_ports(1)[0]
