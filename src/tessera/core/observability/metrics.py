"""Prometheus metrics, in a registry per app so several apps (tests, workers) never collide."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool


class PoolCollector(Collector):
    """Connection pool figures read at scrape time."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        pool = self.engine.sync_engine.pool
        size = GaugeMetricFamily("tessera_db_pool_size", "Configured connection pool size")
        checked_out = GaugeMetricFamily("tessera_db_pool_checked_out", "Connections in use")
        overflow = GaugeMetricFamily("tessera_db_pool_overflow", "Connections beyond the pool size")
        if isinstance(pool, QueuePool):
            size.add_metric([], pool.size())
            checked_out.add_metric([], pool.checkedout())
            overflow.add_metric([], max(0, pool.overflow()))
        yield from (size, checked_out, overflow)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tessera_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "tessera_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "tessera_http_requests_in_progress", "HTTP requests being served", registry=self.registry
        )
        self.queue_depth = Gauge(
            "tessera_job_queue_depth", "Jobs waiting or running, per queue", ["queue"], registry=self.registry
        )

    def watch_pool(self, engine: AsyncEngine) -> None:
        self.registry.register(PoolCollector(engine))
