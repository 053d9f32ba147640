"""A hostile client gets a 4xx with a one-line reason, and nothing is written: per case the
status, the reason, the stored state and versions, and (file store) no stray files."""

from __future__ import annotations

import json
import socket

import pytest
from tfstate_harness import Paths, Server, basic, lock_body, state_body, store_files

GOOD = state_body(1)


def reason(body: bytes) -> str:
    text = json.loads(body)["error"]
    assert isinstance(text, str) and "\n" not in text and 0 < len(text) < 300
    return text


def assert_untouched(server: Server, p: Paths) -> None:
    reply = server.request("GET", p.state)
    assert (reply.status, reply.body) == (200, GOOD)
    assert [v["serial"] for v in server.request("GET", p.versions).json()] == [1]
    assert server.request("GET", p.lock).status == 204
    if server.store.startswith("file:"):
        files = [f for f in store_files(server.store) if f.startswith(f"alice/{p.name}/")]
        names = [f.split("/")[-1] for f in files]
        assert not [n for n in names if n.startswith(".tmp-")], files
        assert len([n for n in names if n.startswith("v")]) == 1, files


def with_fields(**fields: object) -> bytes:
    data = json.loads(GOOD)
    data.update(serial=2, **fields)
    return json.dumps(data).encode()


def raw(serial_text: str) -> bytes:
    return b'{"version": 4, "serial": ' + serial_text.encode() + b', "lineage": "lineage-1"}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (with_fields().replace(b'"outputs": {}', b'"outputs": NaN'), "read back"),
        (with_fields().replace(b'"outputs": {}', b'"outputs": Infinity'), "read back"),
        (with_fields().replace(b'"outputs": {}', b'"outputs": -Infinity'), "read back"),
        (with_fields().replace(b'"outputs": {}', b'"outputs": 1e400'), "read back"),
        (with_fields().decode().encode("utf-16"), "read back"),  # with its BOM
        (with_fields().decode().encode("utf-16-le"), "read back"),
        (b"\xef\xbb\xbf" + with_fields(), "read back"),  # UTF-8 BOM
        (with_fields().replace(b'"outputs": {}', b'"outputs": "caf\xe9"'), "read back"),  # Latin-1
        (with_fields().replace(b'"outputs": {}', b'"outputs": "\xed\xa0\x80"'), "read back"),
        (with_fields().replace(b'"outputs": {}', b'"outputs": "\\ud800"'), "read back"),
        (raw(str(1 << 63)), "beyond 2^63-1"),
        (raw(str(1 << 64)), "integer serial"),
        (raw("1" + "0" * 40), "integer serial"),
        (raw("2.0"), "integer serial"),
        (raw("2e0"), "integer serial"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "beyond-float64",
        "utf16-bom",
        "utf16le",
        "utf8-bom",
        "latin1-byte",
        "raw-surrogate",
        "lone-surrogate-escape",
        "serial-2^63",
        "serial-2^64",
        "serial-10^40",
        "serial-float",
        "serial-exponent",
    ],
)
def test_unreadable_state_bodies_are_400(server: Server, p: Paths, body: bytes, expected: str) -> None:
    assert server.request("POST", p.state, GOOD).status == 200
    reply = server.request("POST", p.state, body)
    assert reply.status == 400, reply.body
    assert expected in reason(reply.body)
    assert_untouched(server, p)


@pytest.mark.parametrize(
    ("query", "expected"),
    [("?ID=%ff", "not UTF-8"), ("?ID=a&ID=b", "more than one ID"), ("?ID=a%0Ab", "control characters")],
)
def test_malformed_queries_are_400(server: Server, p: Paths, query: str, expected: str) -> None:
    assert server.request("POST", p.state, GOOD).status == 200
    reply = server.request("POST", p.state + query, state_body(2))
    assert reply.status == 400
    assert expected in reason(reply.body)
    assert_untouched(server, p)


