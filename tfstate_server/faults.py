"""Faults of a store (state or locks) that are not the client's doing: 503, or 507 when full."""

from __future__ import annotations


class StoreFault(Exception):
    """The store cannot do what was asked, through no fault of the client: 507 when it is
    full, else 503. Nothing was changed (or the change was rolled back)."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason  # for the client
        self.detail = detail  # for the log only (paths, endpoints)


class StoreMissing(StoreFault):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(503, reason, detail)
