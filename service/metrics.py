"""Prometheus metrics of the service (prometheus-client's default registry).

The default registry already carries the process collector (``process_resident_memory_bytes``,
``process_cpu_seconds_total``) that Fly's ``[metrics]`` scrape and the lab's samplers read.
Buckets are chosen around the guide's targets (health < 50 ms, enrichment < 5 s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

STEP_NAMES: dict[str, str] = {
    "0": "duplicate guard",
    "1": "fetch lead from C2S",
    "2": "Diretrix CPF lookups",
    "3": "Work API enrichment",
    "4": "format message",
    "5": "store in database",
    "6": "send message to C2S",
}

STEP_SECONDS = Histogram(
    "c2s_pipeline_step_duration_seconds",
    "Duration of each enrichment step (0 guard, 1 C2S fetch, 2 Diretrix, 3 Work, 4 format, "
    "5 store, 6 send)",
    ["step"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 30),
)
LEADS_PROCESSED = Counter(
    "c2s_leads_processed_total",
    "Lead-processing requests by outcome",
    ["outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "c2s_upstream_request_duration_seconds",
    "Upstream HTTP calls by upstream, operation and outcome (HTTP status or error kind)",
    ["upstream", "operation", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30),
)
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

REJECTED = Counter(
    "c2s_upstream_calls_rejected_total",
    "Upstream calls not made because the upstream's circuit was open",
    ["upstream"],
)

# One label-child per step, created up front so every step appears in /metrics from the start.
STEP_CHILDREN = {step: STEP_SECONDS.labels(step=step) for step in STEP_NAMES}


class PoolCollector(Collector):
    """DB pool gauges read at scrape time (no background task, no cost between scrapes)."""

    def __init__(self) -> None:
        self.source: Callable[[], tuple[int, int, int]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size = GaugeMetricFamily("db_pool_size", "Configured database pool size")
        out = GaugeMetricFamily("db_pool_checked_out", "Database connections currently in use")
        over = GaugeMetricFamily("db_pool_overflow", "Connections open beyond the pool size")
        if self.source is not None:
            try:
                s, o, v = self.source()
            except Exception:  # noqa: BLE001 - a scrape must never fail because of the pool
                s, o, v = 0, 0, 0
            size.add_metric([], s)
            out.add_metric([], o)
            over.add_metric([], v)
        yield size
        yield out
        yield over


POOL = PoolCollector()
REGISTRY.register(POOL)


class BreakerCollector(Collector):
    """Circuit state per upstream (0 closed, 1 open, 2 half-open), read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, Any]] | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "c2s_upstream_circuit_state",
            "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open",
            labels=["upstream"],
        )
        left = GaugeMetricFamily(
            "c2s_upstream_circuit_open_seconds",
            "Seconds until an open circuit lets calls through again",
            labels=["upstream"],
        )
        for name, breaker in (self.source() if self.source is not None else {}).items():
            state.add_metric([name], breaker.state)
            left.add_metric([name], breaker.remaining_s())
        yield state
        yield left


BREAKERS = BreakerCollector()
REGISTRY.register(BREAKERS)


def render() -> tuple[bytes, str]:
    """The exposition body and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
