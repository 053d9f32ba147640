"""HTTPS: real clients over TLS with a CA made here, mutual TLS, the pair re-read on SIGHUP,
and the wrong protocol on either port."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_clients import CLIENTS, binary, held_lock
from tfstate_harness import (
    Paths,
    Server,
    basic,
    lock_body,
    make_client,
    request,
    running_server,
    state_body,
    wait_until,
)
from tls_certs import CA, Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CA(directory / "ca")
    other = CA(directory / "other", "other ca")
    return {
        "ca": ca,
        "other": other,
        "server": ca.issue("server"),
        "client": ca.issue("client", "client-1", client=True),
        "stranger": other.issue("stranger", "stranger", client=True),
    }


def client_context(ca: CA, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def tls_args(server_cert: Issued, client_ca: CA | None = None) -> list[str]:
    args = ["--tls-cert", str(server_cert.cert), "--tls-key", str(server_cert.key)]
    if client_ca is not None:
        args += ["--tls-client-ca", str(client_ca.cert)]
    return args


@pytest.fixture(scope="module")
def tls_server(pki: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("tls-server")
    ca, cert = pki["ca"], pki["server"]
    assert isinstance(ca, CA) and isinstance(cert, Issued)
    with running_server((tmp / "store").as_uri(), tmp, *tls_args(cert), context=client_context(ca)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("mtls-server")
    ca, cert, client = pki["ca"], pki["server"], pki["client"]
    assert isinstance(ca, CA) and isinstance(cert, Issued) and isinstance(client, Issued)
    context = client_context(ca, client)
    with running_server((tmp / "store").as_uri(), tmp, *tls_args(cert, ca), context=context) as server:
        yield server


def tls_env(ca: CA, client: Issued | None = None) -> dict[str, str]:
    env = {"TF_HTTP_CLIENT_CA_CERTIFICATE_PEM": ca.pem}
    if client is not None:
        env["TF_HTTP_CLIENT_CERTIFICATE_PEM"] = client.cert_pem
        env["TF_HTTP_CLIENT_PRIVATE_KEY_PEM"] = client.key_pem
    return env


@pytest.mark.parametrize("client_name", CLIENTS)
def test_init_apply_lock_force_unlock_over_https(
    client_name: str,
    tls_server: Server,
    pki: dict[str, object],
    p: Paths,
    tools_env: dict[str, str],
    tmp_path: Path,
) -> None:
    ca = pki["ca"]
    assert isinstance(ca, CA)
    client = make_client(binary(client_name, tools_env), tmp_path / "work", tools_env, tls_server, p.name)
    assert client.env["TF_HTTP_ADDRESS"].startswith("https://127.0.0.1:")
    client.env.update(tls_env(ca))
    client.run("init", "-no-color")
    client.run("apply", "-no-color", "-auto-approve")
    state = tls_server.request("GET", p.state).json()
    assert state["outputs"]["label"]["value"] == "one"
    assert held_lock(tls_server, p) is None  # the apply locked and unlocked over TLS

    assert tls_server.request("LOCK", p.lock, lock_body("left-behind")).status == 200
    failed = client.run("plan", "-no-color", "-lock-timeout=0s", check=False)
    assert failed.returncode != 0 and "left-behind" in failed.stderr
    client.run("force-unlock", "-force", "left-behind")
    assert held_lock(tls_server, p) is None
    client.run("apply", "-no-color", "-auto-approve", "-var", "label=two")
    assert tls_server.request("GET", p.state).json()["outputs"]["label"]["value"] == "two"


@pytest.mark.parametrize("client_name", CLIENTS)
def test_a_server_certificate_of_another_ca_is_refused(
    client_name: str,
    tls_server: Server,
    pki: dict[str, object],
    p: Paths,
    tools_env: dict[str, str],
    tmp_path: Path,
) -> None:
    other = pki["other"]
    assert isinstance(other, CA)
    client = make_client(binary(client_name, tools_env), tmp_path / "work", tools_env, tls_server, p.name)
    client.env.update(tls_env(other))
    result = client.run("init", "-no-color", check=False)
    assert result.returncode != 0
    assert "certificate" in result.stderr and "unknown authority" in result.stderr, result.stderr
    # Nor does the system's trust store know the test CA.
    bare = make_client(binary(client_name, tools_env), tmp_path / "bare", tools_env, tls_server, p.name)
    assert bare.run("init", "-no-color", check=False).returncode != 0
    assert tls_server.request("GET", p.state).status == 204  # nothing was written


def test_mutual_tls(
    mtls_server: Server, pki: dict[str, object], p: Paths, tools_env: dict[str, str], tmp_path: Path
) -> None:
    ca, client_cert, stranger = pki["ca"], pki["client"], pki["stranger"]
    assert isinstance(ca, CA) and isinstance(client_cert, Issued) and isinstance(stranger, Issued)
    tofu = tools_env["TOFU"]
    with_cert = make_client(tofu, tmp_path / "ok", tools_env, mtls_server, p.name)
    with_cert.env.update(tls_env(ca, client_cert))
    with_cert.run("init", "-no-color")
    with_cert.run("apply", "-no-color", "-auto-approve")
    assert mtls_server.request("GET", p.state).json()["outputs"]["label"]["value"] == "one"

    without = make_client(tofu, tmp_path / "none", tools_env, mtls_server, p.name)
    without.env.update(tls_env(ca))
    result = without.run("init", "-no-color", check=False)
    assert result.returncode != 0
    assert "invalid auth" in result.stderr, result.stderr  # tofu on a 403
    plain = mtls_server.request("GET", p.state, context=client_context(ca))
    assert plain.status == 403 and "client certificate" in plain.json()["error"]

    foreign = make_client(tofu, tmp_path / "foreign", tools_env, mtls_server, p.name)
    foreign.env.update(tls_env(ca, stranger))
    assert foreign.run("init", "-no-color", check=False).returncode != 0

    # A certificate of another CA ends the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mtls_server.request("GET", p.state, context=client_context(ca, stranger))
    assert mtls_server.request("GET", "/health", context=client_context(ca)).status == 200
    assert "Traceback" not in mtls_server.log()


def _peer_serial(port: int, ca: CA) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context(ca).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_swapped_on_sighup_while_clients_keep_working(
    pki: dict[str, object], tmp_path: Path, p: Paths
) -> None:
    ca = pki["ca"]
    assert isinstance(ca, CA)
    first = ca.issue("first")
    live = Issued(tmp_path / "live.crt", tmp_path / "live.key")
    live.cert.write_bytes(first.cert.read_bytes())
    live.key.write_bytes(first.key.read_bytes())
    from cryptography import x509

    def serial_of(issued: Issued) -> int:
        return x509.load_pem_x509_certificate(issued.cert.read_bytes()).serial_number

    context = client_context(ca)
    with running_server((tmp_path / "store").as_uri(), tmp_path, *tls_args(live), context=context) as server:
        assert _peer_serial(server.port, ca) == serial_of(first)
        errors: list[str] = []
        done = 0
        stop = threading.Event()
        # A keep-alive connection opened before the swap, busy all along.
        kept = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=30, context=context)

        def busy() -> None:
            nonlocal done
            serial = 0
            while not stop.is_set():
                serial += 1
                try:
                    kept.request("POST", p.state, body=state_body(serial), headers={"Authorization": basic()})
                    reply = kept.getresponse()
                    reply.read()
                    if reply.status != 200:
                        errors.append(f"POST {serial}: {reply.status}")
                    new = server.request("GET", p.state)  # a new connection each time
                    if new.status != 200:
                        errors.append(f"GET: {new.status}")
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{serial}: {exc!r}")
                    return
                done += 1

        thread = threading.Thread(target=busy)
        thread.start()
        try:
            wait_until(lambda: done >= 5 or errors, 60, "requests before the swap")
            second = ca.issue("second")
            live.cert.write_bytes(second.cert.read_bytes())
            live.key.write_bytes(second.key.read_bytes())
            server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            wait_until(lambda: "certificate and key re-read" in server.log(), 30, "the re-read")
            at_swap = done
            wait_until(lambda: done >= at_swap + 5 or errors, 60, "requests after the swap")
            assert _peer_serial(server.port, ca) == serial_of(second)

            # A bad pair on SIGHUP (key of another certificate) keeps the current one.
            live.key.write_bytes(first.key.read_bytes())
            server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            wait_until(lambda: "keeping the current certificate" in server.log(), 30, "the refusal")
            at_refusal = done
            wait_until(lambda: done >= at_refusal + 5 or errors, 60, "requests after the refusal")
            assert _peer_serial(server.port, ca) == serial_of(second)
        finally:
            stop.set()
            thread.join(60)
            kept.close()
        assert errors == []
        assert server.proc.poll() is None  # type: ignore[union-attr]
        # Every POST went over the one kept-alive connection, through both SIGHUPs, and
        # every one is logged (by the log's thread, a moment after its answer).
        wait_until(lambda: server.log().count("127.0.0.1 POST") >= done, 10, "every POST logged")
        log = server.log()
        assert log.count("127.0.0.1 POST") == done
        assert "does not match the certificate" in log
        assert "Traceback" not in log


def test_plain_http_to_the_tls_port_and_tls_to_a_plain_port(
    tls_server: Server, tmp_path: Path, p: Paths
) -> None:
    """Neither gets an answer it could mistake for a state, and no traceback is logged;
    both servers go on serving."""
    with running_server((tmp_path / "store").as_uri(), tmp_path) as plain:
        check_wrong_protocols(tls_server, plain, p)


def check_wrong_protocols(tls_server: Server, server: Server, p: Paths) -> None:
    raw = f"GET {p.state} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=15) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert "speaks HTTPS" in json.loads(body)["error"]
    plain = request(tls_server.port, "GET", p.state)  # http.client, plain
    assert plain.status == 400
    assert tls_server.request("GET", "/health").status == 200

    context = ssl.create_default_context()
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(raw)
    time.sleep(0.2)
    assert server.request("GET", "/health").status == 200
    for log in (tls_server.log(), server.log()):
        assert "Traceback" not in log


def test_tofu_with_an_http_address_for_the_tls_port(
    tls_server: Server, p: Paths, tools_env: dict[str, str], tmp_path: Path
) -> None:
    client = make_client(tools_env["TOFU"], tmp_path / "work", tools_env, tls_server, p.name)
    for name in ("TF_HTTP_ADDRESS", "TF_HTTP_LOCK_ADDRESS", "TF_HTTP_UNLOCK_ADDRESS"):
        client.env[name] = client.env[name].replace("https://", "http://")
    result = client.run("init", "-no-color", check=False)
    assert result.returncode != 0
    assert "400" in result.stderr, result.stderr


def test_a_connection_silent_before_its_handshake_is_closed(pki: dict[str, object], tmp_path: Path) -> None:
    ca, cert = pki["ca"], pki["server"]
    assert isinstance(ca, CA) and isinstance(cert, Issued)
    args = (*tls_args(cert), "--header-timeout", "1")
    with running_server((tmp_path / "store").as_uri(), tmp_path, *args, context=client_context(ca)) as server:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        begin = time.monotonic()
        assert silent.recv(100) == b""  # closed by the server
        assert 0.5 <= time.monotonic() - begin < 10
        silent.close()
        # Half a handshake (a record header, then nothing) is cut off the same way.
        half = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        half.sendall(b"\x16\x03\x01")
        begin = time.monotonic()
        assert half.recv(100) == b""
        assert time.monotonic() - begin < 10
        half.close()
        assert server.request("GET", "/health").status == 200
        assert "Traceback" not in server.log()


def test_silent_connections_cannot_crowd_out_a_client(pki: dict[str, object], tmp_path: Path) -> None:
    ca, cert = pki["ca"], pki["server"]
    assert isinstance(ca, CA) and isinstance(cert, Issued)
    args = (*tls_args(cert), "--header-timeout", "60", "--max-connections", "8")
    with running_server((tmp_path / "store").as_uri(), tmp_path, *args, context=client_context(ca)) as server:
        silent = [socket.create_connection(("127.0.0.1", server.port), timeout=15) for _ in range(20)]
        try:
            begin = time.monotonic()
            assert server.request("GET", "/health", timeout=10).status == 200
            assert time.monotonic() - begin < 10
            assert silent[0].recv(100) == b""  # the oldest were closed for the newer ones
        finally:
            for sock in silent:
                sock.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_2_at_least(tls_server: Server, pki: dict[str, object]) -> None:
    ca = pki["ca"]
    assert isinstance(ca, CA)
    versions = {}
    for highest in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = client_context(ca)
        context.maximum_version = highest
        with (
            socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            versions[highest] = tls.version()
    assert versions == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}
    old = client_context(ca)
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (  # refused by the server (or by this machine's OpenSSL already)
        pytest.raises((ssl.SSLError, ConnectionError)),
        socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw,
        old.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass
    from tfstate_server.tls import ServerTLS, TLSFiles

    cert = pki["server"]
    assert isinstance(cert, Issued)
    assert ServerTLS(TLSFiles(cert.cert, cert.key)).context.minimum_version == ssl.TLSVersion.TLSv1_2
