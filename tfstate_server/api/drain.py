"""Counting requests in progress, so shutdown can wait for them before closing connections.

aiohttp's own graceful shutdown stops reading from every connection at once, which would
cut off a write whose body is still arriving; so the server first stops listening, waits
here until no request is in progress, and only then lets aiohttp close connections.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from tfstate_server.offload import IN_FLIGHT


class Drain:
    def __init__(self) -> None:
        self.active = 0
        self.stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.active += 1
        self._idle.clear()
        IN_FLIGHT.set(self.in_flight)  # stores read it to choose the loop or a thread
        try:
            response = await handler(request)
            if self.stopping:
                response.force_close()  # keep-alive clients reconnect to a live server
            return response
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    def in_flight(self) -> int:
        return self.active

    async def wait_idle(self, timeout: float) -> bool:
        """Stop taking keep-alive requests gracefully; True if all finished in time."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
