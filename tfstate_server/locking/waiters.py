"""A LOCK that meets a held lock waits a moment for its release before the 423 (the
file store's; an S3 store sees a held lock only by trying, and answers at once).

Under contention, contenders answered at once retry at once: the event loop then spends
its time refusing them and the holder's UNLOCK queues behind them. Held briefly instead,
a refused LOCK costs nothing while it waits, and an UNLOCK in this process hands the
release to the longest waiter, which then takes the lock through the store like any
LOCK (so grants stay exclusive across processes and replicas). A release by another
replica is not seen here: its waiters answer 423 at the end of the wait, which is
right, as the lock was held when they asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from tfstate_server.names import StateKey

WAIT_SECONDS = 0.1  # short against the clients' own retry backoff (>= 1 s)


class LockWaiters:
    def __init__(self) -> None:
        self._queues: dict[StateKey, deque[asyncio.Future[None]]] = {}

    async def wait(self, key: StateKey, timeout: float = WAIT_SECONDS) -> bool:
        """True if an UNLOCK in this process woke us (the lock may be free)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(key, deque())
        queue.append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if not future.done():
                future.cancel()
            with contextlib.suppress(ValueError):  # else popped by released()
                queue.remove(future)
            if not queue and self._queues.get(key) is queue:
                del self._queues[key]

    def released(self, key: StateKey) -> None:
        """Wake the longest waiter for this state. Called on an event loop; the waiter
        may be on another thread's loop (a store shared by several, as in tests)."""
        queue = self._queues.get(key)
        while queue:
            future = queue.popleft()
            if not future.done():
                loop = future.get_loop()
                if loop is asyncio.get_running_loop():
                    future.set_result(None)
                else:
                    with contextlib.suppress(RuntimeError):  # that loop is closed
                        loop.call_soon_threadsafe(_wake, future)
                return


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
