"""The contract of the state and lock interfaces, run in this process against every store:
the file store, and the S3 store on moto and on SeaweedFS (a real S3 server).

Each test gets a new, empty store place (a directory, a bucket); `make` opens one more
store on it, as another replica of the server would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tfstate_server.faults import StoreFault
from tfstate_server.locking import lockinfo
from tfstate_server.locking.locker import LockHeld, LockNotHeld
from tfstate_server.locking.lockinfo import LockInfo
from tfstate_server.names import StateKey
from tfstate_server.statebody import HistoryPolicy, InvalidState, StateConflict, StateMeta, parse_state
from tfstate_server.storage import Store
from tfstate_server.storage.file import FileStore
from tfstate_server.storage.s3 import S3Store
from tfstate_server.storage.state_store import WriteRequest

KEY = StateKey("alice", "network")
PREFIX = "team/states"
RACERS = 8  # threads racing for one lock or one state


@dataclass
class Place:
    """Where a store keeps its data, and how to open stores on it."""

    make: Callable[[int], Store]  # keep_versions -> a store (replicas share the place)
    missing: Callable[[], Store]  # a store whose place is gone


def _file_place(tmp_path: Path) -> Place:
    root = tmp_path / "store"

    def make(keep: int) -> Store:
        store = FileStore(root, keep_versions=keep)
        store.check_ready()
        return store

    def missing() -> Store:
        store = make(5)
        root.rename(tmp_path / "moved-away")
        return store

    return Place(make, missing)


def _s3_place(endpoint: Any) -> Place:
    bucket = endpoint.new_bucket()

    def make(keep: int, name: str = bucket) -> Store:
        return S3Store(name, PREFIX, keep_versions=keep, client=endpoint.client())

    return Place(make, lambda: make(5, "never-made-" + bucket))


@pytest.fixture(params=["file", "moto", "seaweedfs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    opened: list[Store] = []

    def track(open_one: Callable[..., Store]) -> Callable[..., Store]:
        def opener(*args: Any) -> Store:
            store = open_one(*args)
            opened.append(store)
            return store

        return opener

    if request.param == "file":
        found = _file_place(tmp_path)
    else:
        found = _s3_place(request.getfixturevalue(request.param))
    yield Place(track(found.make), track(found.missing))
    for store in opened:
        store.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def body(serial: int, lineage: str = "lineage-1", pad: int = 0) -> bytes:
    data = {"version": 4, "serial": serial, "lineage": lineage, "resources": [], "pad": "x" * pad}
    return json.dumps(data).encode()


def write(raw: bytes, key: StateKey = KEY, who: str = "alice", md5: str | None = None) -> WriteRequest:
    return WriteRequest(key, raw, parse_state(raw), who, lockinfo.now_rfc3339(), md5)


def lock_info(lock_id: str) -> LockInfo:
    fields = {"ID": lock_id, "Operation": "OperationTypeApply", "Who": "t", "Created": "2026-01-02T03:04:05Z"}
    return lockinfo.parse(json.dumps(fields).encode())


def accept(_: StateMeta | None) -> None:
    pass


POLICY = HistoryPolicy()


def guard(new: bytes) -> Callable[[StateMeta | None], None]:
    """The server's serial/lineage check for this body."""
    meta = parse_state(new)
    return lambda current: POLICY.check(current, meta)


# -- state and versions ----------------------------------------------------------------


def test_a_new_state_is_empty(place: Place) -> None:
    store = place.make(5)
    assert run(store.get(KEY)) is None
    assert run(store.versions(KEY)) == []
    assert run(store.version(KEY, 1)) is None
    assert run(store.holder(KEY)) is None


def test_each_write_is_the_state_and_a_version(place: Place) -> None:
    store = place.make(5)
    first, second = body(1), body(2, pad=300)
    assert run(store.put(write(first, who="alice"), None, accept)) == 1
    assert run(store.put(write(second, who="bob"), None, accept)) == 2
    assert run(store.get(KEY)) == second
    assert run(place.make(5).get(KEY)) == second  # what a replica reads too
    versions = run(store.versions(KEY))
    assert [(v.version, v.serial, v.lineage, v.who) for v in versions] == [
        (2, 2, "lineage-1", "bob"),
        (1, 1, "lineage-1", "alice"),
    ]
    assert [v.size for v in versions] == [len(second), len(first)]
    assert all(v.created for v in versions)
    assert run(store.version(KEY, 1)) == first
    assert run(store.version(KEY, 2)) == second
    assert run(store.version(KEY, 3)) is None
    assert run(store.get(StateKey("bob", "network"))) is None  # namespaces are apart


def test_versions_beyond_keep_versions_are_pruned(place: Place) -> None:
    store = place.make(3)
    for serial in range(1, 6):
        run(store.put(write(body(serial)), None, accept))
    assert [v.serial for v in run(store.versions(KEY))] == [5, 4, 3]
    assert run(store.version(KEY, 1)) is None
    assert store.versions_pruned == 2


def test_the_history_check_sees_the_stored_state_and_can_refuse(place: Place) -> None:
    store = place.make(5)
    seen: list[StateMeta | None] = []
    run(store.put(write(body(4)), None, seen.append))
    run(store.put(write(body(5, "lineage-1")), None, seen.append))
    assert seen == [None, StateMeta(4, "lineage-1")]
    with pytest.raises(StateConflict, match="lower than the stored serial 5"):
        run(store.put(write(body(3)), None, guard(body(3))))
    with pytest.raises(StateConflict, match="lineage"):
        run(store.put(write(body(6, "other")), None, guard(body(6, "other"))))
    assert run(store.get(KEY)) == body(5)
    assert len(run(store.versions(KEY))) == 2


