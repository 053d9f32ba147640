"""Concurrency and crashes: contending lockers, several replicas, SIGKILL and SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tfstate_harness import (
    Moto,
    Paths,
    Server,
    basic,
    lock_body,
    request,
    running_server,
    state_body,
    wait_until,
)

LOCKERS = 20
ROUNDS = 8


@pytest.fixture
def replicas(store: tuple[str, dict[str, str]], tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two server processes sharing one store (one directory, or one bucket)."""
    url, env = store
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(url, tmp_path / "a", **env) as first,
        running_server(url, tmp_path / "b", **env) as second,
    ):
        yield first, second


def contend(ports: list[int], p: Paths, round_number: int) -> list[int]:
    """LOCKERS threads LOCK at once (spread over ports); returns the winners' indexes."""
    barrier = threading.Barrier(LOCKERS)

    def attempt(index: int) -> tuple[int, int, str]:
        body = lock_body(f"r{round_number}-{index}")
        barrier.wait(timeout=30)
        reply = request(ports[index % len(ports)], "LOCK", p.lock, body)
        holder = reply.json()["ID"] if reply.status in (200, 423) else ""
        return index, reply.status, holder

    with ThreadPoolExecutor(LOCKERS) as pool:
        results = list(pool.map(attempt, range(LOCKERS)))
    winners = [index for index, status, _ in results if status == 200]
    assert {status for _, status, _ in results} <= {200, 423}, results
    assert len(winners) == 1, f"round {round_number}: {len(winners)} holders"
    # Every loser was told the one winner's ID.
    expected = f"r{round_number}-{winners[0]}"
    assert {holder for _, _, holder in results} == {expected}
    return winners


def run_rounds(ports: list[int], p: Paths) -> None:
    for round_number in range(ROUNDS):
        (winner,) = contend(ports, p, round_number)
        lock_id = f"r{round_number}-{winner}"
        assert request(ports[0], "GET", p.lock).json()["ID"] == lock_id
        assert request(ports[-1], "UNLOCK", p.lock, lock_body(lock_id)).status == 200


def test_concurrent_lockers_never_two_holders(server: Server, p: Paths) -> None:
    run_rounds([server.port], p)


def test_concurrent_lockers_across_two_replicas(replicas: tuple[Server, Server], p: Paths) -> None:
    run_rounds([replicas[0].port, replicas[1].port], p)


def test_concurrent_writers_across_replicas_never_go_back(replicas: tuple[Server, Server], p: Paths) -> None:
    """Unlocked writes race on two replicas: the history check holds across them."""
    ports = [replicas[0].port, replicas[1].port]
    serials = list(range(1, 25))
    barrier = threading.Barrier(len(serials))

    def write(serial: int) -> tuple[int, int]:
        barrier.wait(timeout=30)
        return serial, request(ports[serial % 2], "POST", p.state, state_body(serial)).status

    with ThreadPoolExecutor(len(serials)) as pool:
        results = list(pool.map(write, serials))
    accepted = [serial for serial, status in results if status == 200]
    assert {status for _, status in results} <= {200, 409}, results
    assert accepted
    final = json.loads(request(ports[0], "GET", p.state).body)
    assert final["serial"] == max(accepted)
    versions = request(ports[1], "GET", p.versions).json()
    assert sorted(v["serial"] for v in versions) == sorted(accepted)
    history = [v["serial"] for v in reversed(versions)]  # oldest first
    assert history == sorted(history)


def test_server_killed_during_writes(own_server: Server, p: Paths) -> None:
    server = own_server
    assert server.request("LOCK", p.lock, lock_body("writer")).status == 200
    bodies = {serial: state_body(serial, pad=50_000 + serial) for serial in range(1, 10_000)}
    acked: list[int] = []
    refused: list[int] = []  # statuses other than 200: asserted in the test's own thread
    stop = threading.Event()

    def writer() -> None:
        for serial, body in bodies.items():
            if stop.is_set():
                return
            try:
                reply = request(server.port, "POST", f"{p.state}?ID=writer", body, timeout=10)
            except OSError:
                return  # the server is gone
            if reply.status != 200:
                refused.append(reply.status)
                return
            acked.append(serial)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 15 or bool(refused), 120, "15 acknowledged writes")
        server.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        server.proc.wait(20)  # type: ignore[union-attr]
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert refused == [], f"writes refused before the kill: {refused}"
    last = acked[-1]

    server.start()  # same store, same port
    reply = server.request("GET", p.state)
    assert reply.status == 200
    stored = json.loads(reply.body)
    # The last acknowledged write, or the one in flight when the server died: whole.
    assert stored["serial"] in (last, last + 1)
    assert reply.body == bodies[stored["serial"]]
    versions = server.request("GET", p.versions).json()
    assert versions[0]["serial"] == stored["serial"]
    assert server.request("GET", f"{p.versions}/{last}").body == bodies[last]
    # The lock survived too, and writes go on from where they were.
    assert server.request("GET", p.lock).json()["ID"] == "writer"
    assert server.request("POST", f"{p.state}?ID=writer", bodies[last + 2]).status == 200


def test_sigterm_finishes_an_in_flight_write(own_server: Server, p: Paths) -> None:
    server = own_server
    body = state_body(7, pad=200_000)
    head = (
        f"POST {p.state} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {basic()}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        # "100 Continue" means the server is handling this request now.
        assert sock.recv(1024).startswith(b"HTTP/1.1 100")
        sock.sendall(body[:1000])
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        wait_until(lambda: "shutting down" in server.log(), 30, "the server to begin shutdown")
        # New connections are refused while the in-flight request finishes.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        sock.sendall(body[1000:])
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response
    assert server.proc.wait(30) == 0  # type: ignore[union-attr]
    server.start()
    assert server.request("GET", p.state).body == body


def test_s3_current_state_without_its_version_object_is_still_a_version(
    moto: Moto, tmp_path: Path, p: Paths
) -> None:
    """A replica killed between the conditional write and the version copy."""
    bucket = moto.new_bucket()
    with running_server(f"s3://{bucket}/pre", tmp_path, **moto.env) as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
        assert server.request("POST", p.state, state_body(2)).status == 200
        moto.client().delete_object(Bucket=bucket, Key=f"pre/alice/{p.name}.history/0000000002")
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [2, 1]
        assert server.request("GET", f"{p.versions}/2").body == state_body(2)
        assert server.request("POST", p.state, state_body(3)).status == 200
        listed = moto.client().list_objects_v2(Bucket=bucket, Prefix=f"pre/alice/{p.name}.history/")
        assert [o["Key"][-2:] for o in listed["Contents"]] == ["01", "02", "03"]


def test_a_replica_never_serves_a_state_another_replaced(replicas: tuple[Server, Server], p: Paths) -> None:
    """Reads may be served from memory: never after another process wrote."""
    first, second = replicas
    for serial in range(1, 6):
        body = state_body(serial, pad=serial)
        writer, reader = (first, second) if serial % 2 else (second, first)
        assert writer.request("POST", p.state, body).status == 200
        assert reader.request("GET", p.state).body == body
        assert reader.request("GET", p.state).body == body  # now cached: still current
