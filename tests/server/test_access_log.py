"""The access log: written by a thread off the request path, every line kept on SIGTERM,
text or JSON."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tfstate_harness import (
    PASSWORD,
    ROOT,
    USER,
    Paths,
    basic,
    free_port,
    lock_body,
    request,
    running_server,
    state_body,
    stop_process,
    wait_until,
)

CLIENTS = 8
PER_CLIENT = 400


def _hammer(port: int, path: str, count: int) -> int:
    """count GETs on one keep-alive connection; how many got 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = 0
    try:
        for _ in range(count):
            conn.request("GET", path, headers={"Authorization": basic()})
            response = conn.getresponse()
            response.read()
            ok += response.status == 200
    finally:
        conn.close()
    return ok


def test_no_access_line_lost_on_sigterm(tmp_path: Path, p: Paths) -> None:
    """The log goes to a pipe nobody reads until after SIGTERM: its buffer fills, the log
    thread blocks, and thousands of lines wait in the queue while requests are still
    answered (the log is off the request path). All of them are written before exit."""
    port = free_port()
    argv = [sys.executable, "-m", "tfstate_server", "serve", "--listen", f"127.0.0.1:{port}"]
    argv += ["--store", (tmp_path / "store").as_uri()]
    env = {**os.environ, "TFSTATE_USERNAME": USER, "TFSTATE_PASSWORD": PASSWORD}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def ready() -> bool:
            assert proc.poll() is None, "the server exited"
            try:
                return request(port, "GET", "/health", timeout=5).status == 200
            except OSError:
                return False

        wait_until(ready, 20, "the server to answer")
        assert request(port, "POST", p.state, state_body(1)).status == 200
        with ThreadPoolExecutor(CLIENTS) as pool:
            answered = sum(pool.map(_hammer, [port] * CLIENTS, [p.state] * CLIENTS, [PER_CLIENT] * CLIENTS))
        # SIGTERM right after the last answer, with lines still queued.
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 0
    lines = err.decode().splitlines()
    assert answered == CLIENTS * PER_CLIENT
    gets = [line for line in lines if f"GET {p.state} 200" in line]
    assert len(gets) == answered  # every request, once
    assert len("\n".join(gets)) > 4 * 65536  # far more than a pipe holds: most were queued
    assert lines[-1].endswith("stopped")  # written after the last access line
    assert all("tfstate_server.access" in line for line in gets)


def test_json_log_format(tmp_path: Path, p: Paths) -> None:
    with running_server((tmp_path / "store").as_uri(), tmp_path, "--log-format", "json") as server:
        assert server.request("POST", f"{p.state}", state_body(3)).status == 200
        assert server.request("LOCK", p.lock, lock_body("the-lock")).status == 200
        assert server.request("GET", f"{p.state}?x=%C3%A9", auth=basic(USER, "wrong")).status == 401
        assert server.request("GET", "/states/%E2%9C%93").status == 400
        server.stop()
        text = server.log()
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert records[0]["message"].startswith("listening on http://127.0.0.1:")
    access = [r for r in records if r["logger"] == "tfstate_server.access"]
    assert len(access) == 4
    post, lock, unauthorized, odd = access
    assert post["method"] == "POST" and post["path"] == p.state and post["status"] == 200
    assert post["user"] == USER and post["state"] == p.name and post["version"] == 1
    assert isinstance(post["ms"], float) and post["remote"] == "127.0.0.1"
    assert lock["lock"] == "the-lock" and lock["method"] == "LOCK"
    assert unauthorized["status"] == 401 and unauthorized["user"] == "-"
    assert "x=" not in unauthorized["path"]  # no query strings
    assert odd["path"] == "/states/%E2%9C%93" and odd["status"] == 400
    assert post["message"].startswith(f"127.0.0.1 POST {p.state} 200 user={USER}")
    assert records[-1]["message"] == "stopped"
    assert PASSWORD not in text
