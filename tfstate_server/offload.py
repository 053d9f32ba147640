"""Where a store runs a blocking call: in a thread, or on the event loop when that is cheaper.

The store interfaces are coroutines; each store decides here how its I/O is run. A
thread hop costs two scheduler waits, which dominate a quick local call on a busy
machine, but an fsync on the event loop stalls every other request: a store may run
local I/O on the loop only while `alone()` (this is the only request in flight).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

# Set by the server for each request (api/drain.py): how many requests are in flight.
IN_FLIGHT: ContextVar[Callable[[], int]] = ContextVar("tfstate_in_flight", default=lambda: 1)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on the event loop's default executor (the server's I/O threads)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


def alone() -> bool:
    """True while the current request is the only one in flight (or outside a server)."""
    return IN_FLIGHT.get()() <= 1