def lock_with(**fields: object) -> bytes:
    data = json.loads(lock_body("3f2f1b9e-0000-4000-8000-000000000001"))
    data.update(fields)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (lock_with(Created="yesterday"), "RFC 3339"),
        (lock_with(Created="T"), "RFC 3339"),
        (lock_with(Created="2026-01-02T03:04:05"), "RFC 3339"),  # no zone
        (lock_with(Created="2026-01-02 03:04:05Z"), "RFC 3339"),
        (lock_with(Created="\uff12\uff10\uff12\uff16-01-02T03:04:05Z"), "RFC 3339"),  # fullwidth
        (lock_with(Created="2026-01-02T03:04:05.Z"), "RFC 3339"),
        (lock_with(Created="2026-13-02T03:04:05Z"), "valid date"),
        (lock_with(Created="2026-02-30T03:04:05Z"), "valid date"),
        (lock_with(Created="2026-01-02T03:04:05+24:00"), "offset"),
        (lock_with(Created=1767322800), "not a string"),
        (lock_with(ID=["x"]), "not a string"),
        (lock_with().decode().encode("utf-16"), "not UTF-8 JSON"),
        (lock_with().replace(b'"Info": ""', b'"Info": NaN'), "not UTF-8 JSON"),
    ],
)
def test_malformed_lockinfo_is_400(server: Server, p: Paths, body: bytes, expected: str) -> None:
    assert server.request("POST", p.state, GOOD).status == 200
    reply = server.request("LOCK", p.lock, body)
    assert reply.status == 400
    assert expected in reason(reply.body)
    assert_untouched(server, p)


@pytest.mark.parametrize(
    "version",
    ["%D9%A1", "%C2%B2", "%EF%BC%91", "1" * 20, "-1", "1.0", "0x1", "%201"],
    ids=["arabic-indic", "superscript", "fullwidth", "20-digits", "negative", "decimal", "hex", "space"],
)
def test_malformed_version_ids_are_400(server: Server, p: Paths, version: str) -> None:
    assert server.request("POST", p.state, GOOD).status == 200
    reply = server.request("GET", f"{p.versions}/{version}")
    assert reply.status == 400
    assert "ASCII digits" in reason(reply.body)
    assert_untouched(server, p)


@pytest.mark.parametrize(
    "header",
    ["Content-Length: abc", "Content-Length: \xd9\xa3", "Content-Length: -5", "Content-Length: 1, 2"],
)
def test_malformed_headers_are_400(server: Server, p: Paths, header: str) -> None:
    assert server.request("POST", p.state, GOOD).status == 200
    request = (f"POST {p.state} HTTP/1.1\r\nHost: x\r\nAuthorization: {basic()}\r\n{header}\r\n\r\n").encode(
        "latin-1"
    ) + state_body(2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = sock.recv(4096)
    assert answer.split(b" ", 2)[1] == b"400", answer[:100]
    assert_untouched(server, p)


def test_bad_content_md5_after_a_good_body_leaves_nothing(server: Server, p: Paths) -> None:
    assert server.request("POST", p.state, GOOD).status == 200
    for value in ("not base64!", "AAAA", ""):
        reply = server.request("POST", p.state, state_body(2), headers={"Content-MD5": value})
        assert reply.status == 400
        assert "Content-MD5" in reason(reply.body)
    assert_untouched(server, p)


@pytest.mark.parametrize(
    "value",
    [
        b"123456789012345678901234567890",
        b"-18446744073709551617",
        b"1e308",
        b'"\\ud83d\\ude00"',
        b'"caf\xc3\xa9"',
    ],
    ids=["int-beyond-64-bits", "negative-beyond-64-bits", "large-float", "surrogate-pair", "utf8"],
)
def test_values_clients_can_read_are_kept_byte_for_byte(server: Server, p: Paths, value: bytes) -> None:
    """Terraform numbers are arbitrary precision: a big integer inside a state is fine."""
    body = with_fields().replace(b'"outputs": {}', b'"outputs": {"n": {"value": ' + value + b"}}")
    assert server.request("POST", p.state, body).status == 200
    assert server.request("GET", p.state).body == body
