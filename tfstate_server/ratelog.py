"""Error lines at a bounded rate: a storm of identical failures must not fill the disk."""

from __future__ import annotations

import logging
import time
from typing import Any


class RateLimitedLog:
    """At most `per_interval` error lines per `interval` seconds, then one line saying
    how many were left out."""

    def __init__(
        self, logger: logging.Logger, what: str, per_interval: int = 5, interval: float = 10.0
    ) -> None:
        self.logger = logger
        self.what = what
        self.per_interval = per_interval
        self.interval = interval
        self._window = float("-inf")
        self._count = 0
        self._dropped = 0

    def log(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window >= self.interval:
            if self._dropped:
                self.logger.error("%d more %s in %.0f s (not shown)", self._dropped, self.what, self.interval)
            self._window, self._count, self._dropped = now, 0, 0
        self._count += 1
        if self._count > self.per_interval:
            self._dropped += 1
            return
        self.logger.error(message, *args)
