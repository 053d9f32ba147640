"""The S3 store on each S3 server it was tried on: moto (an emulator, one request at a
time, devenv/serial_moto.py) and SeaweedFS (a real S3 server: its `weed`, built from its
Go module by scripts/setup-tools --seaweedfs, S3 gateway on loopback).

Covered on both: conditional writes answered with 412, locks across two replicas, racing
writers across replicas, versions listed and pruned under the key layout both list, old-
layout history kept readable and migrated, a missing or deleted bucket, denied keys (on
moto, one of its own that checks keys against its IAM), a version that cannot be stored.
On moto through a proxy that changes its answers: a failed prune, and the start-up
refusal of a bucket that ignores conditional writes or answers them with 501.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from tfstate_harness import (
    PASSWORD,
    ROOT,
    USER,
    Moto,
    Paths,
    Server,
    free_port,
    lock_body,
    request,
    running_server,
    state_body,
    stop_process,
    wait_until,
)

from devenv.seaweedfs import KeyedEndpoint, Keys, SeaweedFS
from tfstate_server.names import StateKey
from tfstate_server.storage.s3 import PROBE_NAME, S3Store

PREFIX = "team"
LOCKERS = 20
ROUNDS = 5


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def s3(request: pytest.FixtureRequest) -> Moto | SeaweedFS:
    """Each S3 server, shared by the tests of this module (each uses its own bucket)."""
    return request.getfixturevalue(str(request.param))  # type: ignore[no-any-return]


@pytest.fixture
def bucket(s3: Moto | SeaweedFS) -> str:
    return s3.new_bucket()


def store_url(bucket: str) -> str:
    return f"s3://{bucket}/{PREFIX}"


def keys_under(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def serve_once(store: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`serve` expected to refuse to start: its exit code and output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TFSTATE_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "tfstate_server", "serve", "--listen", "127.0.0.1:0", "--store", store, *args],
        cwd=ROOT,
        env={**base, "TFSTATE_USERNAME": USER, "TFSTATE_PASSWORD": PASSWORD, "AWS_MAX_ATTEMPTS": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


# -- conditional writes -------------------------------------------------------------


def _code(raised: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(raised.value.response["Error"]["Code"])


def test_conditional_writes_are_refused_with_412(s3: Moto | SeaweedFS, bucket: str) -> None:
    client = s3.client()
    first = client.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert _code(raised) == "PreconditionFailed"
    second = client.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=first)["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch=first)
    assert _code(raised) == "PreconditionFailed"
    source = {"Bucket": bucket, "Key": "k"}
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.copy_object(Bucket=bucket, Key="copy", CopySource=source, CopySourceIfMatch=first)
    assert _code(raised) == "PreconditionFailed"
    client.copy_object(Bucket=bucket, Key="copy", CopySource=source, CopySourceIfMatch=second)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    # The store's start-up check passes, and leaves nothing behind.
    store = S3Store(bucket, PREFIX, keep_versions=3, client=client)
    store.check_ready()
    assert keys_under(s3, bucket, PREFIX) == []


# -- locks and writes across replicas -----------------------------------------------


@pytest.fixture
def replicas(s3: Moto | SeaweedFS, bucket: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_server(store_url(bucket), tmp_path / "a", **s3.env) as first,
        running_server(store_url(bucket), tmp_path / "b", **s3.env) as second,
    ):
        yield first, second


def test_locks_across_two_replicas_have_one_holder(replicas: tuple[Server, Server]) -> None:
    p = Paths("contended")
    ports = [replicas[0].port, replicas[1].port]
    for round_number in range(ROUNDS):
        barrier = threading.Barrier(LOCKERS)

        def attempt(index: int, round_number: int = round_number, barrier: Any = barrier) -> tuple[int, str]:
            barrier.wait(timeout=60)
            reply = request(
                ports[index % 2], "LOCK", p.lock, lock_body(f"r{round_number}-{index}"), timeout=120
            )
            return reply.status, reply.json()["ID"] if reply.status in (200, 423) else ""

        with ThreadPoolExecutor(LOCKERS) as pool:
            results = list(pool.map(attempt, range(LOCKERS)))
        assert {status for status, _ in results} <= {200, 423}, results
        winners = [index for index, (status, _) in enumerate(results) if status == 200]
        assert len(winners) == 1, f"round {round_number}: {len(winners)} holders"
        holder = f"r{round_number}-{winners[0]}"
        assert {held for _, held in results} == {holder}
        assert request(ports[1], "GET", p.lock).json()["ID"] == holder
        assert request(ports[0], "UNLOCK", p.lock, lock_body(holder)).status == 200


def test_racing_writers_across_replicas_keep_a_linear_history(replicas: tuple[Server, Server]) -> None:
    p = Paths("raced")
    ports = [replicas[0].port, replicas[1].port]
    serials = list(range(1, 17))
    barrier = threading.Barrier(len(serials))

    def write(serial: int) -> tuple[int, int]:
        barrier.wait(timeout=60)
        return serial, request(ports[serial % 2], "POST", p.state, state_body(serial), timeout=120).status

    with ThreadPoolExecutor(len(serials)) as pool:
        results = list(pool.map(write, serials))
    assert {status for _, status in results} <= {200, 409}, results
    accepted = sorted(serial for serial, status in results if status == 200)
    assert accepted
    assert json.loads(request(ports[0], "GET", p.state).body)["serial"] == accepted[-1]
    versions = request(ports[1], "GET", p.versions).json()
    assert sorted(v["serial"] for v in versions) == accepted
    history = [v["serial"] for v in reversed(versions)]
    assert history == sorted(history)


# -- versions -------------------------------------------------------------------------


def test_versions_are_listed_and_pruned(s3: Moto | SeaweedFS, bucket: str, tmp_path: Path) -> None:
    p = Paths("pruned")
    history = f"{PREFIX}/{USER}/{p.name}.history/"
    with running_server(store_url(bucket), tmp_path, "--keep-versions", "3", **s3.env) as server:
        bodies = {serial: state_body(serial, pad=serial) for serial in range(1, 7)}
        for body in bodies.values():
            assert server.request("POST", p.state, body).status == 200
        versions = server.request("GET", p.versions).json()
        assert [v["serial"] for v in versions] == [6, 5, 4]
        assert [v["size"] for v in versions] == [len(bodies[s]) for s in (6, 5, 4)]
        assert server.request("GET", f"{p.versions}/5").body == bodies[5]
        assert server.request("GET", f"{p.versions}/2").status == 404
    # Pruned in the bucket too, not merely unlisted; nothing left under the old layout.
    assert keys_under(s3, bucket, history) == [f"{history}{n:010d}" for n in (4, 5, 6)]
    assert keys_under(s3, bucket, f"{PREFIX}/") == sorted(
        [f"{PREFIX}/{USER}/{p.name}.tfstate", *(f"{history}{n:010d}" for n in (4, 5, 6))]
    )


def write_old_layout(s3: Moto | SeaweedFS, bucket: str, name: str, count: int) -> dict[int, bytes]:
    """A state and its versions 1..count as an earlier release wrote them."""
    client = s3.client()
    bodies = {n: state_body(n, pad=n) for n in range(1, count + 1)}
    base = f"{PREFIX}/{USER}/{name}"
    for number, body in bodies.items():
        metadata = {
            "version": str(number),
            "serial": str(number),
            "lineage": "lineage-1",
            "created": "2026-01-02T03:04:05Z",
            "who": USER,
        }
        for key in (f"{base}.tfstate", f"{base}.versions/{number:010d}"):
            client.put_object(
                Bucket=bucket, Key=key, Body=body, Metadata=metadata, ContentType="application/json"
            )
    return bodies


def test_old_layout_history_is_read_and_pruned_where_listed(moto: Moto, tmp_path: Path) -> None:
    """Where the server lists `<name>.versions/` (S3, R2, moto), an upgraded server reads
    that history at once and prunes it with the new versions."""
    bucket = moto.new_bucket()
    p = Paths("upgraded")
    bodies = write_old_layout(moto, bucket, p.name, 3)
    with running_server(store_url(bucket), tmp_path, "--keep-versions", "3", **moto.env) as server:
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [3, 2, 1]
        assert server.request("GET", f"{p.versions}/1").body == bodies[1]
        assert server.request("POST", p.state, state_body(4)).status == 200
        assert [v["version"] for v in server.request("GET", p.versions).json()] == [4, 3, 2]
        assert server.request("GET", f"{p.versions}/2").body == bodies[2]
    old = f"{PREFIX}/{USER}/{p.name}.versions/"
    assert keys_under(moto, bucket, old) == [f"{old}0000000002", f"{old}0000000003"]


def migrate(store: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "tfstate_server.storage.s3", "migrate-versions", store, *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_migrate_versions_moves_the_old_layout(s3: Moto | SeaweedFS, bucket: str, tmp_path: Path) -> None:
    p, other = Paths("migrated"), Paths("already-new")
    bodies = write_old_layout(s3, bucket, p.name, 4)
    old = f"{PREFIX}/{USER}/{p.name}.versions/"
    with running_server(store_url(bucket), tmp_path, "--keep-versions", "3", **s3.env) as server:
        assert server.request("POST", other.state, state_body(1)).status == 200
        # Before: SeaweedFS leaves `*.versions/` out of listings, so only the current state
        # is seen as a version there; moto lists the old layout.
        before = [v["version"] for v in server.request("GET", p.versions).json()]
        assert before == ([4] if isinstance(s3, SeaweedFS) else [4, 3, 2, 1])
        result = migrate(store_url(bucket), s3.env, "--keep-versions", "3")
        assert result.returncode == 0, result.stderr
        assert f"{USER}/{p.name}: " in result.stdout
        assert "2 state(s), 1 with old-layout versions" in result.stdout
        versions = server.request("GET", p.versions).json()
        assert [v["version"] for v in versions] == [4, 3, 2]
        assert all(v["who"] == USER and v["lineage"] == "lineage-1" for v in versions)
        for serial in (4, 3, 2):
            assert server.request("GET", f"{p.versions}/{serial}").body == bodies[serial]
        assert server.request("POST", p.state, state_body(5)).status == 200
        assert [v["version"] for v in server.request("GET", p.versions).json()] == [5, 4, 3]
    # Nothing is left under the old layout, also where the server does not list it.
    client = s3.client()
    for number in range(1, 5):
        with pytest.raises(botocore.exceptions.ClientError):
            client.head_object(Bucket=bucket, Key=f"{old}{number:010d}")
    again = migrate(store_url(bucket), s3.env, "--keep-versions", "3")
    assert again.returncode == 0, again.stderr
    assert "0 with old-layout versions, 0 version(s) moved" in again.stdout


def test_migrate_versions_bad_input_is_one_line(s3: Moto | SeaweedFS) -> None:
    result = migrate("s3://no-such-bucket-here/team", s3.env)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no-such-bucket-here" in result.stderr
    result = migrate("file:///tmp/x", s3.env)
    assert result.returncode == 2 and "expected s3://bucket/prefix" in result.stderr


def test_store_reads_both_layouts_newest_first(s3: Moto | SeaweedFS, bucket: str) -> None:
    """Mid-migration a number may be under both prefixes: listed once, from the new one."""
    write_old_layout(s3, bucket, "both", 2)
    client = s3.client()
    base = f"{PREFIX}/{USER}/both"
    client.copy_object(
        Bucket=bucket,
        Key=f"{base}.history/0000000002",
        CopySource={"Bucket": bucket, "Key": f"{base}.versions/0000000002"},
        MetadataDirective="COPY",
    )
    store = S3Store(bucket, PREFIX, keep_versions=5, client=client)
    listed = store.list_versions(StateKey(USER, "both"))
    assert [v.version for v in listed][:1] == [2]
    assert len({v.version for v in listed}) == len(listed)


# -- a bucket missing, gone or denied --------------------------------------------------


def test_missing_bucket_is_refused_at_start(s3: Moto | SeaweedFS) -> None:
    assert_refused(serve_once("s3://no-such-bucket-here/team", s3.env), "not usable")


def test_bucket_deleted_while_running_is_503(s3: Moto | SeaweedFS, bucket: str, tmp_path: Path) -> None:
    client = s3.client()
    p = Paths("gone")
    with running_server(store_url(bucket), tmp_path, **{**s3.env, "AWS_MAX_ATTEMPTS": "1"}) as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
        for method, path, body in [
            ("GET", p.state, None),
            ("POST", p.state, state_body(2)),
            ("LOCK", p.lock, lock_body("x")),
            ("GET", p.versions, None),
        ]:
            reply = server.request(method, path, body)
            assert reply.status == 503, (method, reply.status, reply.body)
            assert "bucket does not exist" in reply.json()["error"]
        wait_until(lambda: "ERROR" in server.log(), 10, "the error in the log")
    assert bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]


@dataclass
class KeyedMoto(KeyedEndpoint):
    """moto that checks keys against its own IAM (INITIAL_NO_AUTH_ACTION_COUNT): users
    like the identities devenv/seaweedfs.py makes, with IAM policies to match."""

    endpoint: str
    admin: Keys
    reader: Keys
    limited: Keys
    outsider: Keys

    def client(self, keys: Keys | None = None, service: str = "s3") -> Any:
        import boto3

        keys = keys or self.admin
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id=keys.access_key,
            aws_secret_access_key=keys.secret_key,
            region_name="us-east-1",
        )

    def new_bucket(self) -> str:
        name = f"tfstate-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


# moto asks for "s3:HeadBucket" where S3 asks for s3:ListBucket.
READ = ["s3:Get*", "s3:List*", "s3:HeadBucket"]
KEYED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "admin": [{"Action": "s3:*", "Resource": "*"}],
    "reader": [{"Action": READ, "Resource": "*"}],
    "limited": [
        {"Action": READ, "Resource": "*"},
        {"Action": ["s3:PutObject", "s3:DeleteObject"], "Resource": f"arn:aws:s3:::*/*{PROBE_NAME}*"},
    ],
    "outsider": [
        {"Action": "s3:*", "Resource": ["arn:aws:s3:::never-created", "arn:aws:s3:::never-created/*"]}
    ],
}


@pytest.fixture(scope="module")
def keyed_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedMoto]:
    port = free_port()
    # The IAM calls that make the users are the only ones allowed without keys.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(3 * len(KEYED_POLICIES))}
    with open(tmp_path_factory.mktemp("keyed-moto") / "moto.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "devenv" / "serial_moto.py"), "127.0.0.1", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:

        def accepting() -> bool:
            assert proc.poll() is None, f"moto exited {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                return False
            return True

        wait_until(accepting, 30, "moto to accept connections", 0.05)
        endpoint = f"http://127.0.0.1:{port}"
        iam = KeyedMoto(endpoint, *[Keys("unchecked", "unchecked")] * 4).client(service="iam")
        keys = {}
        for name, statements in KEYED_POLICIES.items():
            iam.create_user(UserName=name)
            made = iam.create_access_key(UserName=name)["AccessKey"]
            keys[name] = Keys(made["AccessKeyId"], made["SecretAccessKey"])
            document = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", **st} for st in statements],
            }
            iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps(document))
        yield KeyedMoto(endpoint, **keys)
    finally:
        stop_process(proc)


def test_denied_keys(s3: Moto | SeaweedFS, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """On moto, one that checks keys (the shared one grants any key everything)."""
    keyed: KeyedMoto | SeaweedFS = request.getfixturevalue("keyed_moto") if isinstance(s3, Moto) else s3
    bucket = keyed.new_bucket()
    # Keys that may not write, or not see the bucket, or do not exist: refused at start.
    assert_refused(serve_once(store_url(bucket), keyed.env_as(keyed.reader)), "not usable", "AccessDenied")
    assert_refused(serve_once(store_url(bucket), keyed.env_as(keyed.outsider)), "not usable")
    wrong = dict(keyed.env)
    wrong["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    assert_refused(serve_once(store_url(bucket), wrong), "not usable")
    # Keys that pass the start-up check but may not write states: reads are served,
    # every write is a 503 that says so, and nothing is written.
    p = Paths("denied")
    keyed.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{USER}/{p.name}.tfstate", Body=state_body(1))
    with running_server(store_url(bucket), tmp_path, **keyed.env_as(keyed.limited)) as server:
        assert server.request("GET", p.state).body == state_body(1)
        for method, path, body in [
            ("POST", p.state, state_body(2)),
            ("LOCK", p.lock, lock_body("x")),
            ("POST", Paths("new").state, state_body(1)),
        ]:
            reply = server.request(method, path, body)
            assert reply.status == 503, (method, reply.status, reply.body)
            assert "denied" in reply.json()["error"]
        wait_until(lambda: "ERROR" in server.log(), 10, "the error in the log")
    assert keys_under(keyed, bucket, f"{PREFIX}/") == [f"{PREFIX}/{USER}/{p.name}.tfstate"]


# -- a bucket that ignores conditional writes --------------------------------------------


class _Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.mode = mode

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closed its connection: nothing to report


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Forwards to moto; "ignore" drops If-None-Match and If-Match as a server that does
    not know them would, "refuse" answers them with 501 Not Implemented, "deny-history"
    answers 403 to every write of a version object (keys that may not write there),
    "deny-delete" answers 403 to every DeleteObjects."""

    server: _Proxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conditional = {"if-none-match", "if-match"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
        if self.server.mode == "refuse" and conditional & {k.lower() for k in headers}:
            payload = b"<Error><Code>NotImplemented</Code><Message>no conditions</Message></Error>"
            self.send_response(501)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.server.mode == "deny-history" and self.command == "PUT" and ".history/" in self.path:
            payload = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if (
            self.server.mode == "deny-delete"
            and self.command == "POST"
            and "delete" in self.path.partition("?")[2]
        ):
            payload = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.server.mode == "ignore":
            headers = {k: v for k, v in headers.items() if k.lower() not in conditional}
        upstream = http.client.HTTPConnection(
            self.server.upstream.hostname, self.server.upstream.port, timeout=30
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in {
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "server",
                    "date",
                }:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def proxy_to(moto: Moto, mode: str) -> Iterator[dict[str, str]]:
    """The environment of a server that reaches moto through a proxy in `mode`."""
    proxy = _Proxy(moto.endpoint, mode)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield {**moto.env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{proxy.server_address[1]}"}
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)


@pytest.mark.parametrize(
    ("mode", "expected"), [("ignore", "ignores conditional writes"), ("refuse", "does not support")]
)
def test_bucket_without_conditional_writes_is_refused_at_start(moto: Moto, mode: str, expected: str) -> None:
    bucket = moto.new_bucket()
    with proxy_to(moto, mode) as env:
        assert_refused(serve_once(store_url(bucket), env), "not usable", expected, "lock twice")
    # The probe object is gone again.
    assert keys_under(moto, bucket, "") == []


# -- a version that cannot be kept ------------------------------------------------------


@contextmanager
def unversioned_env(s3: Moto | SeaweedFS) -> Iterator[dict[str, str]]:
    """Keys that may write states and locks but no version objects."""
    if isinstance(s3, Moto):
        with proxy_to(s3, "deny-history") as env:
            yield env
    else:
        yield s3.env_as(s3.unversioned)


def test_a_version_that_cannot_be_kept_fails_the_write(
    s3: Moto | SeaweedFS, bucket: str, tmp_path: Path
) -> None:
    """Never a silent loss: the write whose version object cannot be stored is a 503 (its
    state is listed as a version from the state itself), and the next write, which would
    replace that state, is refused before it does."""
    p = Paths("unkept")
    history = f"{PREFIX}/{USER}/{p.name}.history/"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(store_url(bucket), tmp_path / "a", **s3.env) as server:
        assert server.request("POST", p.state, state_body(1)).status == 200
    with unversioned_env(s3) as env, running_server(store_url(bucket), tmp_path / "b", **env) as server:
        for serial in (2, 3):
            reply = server.request("POST", p.state, state_body(serial))
            assert reply.status == 503, (serial, reply.status, reply.body)
            assert "denied" in reply.json()["error"]
        assert json.loads(server.request("GET", p.state).body)["serial"] == 2
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [2, 1]
        assert server.request("GET", f"{p.versions}/2").body == state_body(2)
        wait_until(lambda: "ERROR" in server.log(), 10, "the error in the log")
    assert keys_under(s3, bucket, history) == [f"{history}0000000001"]
    with running_server(store_url(bucket), tmp_path / "a", **s3.env) as server:
        assert server.request("POST", p.state, state_body(3)).status == 200
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [3, 2, 1]
    assert keys_under(s3, bucket, history) == [f"{history}{n:010d}" for n in (1, 2, 3)]


def test_a_failed_prune_is_logged_and_done_by_the_next_write(moto: Moto, tmp_path: Path) -> None:
    """The write is stored before old versions are deleted: a failed delete does not fail
    it, it is logged, and the versions are pruned once deletes work again."""
    bucket = moto.new_bucket()
    p = Paths("unpruned")
    history = f"{PREFIX}/{USER}/{p.name}.history/"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        proxy_to(moto, "deny-delete") as env,
        running_server(store_url(bucket), tmp_path / "a", "--keep-versions", "2", **env) as server,
    ):
        for serial in range(1, 5):
            assert server.request("POST", p.state, state_body(serial)).status == 200
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [4, 3, 2, 1]
        wait_until(lambda: "could not be deleted" in server.log(), 10, "the failed prune in the log")
    with running_server(store_url(bucket), tmp_path / "b", "--keep-versions", "2", **moto.env) as server:
        assert server.request("POST", p.state, state_body(5)).status == 200
        assert [v["serial"] for v in server.request("GET", p.versions).json()] == [5, 4]
    assert keys_under(moto, bucket, history) == [f"{history}{n:010d}" for n in (4, 5)]