def test_a_body_that_does_not_match_its_md5_is_not_stored(place: Place) -> None:
    store = place.make(5)
    raw = body(1)
    good = base64.b64encode(hashlib.md5(raw).digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(InvalidState, match="does not match"):
        run(store.put(write(raw, md5=bad), None, accept))
    with pytest.raises(InvalidState, match="not base64"):
        run(store.put(write(raw, md5="%%%"), None, accept))
    assert run(store.get(KEY)) is None
    assert run(store.versions(KEY)) == []
    assert run(store.put(write(raw, md5=good), None, accept)) == 1


def test_racing_writes_get_distinct_consecutive_versions(place: Place) -> None:
    """Replicas writing one state at once: every accepted write is its own version, and
    the serial guard holds across them (no write replaces a higher serial)."""
    stores = [place.make(50), place.make(50)]

    def one(serial: int) -> int | None:
        raw = body(serial)
        try:
            return int(run(stores[serial % 2].put(write(raw), None, guard(raw))))
        except StateConflict:
            return None

    with ThreadPoolExecutor(RACERS) as pool:
        results = list(pool.map(one, range(1, RACERS * 2 + 1)))
    accepted = sorted(v for v in results if v is not None)
    assert accepted == list(range(1, len(accepted) + 1))
    versions = run(stores[0].versions(KEY))
    assert [v.version for v in versions] == accepted[::-1]
    serials = [v.serial for v in reversed(versions)]
    assert serials == sorted(serials)  # each accepted write was checked against the newest
    assert run(stores[1].get(KEY)) == body(serials[-1])


def test_a_reader_sees_a_whole_state_while_writes_go_on(place: Place) -> None:
    store = place.make(5)
    bodies = {body(serial, pad=20_000 * (serial % 3)) for serial in range(1, 11)}
    ordered = sorted(bodies, key=lambda raw: parse_state(raw).serial)
    run(store.put(write(ordered[0]), None, accept))
    done = threading.Event()
    seen: list[bytes | None] = []

    def reader() -> None:
        async def loop() -> None:
            for _ in range(10_000):  # bounded
                seen.append(await store.get(KEY))
                if done.is_set():
                    return

        run(loop())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for raw in ordered[1:]:
            run(store.put(write(raw), None, accept))
    finally:
        done.set()
        thread.join(60)
    assert seen and all(raw in bodies for raw in seen)


def test_a_missing_store_is_a_store_fault(place: Place) -> None:
    store = place.missing()
    with pytest.raises(StoreFault) as caught:
        run(store.get(KEY))
    assert caught.value.status == 503
    for call in (
        store.put(write(body(1)), None, accept),
        store.versions(KEY),
        store.acquire(KEY, lock_info("a")),
        store.holder(KEY),
    ):
        with pytest.raises(StoreFault):
            run(call)


# -- locks -----------------------------------------------------------------------------


def test_a_lock_is_held_by_one_id_until_released(place: Place) -> None:
    store = place.make(5)
    run(store.acquire(KEY, lock_info("one")))
    run(store.acquire(KEY, lock_info("one")))  # a retried LOCK
    assert run(store.holder(KEY)) == lock_info("one")
    with pytest.raises(LockHeld) as caught:
        run(place.make(5).acquire(KEY, lock_info("two")))  # also from a replica
    assert caught.value.holder == lock_info("one")
    with pytest.raises(LockHeld):
        run(store.release(KEY, "two"))
    run(store.release(KEY, "one"))
    assert run(store.holder(KEY)) is None
    run(store.release(KEY, "one"))  # releasing an unlocked state succeeds
    run(store.acquire(KEY, lock_info("two")))
    assert run(store.holder(KEY)) == lock_info("two")


def test_a_force_release_frees_any_holder(place: Place) -> None:
    store = place.make(5)
    run(store.acquire(KEY, lock_info("one")))
    run(store.release(KEY, None))
    assert run(store.holder(KEY)) is None
    run(store.release(KEY, None))


def test_writes_to_a_locked_state_need_the_holders_id(place: Place) -> None:
    store = place.make(5)
    run(store.put(write(body(1)), None, accept))
    run(store.acquire(KEY, lock_info("one")))
    for lock_id in (None, "two"):
        with pytest.raises(LockHeld) as caught:
            run(store.put(write(body(2)), lock_id, accept))
        assert caught.value.holder == lock_info("one")
    assert run(store.put(write(body(2)), "one", accept)) == 2
    run(store.release(KEY, None))
    with pytest.raises(LockNotHeld):
        run(store.put(write(body(3)), "one", accept))  # force-unlocked meanwhile
    assert run(store.get(KEY)) == body(2)


def test_racing_acquires_grant_the_lock_once(place: Place) -> None:
    """Contenders on two replicas: exactly one grant, and it is the holder's."""
    stores = [place.make(5), place.make(5)]
    barrier = threading.Barrier(RACERS)

    def one(number: int) -> str | None:
        barrier.wait(30)
        try:
            run(stores[number % 2].acquire(KEY, lock_info(f"racer-{number}")))
        except LockHeld:
            return None
        return f"racer-{number}"

    with ThreadPoolExecutor(RACERS) as pool:
        granted = [lock_id for lock_id in pool.map(one, range(RACERS)) if lock_id]
    assert len(granted) == 1
    holder = run(stores[1].holder(KEY))
    assert holder is not None and holder.id == granted[0]
