"""The HTTP API against a real server process, with each store (file, and S3 on moto)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime

import pytest
from tfstate_harness import PASSWORD, USER, Paths, Server, basic, lock_body, state_body

STATE = "/states/net"
LOCK = "/states/net/lock"
# Go's time.Time.UnmarshalJSON takes RFC 3339 with optional fractional seconds.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def assert_unchanged(server: Server, p: Paths | None, body: bytes | None) -> None:
    reply = server.request("GET", p.state if p else STATE)
    if body is None:
        assert reply.status == 204
    else:
        assert (reply.status, reply.body) == (200, body)


def test_health_needs_no_auth(server: Server, p: Paths) -> None:
    reply = server.request("GET", "/health", auth=None)
    assert reply.status == 200 and reply.json() == {"status": "ok"}


def test_missing_state_is_204_and_write_read_round_trip(server: Server, p: Paths) -> None:
    assert server.request("GET", p.state).status == 204
    assert server.request("GET", p.lock).status == 204
    body = state_body(1)
    assert server.request("POST", p.state, body, headers=md5_header(body)).status == 200
    reply = server.request("GET", p.state)
    assert (reply.status, reply.body) == (200, body)
    assert reply.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    "auth",
    [None, basic(USER, "wrong"), basic("mallory", PASSWORD), "Basic !!!", "Bearer x", basic(USER, "")],
)
def test_bad_or_missing_credentials(server: Server, p: Paths, auth: str | None) -> None:
    assert server.request("POST", p.state, state_body(1)).status == 200
    for method, path, body in [
        ("GET", p.state, None),
        ("POST", p.state, state_body(2)),
        ("LOCK", p.lock, lock_body("x")),
        ("UNLOCK", p.lock, b""),
        ("GET", f"{p.state}/versions", None),
    ]:
        reply = server.request(method, path, body, auth=auth)
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="tfstate"'
    assert_unchanged(server, p, state_body(1))
    assert server.request("GET", p.lock).status == 204


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"\xff\xfe", 400),
        (b"[1, 2]", 400),
        (b'{"serial": "1", "lineage": "x"}', 400),
        (b'{"serial": -1, "lineage": "x"}', 400),
        (b'{"serial": 1}', 400),
        (b'{"serial": true, "lineage": "x"}', 400),
    ],
)
def test_invalid_state_bodies(server: Server, p: Paths, body: bytes, status: int) -> None:
    good = state_body(1)
    assert server.request("POST", p.state, good).status == 200
    assert server.request("POST", p.state, body).status == status
    assert_unchanged(server, p, good)
    assert len(server.request("GET", f"{p.state}/versions").json()) == 1


def test_oversized_body_is_413(tmp_path: object, store: tuple[str, dict[str, str]]) -> None:
    from tfstate_harness import running_server

    url, env = store
    with running_server(url, tmp_path, "--max-state-bytes", "64K", **env) as server:  # type: ignore[arg-type]
        assert server.request("POST", STATE, state_body(1, pad=60_000)).status == 200
        big = state_body(2, pad=70_000)
        assert server.request("POST", STATE, big).status == 413
        assert_unchanged(server, None, state_body(1, pad=60_000))


def test_content_md5(server: Server, p: Paths) -> None:
    body = state_body(1)
    assert server.request("POST", p.state, body, headers=md5_header(b"other")).status == 400
    assert server.request("POST", p.state, body, headers={"Content-MD5": "not base64!"}).status == 400
    assert_unchanged(server, p, None)
    assert server.request("POST", p.state, body, headers=md5_header(body)).status == 200


def test_serial_going_back_and_lineage_change_are_409(server: Server, p: Paths) -> None:
    assert server.request("POST", p.state, state_body(5)).status == 200
    reply = server.request("POST", p.state, state_body(4))
    assert reply.status == 409 and "serial" in reply.json()["error"]
    reply = server.request("POST", p.state, state_body(6, lineage="another"))
    assert reply.status == 409 and "lineage" in reply.json()["error"]
    assert_unchanged(server, p, state_body(5))
    # The same serial again is a retry of a write whose answer was lost: accepted.
    assert server.request("POST", p.state, state_body(5)).status == 200
    assert server.request("POST", p.state, state_body(6)).status == 200


def test_history_overrides(tmp_path: object, store: tuple[str, dict[str, str]]) -> None:
    from tfstate_harness import running_server

    url, env = store
    flags = ("--allow-serial-rollback", "--allow-lineage-change")
    with running_server(url, tmp_path, *flags, **env) as server:  # type: ignore[arg-type]
        assert server.request("POST", STATE, state_body(5)).status == 200
        assert server.request("POST", STATE, state_body(4)).status == 200
        assert server.request("POST", STATE, state_body(1, lineage="new")).status == 200
        assert_unchanged(server, None, state_body(1, lineage="new"))


@pytest.mark.parametrize(
    "path",
    [
        "/states/../etc/passwd",
        "/states/..",
        "/states/.",
        "/states/%2e%2e",
        "/states/a%2Fb",
        "/states/a%2fb/lock",
        "/states/..%2F..%2Fetc",
        "/states/a%20b",
        "/states/a%00b",
        "/states/caf%C3%A9",
        "/states/%ff",
        "/states/",
        "/states/" + "a" * 129,
        "/states//lock",
    ],
)
def test_bad_names_and_traversal_are_400(server: Server, p: Paths, path: str) -> None:
    for method, body in [("GET", None), ("POST", state_body(1)), ("LOCK", lock_body("x"))]:
        assert server.request(method, path, body).status == 400, (method, path)
    listing = server.request("GET", "/states/etc/versions")
    assert listing.status == 200 and listing.json() == []


def test_unknown_paths_are_404(server: Server) -> None:
    for path in [
        "/",
        "/states",
        "/nope",
        "/states/net/other",
        "/states/net/lock/x",
        "/states/net/versions/1/x",
    ]:
        assert server.request("GET", path).status == 404, path


def test_unknown_methods(server: Server, p: Paths) -> None:
    good = state_body(1)
    assert server.request("POST", p.state, good).status == 200
    for method, path in [
        ("PATCH", p.state),
        ("DELETE", p.state),
        ("PUT", p.state),
        ("PROPFIND", p.lock),
        ("POST", p.lock),
        ("POST", "/health"),
        ("DELETE", f"{p.state}/versions"),
    ]:
        reply = server.request(method, path, state_body(2))
        assert reply.status == 405, (method, path)
        assert reply.headers["Allow"]
    # Methods HTTP parsers do not know at all are refused before routing.
    assert server.request("FROB", p.state, state_body(2)).status in (400, 405)
    assert_unchanged(server, p, good)
    assert server.request("GET", p.lock).status == 204


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"ID"',
        b"{}",
        b'{"ID": ""}',
        b'{"ID": 42}',
        b'{"ID": "a", "Who": 3}',
        b'{"ID": "a", "Created": "yesterday"}',
        b'{"ID": "a", "Created": "2026-01-02 03:04:05"}',
    ],
)
def test_lock_body_that_is_not_lockinfo_is_400(server: Server, p: Paths, body: bytes) -> None:
    assert server.request("LOCK", p.lock, body).status == 400
    assert server.request("GET", p.lock).status == 204


def test_lock_protocol(server: Server, p: Paths) -> None:
    reply = server.request("LOCK", p.lock, lock_body("id-1", "one@host"))
    assert reply.status == 200
    # A retried p.lock (answer lost) with the same ID succeeds.
    assert server.request("LOCK", p.lock, lock_body("id-1", "one@host")).status == 200
    assert server.request("PUT", p.lock, lock_body("id-1", "one@host")).status == 200
    conflict = server.request("LOCK", p.lock, lock_body("id-2", "two@host"))
    assert conflict.status == 423
    holder = conflict.json()
    assert holder["ID"] == "id-1" and holder["Who"] == "one@host"
    assert RFC3339.fullmatch(holder["Created"])
    assert server.request("GET", p.lock).json()["ID"] == "id-1"

    # Writes: only with the holder's ID.
    for query in ["", "?ID=id-2", "?ID="]:
        reply = server.request("POST", p.state + query, state_body(1))
        assert reply.status == 423 and reply.json()["ID"] == "id-1", query
    assert server.request("POST", f"{p.state}?ID=id-1", state_body(1)).status == 200

    # Unlock: another ID is 423 with the holder; the holder's ID releases.
    reply = server.request("UNLOCK", p.lock, lock_body("id-2"))
    assert reply.status == 423 and reply.json()["ID"] == "id-1"
    assert server.request("UNLOCK", p.lock, b'{"ID": 5}').status == 400
    assert server.request("UNLOCK", p.lock, lock_body("id-1")).status == 200
    assert server.request("GET", p.lock).status == 204
    # Unlocking an unlocked state (a retried UNLOCK) succeeds.
    assert server.request("DELETE", p.lock, lock_body("id-1")).status == 200
    # A write naming a lock nobody holds (force-unlocked meanwhile) is refused.
    assert server.request("POST", f"{p.state}?ID=id-1", state_body(2)).status == 409
    assert_unchanged(server, p, state_body(1))


def test_lock_without_created_gets_one_go_parses(server: Server, p: Paths) -> None:
    assert server.request("LOCK", p.lock, b'{"ID": "bare"}').status == 200
    created = server.request("LOCK", p.lock, lock_body("other")).json()["Created"]
    assert RFC3339.fullmatch(created)
    datetime.fromisoformat(created.replace("Z", "+00:00"))


def test_force_unlock_with_empty_body_and_opentofu_zero_lockinfo(server: Server, p: Paths) -> None:
    assert server.request("LOCK", p.lock, lock_body("held")).status == 200
    assert server.request("UNLOCK", p.lock, b"").status == 200  # terraform force-unlock
    assert server.request("GET", p.lock).status == 204
    assert server.request("LOCK", p.lock, lock_body("held")).status == 200
    # OpenTofu >= 1.10 force-unlock: the ID, every other field a zero value.
    zero = {
        "ID": "held",
        "Operation": "",
        "Info": "",
        "Who": "",
        "Version": "",
        "Created": "0001-01-01T00:00:00Z",
        "Path": "",
    }
    assert server.request("UNLOCK", p.lock, json.dumps(zero).encode()).status == 200
    assert server.request("GET", p.lock).status == 204


def test_force_unlock_can_be_switched_off(tmp_path: object, store: tuple[str, dict[str, str]]) -> None:
    from tfstate_harness import running_server

    url, env = store
    with running_server(url, tmp_path, "--no-force-unlock", **env) as server:  # type: ignore[arg-type]
        assert server.request("UNLOCK", LOCK, b"").status == 200  # nothing to unlock
        assert server.request("LOCK", LOCK, lock_body("held")).status == 200
        reply = server.request("UNLOCK", LOCK, b"")
        assert reply.status == 423 and reply.json()["ID"] == "held"
        assert server.request("UNLOCK", LOCK, lock_body("held")).status == 200


def test_versions(tmp_path: object, store: tuple[str, dict[str, str]]) -> None:
    from tfstate_harness import running_server

    url, env = store
    with running_server(url, tmp_path, "--keep-versions", "3", **env) as server:  # type: ignore[arg-type]
        bodies = {serial: state_body(serial, pad=serial) for serial in range(1, 6)}
        for body in bodies.values():
            assert server.request("POST", STATE, body).status == 200
        versions = server.request("GET", f"{STATE}/versions").json()
        assert [v["serial"] for v in versions] == [5, 4, 3]
        assert [v["version"] for v in versions] == [5, 4, 3]
        assert {v["lineage"] for v in versions} == {"lineage-1"}
        assert all(v["who"] == USER and RFC3339.fullmatch(v["created"]) for v in versions)
        assert [v["size"] for v in versions] == [len(bodies[s]) for s in (5, 4, 3)]
        assert server.request("GET", f"{STATE}/versions/4").body == bodies[4]
        assert server.request("GET", f"{STATE}/versions/1").status == 404
        assert server.request("GET", f"{STATE}/versions/x1").status == 400
        assert server.request("GET", "/states/none/versions").json() == []


def test_each_user_has_own_states(tmp_path: object, store: tuple[str, dict[str, str]]) -> None:
    from pathlib import Path

    from tfstate_harness import running_server

    creds = Path(str(tmp_path)) / "users"
    creds.write_text("# team\nbob:bob-secret\ncarol:carol:with:colons\n")
    url, env = store
    with running_server(url, Path(str(tmp_path)), "--credentials-file", str(creds), **env) as server:
        bob, carol = basic("bob", "bob-secret"), basic("carol", "carol:with:colons")
        assert server.request("POST", STATE, state_body(1, "bob"), auth=bob).status == 200
        assert server.request("GET", STATE, auth=carol).status == 204
        assert server.request("LOCK", LOCK, lock_body("c"), auth=carol).status == 200
        assert server.request("POST", STATE, state_body(2, "bob"), auth=bob).status == 200
        # The environment's user still works alongside the file's.
        assert server.request("GET", STATE).status == 204
        assert server.request("GET", STATE, auth=basic("bob", "carol:with:colons")).status == 401


def test_locks_and_state_survive_restart(own_server: Server) -> None:
    server = own_server
    assert server.request("POST", STATE, state_body(3)).status == 200
    assert server.request("LOCK", LOCK, lock_body("kept")).status == 200
    assert server.stop() == 0
    server.start()
    assert server.request("LOCK", LOCK, lock_body("other")).json()["ID"] == "kept"
    assert_unchanged(server, None, state_body(3))


def test_access_log_has_a_line_per_request_and_no_secrets(own_server: Server) -> None:
    server = own_server
    body = state_body(1)
    server.request("LOCK", LOCK, lock_body("log-id"))
    server.request("POST", f"{STATE}?ID=log-id", body)
    server.request("GET", STATE, auth=basic(USER, "wrong-" + PASSWORD))
    server.request("UNLOCK", LOCK, lock_body("log-id"))
    assert server.stop() == 0
    log = server.log()
    assert PASSWORD not in log
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in log
    assert '"lineage"' not in log  # no bodies
    lines = [line for line in log.splitlines() if "tfstate_server.access" in line]
    assert len(lines) == 4
    assert re.search(r"LOCK /states/net/lock 200 user=alice state=net lock=log-id .* \d+\.\dms$", lines[0])
    assert re.search(r"POST /states/net 200 user=alice state=net lock=log-id version=1 \d+\.\dms$", lines[1])
    assert re.search(r"GET /states/net 401 user=- ", lines[2])
    assert re.search(r"UNLOCK /states/net/lock 200 .*lock=log-id", lines[3])
