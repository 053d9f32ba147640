"""GET /metrics on --metrics-listen, read after a known sequence of requests."""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tfstate_harness import USER, Paths, Server, basic, lock_body, running_server, state_body, wait_until

_METRICS = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    store = (tmp_path / "store").as_uri()
    with running_server(store, tmp_path, "--metrics-listen", "127.0.0.1:0", "--keep-versions", "2") as server:
        port = wait_until(lambda: _METRICS.search(server.log()), 10, "the metrics line").group(1)
        yield server, f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_a_known_sequence(metered: tuple[Server, str], p: Paths) -> None:
    server, url = metered
    _, before = scrape(url)
    assert value(before, "tfstate_requests_total", route="health", method="GET", status="200") == 0

    assert server.request("GET", "/health").status == 200
    assert server.request("GET", p.state).status == 204
    bodies = [state_body(serial, pad=100 * serial) for serial in (1, 2, 3)]
    for body in bodies:
        assert server.request("POST", p.state, body).status == 200
    assert server.request("LOCK", p.lock, lock_body("lock-id-one")).status == 200
    assert server.request("LOCK", p.lock, lock_body("lock-id-one")).status == 200  # a retried LOCK
    assert server.request("LOCK", p.lock, lock_body("lock-id-two")).status == 423  # waits, then 423
    assert server.request("POST", p.state, state_body(4)).status == 423
    assert server.request("UNLOCK", p.lock, lock_body("lock-id-one")).status == 200
    assert server.request("GET", p.state, auth=basic(USER, "wrong")).status == 401
    assert server.request("GET", "/nowhere").status == 404
    assert server.request("PROPFIND", p.state).status == 405

    text, after = scrape(url)

    def requests(route: str, method: str, status: int) -> float:
        return value(after, "tfstate_requests_total", route=route, method=method, status=str(status))

    assert requests("health", "GET", 200) == 1
    assert requests("state", "GET", 204) == 1
    assert requests("state", "POST", 200) == 3
    assert requests("lock", "LOCK", 200) == 2
    assert requests("lock", "LOCK", 423) == 1
    assert requests("state", "POST", 423) == 1
    assert requests("lock", "UNLOCK", 200) == 1
    assert requests("state", "GET", 401) == 1
    assert requests("other", "GET", 404) == 1
    assert requests("state", "other", 405) == 1  # a method outside the known set is "other"

    histogram = "tfstate_request_duration_seconds"
    assert value(after, f"{histogram}_count", route="state", method="POST") == 4
    assert value(after, f"{histogram}_bucket", route="state", method="POST", le="+Inf") == 4
    assert value(after, f"{histogram}_sum", route="state", method="POST") > 0
    assert value(after, f"{histogram}_count", route="lock", method="LOCK") == 3

    assert value(after, "tfstate_lock_grants_total") == 2
    assert value(after, "tfstate_lock_conflicts_total") == 1
    assert value(after, "tfstate_lock_waits_total", outcome="refused") == 1
    assert value(after, "tfstate_lock_waits_total", outcome="granted") == 0
    assert value(after, "tfstate_state_writes_total") == 3
    assert value(after, "tfstate_state_bytes_written_total") == sum(len(b) for b in bodies)
    assert value(after, "tfstate_versions_pruned_total") == 1  # 3 writes, 2 kept
    for status, kind in (("503", "unavailable"), ("507", "full")):
        assert value(after, "tfstate_store_errors_total", kind=kind, status=status) == 0
    assert value(after, "process_resident_memory_bytes") > 0

    # No state names, users or lock IDs anywhere, as labels or otherwise.
    for secret in (p.name, USER, "lock-id-one", "lock-id-two", "/nowhere", "PROPFIND"):
        assert secret not in text


def test_store_errors_are_counted_by_kind(metered: tuple[Server, str], p: Paths, tmp_path: Path) -> None:
    server, url = metered
    assert server.request("POST", p.state, state_body(1)).status == 200
    shutil.rmtree(tmp_path / "store")
    assert server.request("POST", p.state, state_body(2)).status == 503
    assert server.request("GET", p.versions).status == 503
    _, after = scrape(url)
    assert value(after, "tfstate_store_errors_total", kind="unavailable", status="503") == 2
    assert value(after, "tfstate_requests_total", route="state", method="POST", status="503") == 1


def test_metrics_port_serves_only_metrics(metered: tuple[Server, str]) -> None:
    server, url = metered
    base = url.removesuffix("/metrics")
    for path in ("/", "/health", "/states/x"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + path, timeout=10)
        assert caught.value.code == 404
    request = urllib.request.Request(url, method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405
    # The state API is not on the metrics port, nor are metrics on the API port.
    assert server.request("GET", "/metrics").status == 404


def test_no_metrics_listener_by_default(server: Server) -> None:
    assert "metrics on" not in server.log()
