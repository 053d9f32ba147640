"""The HTTP API in this process: make_app on a file store, served by aiohttp's test server
on loopback, with the metrics it keeps and the drain it counts requests with."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from tfstate_harness import PASSWORD, USER, basic, lock_body, state_body

from tfstate_server.api.app import ServerConfig, make_app
from tfstate_server.api.drain import Drain
from tfstate_server.auth import Credentials
from tfstate_server.metrics import Metrics
from tfstate_server.names import StateKey
from tfstate_server.statebody import HistoryPolicy
from tfstate_server.storage.file import FileStore

STATE = "/states/network"
KEY = StateKey(USER, "network")
AUTH = {"Authorization": basic()}
Scenario = Callable[[TestClient, FileStore], Awaitable[None]]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def serve(tmp_path: Path, scenario: Scenario, **config: Any) -> Metrics:
    """Run scenario against a new app on a file store under tmp_path; its metrics."""
    store = FileStore(tmp_path / "store", keep_versions=2)
    store.check_ready()
    credentials = Credentials()
    credentials.add(USER, PASSWORD, "test")
    settings = ServerConfig(
        states=store,
        locks=store,
        credentials=credentials,
        max_state_bytes=1 << 20,
        history=HistoryPolicy(),
        **config,
    )
    metrics = Metrics(store, store)

    async def main() -> None:
        client = TestClient(TestServer(make_app(settings, Drain(), metrics=metrics)))
        await client.start_server()
        try:
            await scenario(client, store)
        finally:
            await client.close()

    asyncio.run(main())
    return metrics


def test_state_lock_and_versions_round_trip(tmp_path: Path) -> None:
    async def scenario(client: TestClient, store: FileStore) -> None:
        assert (await client.get(STATE, headers=AUTH)).status == 204
        assert (await client.post(STATE, data=state_body(1), headers=AUTH)).status == 200
        reply = await client.request("LOCK", f"{STATE}/lock", data=lock_body("one"), headers=AUTH)
        assert reply.status == 200
        other = await client.request("LOCK", f"{STATE}/lock", data=lock_body("two"), headers=AUTH)
        assert other.status == 423  # after waiting a moment for a release
        assert (await other.json())["ID"] == "one"
        assert (await client.post(STATE, data=state_body(2), headers=AUTH)).status == 423
        assert (await client.post(f"{STATE}?ID=one", data=state_body(2), headers=AUTH)).status == 200
        reply = await client.request("UNLOCK", f"{STATE}/lock", data=lock_body("one"), headers=AUTH)
        assert reply.status == 200
        assert (await client.get(f"{STATE}/lock", headers=AUTH)).status == 204
        reply = await client.get(STATE, headers=AUTH)
        assert await reply.read() == state_body(2)
        listed = await (await client.get(f"{STATE}/versions", headers=AUTH)).json()
        assert [(v["version"], v["serial"], v["who"]) for v in listed] == [(2, 2, USER), (1, 1, USER)]
        old = await client.get(f"{STATE}/versions/1", headers=AUTH)
        assert await old.read() == state_body(1)
        assert await store.get(KEY) == state_body(2)

    metrics = serve(tmp_path, scenario)
    assert sample(metrics, "tfstate_lock_grants_total") == 1
    assert sample(metrics, "tfstate_lock_conflicts_total") == 1
    assert sample(metrics, "tfstate_lock_waits_total", outcome="refused") == 1


def test_a_lock_waiting_for_a_release_in_this_process_is_granted(tmp_path: Path) -> None:
    async def scenario(client: TestClient, _: FileStore) -> None:
        await client.request("LOCK", f"{STATE}/lock", data=lock_body("one"), headers=AUTH)
        waiting = asyncio.create_task(
            client.request("LOCK", f"{STATE}/lock", data=lock_body("two"), headers=AUTH)
        )
        await asyncio.sleep(0.02)  # "two" met the held lock and waits (up to 100 ms)
        reply = await client.request("UNLOCK", f"{STATE}/lock", data=lock_body("one"), headers=AUTH)
        assert reply.status == 200
        granted = await waiting
        assert granted.status == 200
        assert (await granted.json())["ID"] == "two"

    metrics = serve(tmp_path, scenario)
    assert sample(metrics, "tfstate_lock_waits_total", outcome="granted") == 1
    assert sample(metrics, "tfstate_lock_grants_total") == 2


def test_refused_writes_leave_the_state_as_it_was(tmp_path: Path) -> None:
    async def scenario(client: TestClient, store: FileStore) -> None:
        assert (await client.post(STATE, data=state_body(5), headers=AUTH)).status == 200
        lower = await client.post(STATE, data=state_body(4), headers=AUTH)
        assert lower.status == 409
        assert "lower than the stored serial 5" in (await lower.json())["error"]
        md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        wrong = await client.post(STATE, data=state_body(6), headers={**AUTH, "Content-MD5": md5})
        assert wrong.status == 400
        stale = await client.post(f"{STATE}?ID=gone", data=state_body(6), headers=AUTH)
        assert stale.status == 409
        unauthorized = await client.post(STATE, data=state_body(6), headers={"Authorization": "Basic eDp5"})
        assert unauthorized.status == 401
        assert await store.get(KEY) == state_body(5)
        assert len(await store.versions(KEY)) == 1

    serve(tmp_path, scenario)


def test_force_unlock_can_be_refused(tmp_path: Path) -> None:
    async def scenario(client: TestClient, _: FileStore) -> None:
        await client.request("LOCK", f"{STATE}/lock", data=lock_body("one"), headers=AUTH)
        refused = await client.request("UNLOCK", f"{STATE}/lock", data=b"", headers=AUTH)
        assert refused.status == 423
        assert (await refused.json())["ID"] == "one"

    serve(tmp_path, scenario, allow_force_unlock=False)
