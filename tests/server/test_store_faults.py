"""Store faults are loud and lose nothing: a full disk is a 507, a store gone (deleted,
replaced by a file, bucket deleted) is a 503 with an error in the log, and the server
never starts a fresh empty store in its place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfstate_harness import (
    Moto,
    Paths,
    Server,
    lock_body,
    running_moto,
    running_server,
    state_body,
    stop_process,
    store_files,
    wait_until,
)

LOCK_ID = "6a1f3c2e-0000-4000-8000-00000000beef"


def reason(body: bytes) -> str:
    text = json.loads(body)["error"]
    assert isinstance(text, str) and "\n" not in text
    return text


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mount.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Fill the file system of `directory` up to the last few KiB."""
    filler = directory / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_disk_full_is_507_and_keeps_state_and_history(small_disk: Path, tmp_path: Path) -> None:
    store = small_disk / "store"
    p = Paths("full")
    with running_server(store.as_uri(), tmp_path) as server:
        first, second = state_body(1, pad=100_000), state_body(2, pad=100_000)
        assert server.request("POST", p.state, first).status == 200
        assert server.request("POST", p.state, second).status == 200
        filler = fill(small_disk)
        before = store_files(store.as_uri())
        for serial in (3, 4):  # refused again and again, nothing piles up
            reply = server.request("POST", p.state, state_body(serial, pad=300_000))
            assert reply.status == 507, reply.body
            assert "full" in reason(reply.body)
        assert store_files(store.as_uri()) == before  # no temp files left behind
        assert server.request("GET", p.state).body == second
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [2, 1]
        assert server.request("GET", f"{p.versions}/1").body == first
        # The log is written by its own thread: the line comes, a moment after the answer.
        wait_until(lambda: "ERROR" in server.log() and "No space left" in server.log(), 10, "the error")
        # Room again: writes go through.
        filler.unlink()
        assert server.request("POST", p.state, state_body(5, pad=300_000)).status == 200


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[Server]:
    with running_server((tmp_path / "store").as_uri(), tmp_path) as server:
        yield server


def _delete(root: Path) -> None:
    shutil.rmtree(root)


def _replace_by_file(root: Path) -> None:
    shutil.rmtree(root)
    root.write_text("not a store\n")


def _move_away(root: Path) -> None:
    root.rename(root.with_name("moved"))


@pytest.mark.parametrize("fault", [_delete, _replace_by_file, _move_away], ids=["deleted", "file", "moved"])
def test_store_gone_while_running_is_503_and_never_recreated(file_server: Server, fault: object) -> None:
    server = file_server
    root = Path(server.store.removeprefix("file://"))
    p, other = Paths("held"), Paths("never-written")
    assert server.request("POST", p.state, state_body(1)).status == 200
    assert server.request("LOCK", p.lock, lock_body(LOCK_ID)).status == 200
    assert callable(fault)
    fault(root)
    snapshot = root.read_bytes() if root.is_file() else None
    for method, path, body in [
        ("GET", p.state, None),
        ("POST", f"{p.state}?ID={LOCK_ID}", state_body(2)),
        ("GET", p.lock, None),
        ("LOCK", p.lock, lock_body("6a1f3c2e-0000-4000-8000-000000000002")),
        ("UNLOCK", p.lock, lock_body(LOCK_ID)),
        ("UNLOCK", p.lock, b""),
        ("GET", p.versions, None),
        ("GET", other.state, None),
        ("POST", other.state, state_body(1)),
        ("LOCK", other.lock, lock_body(LOCK_ID)),
        ("UNLOCK", other.lock, b""),
    ]:
        reply = server.request(method, path, body)
        assert reply.status == 503, (method, path, reply.status, reply.body)
        assert "store" in reason(reply.body)
        assert reply.headers.get("Retry-After")
    # Nothing was recreated where the store was.
    if snapshot is None:
        assert not root.exists()
    else:
        assert root.read_bytes() == snapshot
    wait_until(lambda: "ERROR" in server.log(), 10, "the error in the log")


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="}, state_body(2), "Content-MD5"),
        ({"Content-MD5": "not base64!"}, state_body(2), "Content-MD5"),
        ({}, b'{"serial": NaN}', "JSON"),
    ],
    ids=["md5-mismatch", "md5-not-base64", "bad-json"],
)
def test_refused_body_is_400_even_when_the_store_is_gone(
    file_server: Server, headers: dict[str, str], body: bytes, expected: str
) -> None:
    """The MD5 is checked while the store writes: a store fault must not hide the
    client's mistake (and a good body still gets the 503)."""
    server = file_server
    root = Path(server.store.removeprefix("file://"))
    p = Paths("gone")
    assert server.request("POST", p.state, state_body(1)).status == 200
    _move_away(root)
    reply = server.request("POST", p.state, body, headers=headers)
    assert reply.status == 400, (reply.status, reply.body)
    assert expected in reason(reply.body)
    assert server.request("POST", p.state, state_body(2)).status == 503
    assert not root.exists()
    assert not [f for f in store_files(root.with_name("moved").as_uri()) if ".tmp-" in f]


