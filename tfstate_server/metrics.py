"""Prometheus metrics, served on an address of their own (--metrics-listen).

Labels are bounded sets only: route, method, status, kind. State names, users and lock
IDs never appear (unbounded, and the operator's business).
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tfstate_server.locking.locker import Locker
from tfstate_server.storage.state_store import StateStore

METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "LOCK", "UNLOCK", "HEAD", "OPTIONS", "PATCH"})
ROUTES = ("health", "state", "lock", "versions", "version", "other")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _StoreCounters(Collector):
    """Counts the stores keep themselves, read at scrape time."""

    def __init__(self, store: StateStore, locks: Locker) -> None:
        self.store = store
        self.locks = locks

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tfstate_versions_pruned",
            "Kept versions deleted because a state had more than --keep-versions",
            value=self.store.versions_pruned,
        )
        waits = CounterMetricFamily(
            "tfstate_lock_waits",
            "LOCKs that met a held lock and waited for its release, by outcome",
            labels=["outcome"],
        )
        waits.add_metric(["granted"], self.locks.waits_granted)
        waits.add_metric(["refused"], self.locks.waits_refused)
        yield waits


class Metrics:
    def __init__(self, store: StateStore, locks: Locker) -> None:
        disable_created_metrics()  # a *_created series beside each counter: noise here
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.requests = Counter(
            "tfstate_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "tfstate_request_duration_seconds",
            "Time from the request's headers to its answer, by route and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lock_grants = Counter("tfstate_lock_grants", "LOCKs granted (200)", registry=registry)
        self.lock_conflicts = Counter(
            "tfstate_lock_conflicts", "LOCKs refused: another ID holds the lock (423)", registry=registry
        )
        self.store_errors = Counter(
            "tfstate_store_errors",
            "Store faults answered to a client, by kind: full (507) or unavailable (503)",
            ["kind", "status"],
            registry=registry,
        )
        self.bytes_written = Counter(
            "tfstate_state_bytes_written", "Bytes of state bodies stored (accepted writes)", registry=registry
        )
        self.state_writes = Counter("tfstate_state_writes", "State writes stored", registry=registry)
        registry.register(_StoreCounters(store, locks))
        for kind, status in (("full", "507"), ("unavailable", "503")):
            self.store_errors.labels(kind, status)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        method = request.method if request.method in METHODS else "other"
        key = (request.get("tfstate_route", "other"), method, status)
        children = self._children.get(key)
        if children is None:  # labels() looks up a dict under a lock: once per kind
            route = key[0]
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def store_fault(self, status: int) -> None:
        self.store_errors.labels("full" if status == 507 else "unavailable", str(status)).inc()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path != "/metrics":
            return web.Response(status=404, text="only /metrics here\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


METRICS: web.AppKey[Metrics | None] = web.AppKey("metrics")