def test_store_back_in_place_serves_its_state_and_lock_again(file_server: Server) -> None:
    server = file_server
    root = Path(server.store.removeprefix("file://"))
    p = Paths("back")
    assert server.request("POST", p.state, state_body(1)).status == 200
    assert server.request("LOCK", p.lock, lock_body(LOCK_ID)).status == 200
    moved = root.with_name("moved")
    root.rename(moved)
    assert server.request("GET", p.state).status == 503
    moved.rename(root)  # e.g. a remount
    assert server.request("GET", p.state).body == state_body(1)
    assert server.request("GET", p.lock).json()["ID"] == LOCK_ID


def test_s3_bucket_gone_is_503_without_partial_state(moto: Moto, tmp_path: Path) -> None:
    client = moto.client()
    bucket = moto.new_bucket()
    p = Paths("bucket")
    with running_server(f"s3://{bucket}/team", tmp_path, **moto.env) as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
        for method, path, body in [
            ("GET", p.state, None),
            ("POST", p.state, state_body(2)),
            ("GET", p.lock, None),
            ("LOCK", p.lock, lock_body(LOCK_ID)),
            ("UNLOCK", p.lock, b""),
            ("GET", p.versions, None),
        ]:
            reply = server.request(method, path, body)
            assert reply.status == 503, (method, reply.status, reply.body)
            assert "bucket does not exist" in reason(reply.body)
        assert bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]
        wait_until(lambda: "ERROR" in server.log(), 10, "the error in the log")


def test_s3_unreachable_is_503(tmp_path: Path) -> None:
    p = Paths("unreachable")
    with running_moto(tmp_path) as own_moto:  # its own, as it is stopped under the server
        bucket = own_moto.new_bucket()
        env = {**own_moto.env, "AWS_MAX_ATTEMPTS": "1"}
        with running_server(f"s3://{bucket}/team", tmp_path, **env) as server:
            assert server.request("POST", p.state, state_body(1)).status == 200
            stop_process(own_moto.proc)
            for method, path, body in [("GET", p.state, None), ("POST", p.state, state_body(2))]:
                reply = server.request(method, path, body)
                assert reply.status == 503, (method, reply.status, reply.body)
                assert "cannot be reached" in reason(reply.body)
            wait_until(lambda: "ERROR" in server.log(), 10, "the error in the log")


def test_store_is_created_at_start_only(tmp_path: Path) -> None:
    root = tmp_path / "new" / "store"
    with running_server(root.as_uri(), tmp_path) as server:
        assert root.is_dir()
        os.rmdir(root)
        assert server.request("POST", Paths("x").state, state_body(1)).status == 503
        assert not root.exists()


def test_read_only_store_refuses_writes_with_503_and_keeps_serving_reads(
    small_disk: Path, tmp_path: Path
) -> None:
    """A store that turns unwritable (remounted read-only; as root, permissions cannot make
    it unreadable, and EACCES takes the same path as EROFS) keeps its state readable."""
    store = small_disk / "store"
    p = Paths("readonly")
    with running_server(store.as_uri(), tmp_path) as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        try:
            for method, path, body in [
                ("POST", p.state, state_body(2)),
                ("LOCK", p.lock, lock_body(LOCK_ID)),
                ("POST", Paths("new").state, state_body(1)),
            ]:
                reply = server.request(method, path, body)
                assert reply.status == 503, (method, reply.status, reply.body)
                assert "Read-only file system" in reason(reply.body)
            assert server.request("GET", p.state).body == state_body(1)
            assert server.request("GET", p.lock).status == 204
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        assert server.request("POST", p.state, state_body(2)).status == 200
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [2, 1]
        assert not [f for f in store_files(store.as_uri()) if ".tmp-" in f]
