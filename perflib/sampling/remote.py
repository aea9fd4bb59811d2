"""Prometheus sources of resource samples: Fly's managed Prometheus (``fly_instance_*``) or a
self-hosted one (process metrics), queried over the run's window into ``samples.csv`` rows."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pandas as pd

from perflib.fly import (
    FlyError,
    parse_time,
)
from perflib.rundir import EventLog, SampleWriter, iso, utcnow
from perflib.sampling.local import Sampler
from perflib.sampling.prometheus import (
    HeaderAuth,
    PrometheusClient,
    PrometheusError,
    Series,
    from_unix,
    promql_duration,
    to_unix,
)

log = logging.getLogger(__name__)


MIB = 1024 * 1024


#: Fly's CPU counters tick 100 times per CPU-second (USER_HZ); 100 cs/s = one busy vCPU.
CENTISECONDS_PER_SECOND = 100.0


#: Fly scrapes instance metrics about every 15 s; a finer step only repeats points.
FLY_RESOLUTION_S = 15.0


#: A sustained throttle above this (percent of one vCPU) is reported as a ``throttled`` event.
THROTTLE_EVENT_PCT = 1.0


def cs_per_s_to_pct(value: float) -> float:
    """rate() of a centisecond counter (cs/s) → percent of one vCPU."""
    return value / CENTISECONDS_PER_SECOND * 100.0


def bytes_to_mib(value: float) -> float:
    return value / MIB


def _identity(value: float) -> float:
    return value


@dataclass(frozen=True)
class Query:
    """One PromQL template: ``{sel}`` = the label matchers, ``{sel_}`` = the same followed
    by a comma when non-empty, ``{window}`` = the rate window. ``convert`` maps the raw
    value to the unit of the output column."""

    promql: str
    convert: Callable[[float], float] = _identity
    #: A row exists at a time only where a primary query has a point. Only the memory gauge
    #: is primary: rate() keeps answering for up to one window after a target vanished
    #: (old samples are still inside the window), which would fabricate rows in a gap.
    primary: bool = False

    def render(self, matchers: Sequence[str], window: str) -> str:
        sel = ",".join(matchers)
        return self.promql.format(sel=sel, sel_=sel + "," if sel else "", window=window)


#: Fly managed Prometheus (fly.io/docs/machines/api). ``cpu`` excludes idle and steal (steal does not
#: consume quota, kept separate) and guest/guest_nice (Linux already counts them in user).
FLY_QUERIES: dict[str, Query] = {
    "memory_used": Query(
        "max by (instance) (fly_instance_memory_mem_total{{{sel}}}"
        " - fly_instance_memory_mem_available{{{sel}}})",
        bytes_to_mib,
        primary=True,
    ),
    "memory_total": Query(
        "max by (instance) (fly_instance_memory_mem_total{{{sel}}})", bytes_to_mib
    ),
    "cpu": Query(
        'sum by (instance) (rate(fly_instance_cpu{{{sel_}mode!~"idle|steal|guest|guest_nice"}}'
        "[{window}]))",
        cs_per_s_to_pct,
    ),
    "cpu_steal": Query(
        'sum by (instance) (rate(fly_instance_cpu{{{sel_}mode="steal"}}[{window}]))',
        cs_per_s_to_pct,
    ),
    "throttled": Query(
        "sum by (instance) (rate(fly_instance_cpu_throttle{{{sel}}}[{window}]))", cs_per_s_to_pct
    ),
    "cpu_balance": Query(
        "max by (instance) (fly_instance_cpu_balance{{{sel}}})",
        lambda v: v / CENTISECONDS_PER_SECOND,
    ),  # centiseconds → seconds
    "exit_oom": Query("max by (instance) (fly_instance_exit_oom{{{sel}}})"),
}


#: prometheus-client's default process collector on the service's own /metrics.
PROCESS_QUERIES: dict[str, Query] = {
    "memory_used": Query(
        "max by (instance) (process_resident_memory_bytes{{{sel}}})", bytes_to_mib, primary=True
    ),
    "cpu": Query(
        "max by (instance) (rate(process_cpu_seconds_total{{{sel}}}[{window}]))",
        lambda v: v * 100.0,
    ),  # CPU-seconds per second → %
}


@dataclass(frozen=True)
class Gap:
    """Missing points: ``instance`` None means no instance at all had data."""

    instance: str | None
    start: datetime
    end: datetime
    missing_points: int

    def describe(self) -> str:
        who = f"instance {self.instance}" if self.instance else "all instances"
        return (
            f"{who}: no data from {iso(self.start)} to {iso(self.end)} "
            f"({self.missing_points} missing point{'s' if self.missing_points != 1 else ''})"
        )


@dataclass
class FetchResult:
    """What one window fetch produced."""

    rows: list[dict[str, Any]]
    gaps: list[Gap]
    events: list[dict[str, Any]]
    warnings: list[str]
    step: float
    window: str
    queries: dict[str, str]
    extra: dict[str, dict[str, dict[float, float]]] = field(default_factory=dict)

    @property
    def instances(self) -> list[str]:
        return sorted({r["instance"] for r in self.rows})

    def frame(self) -> pd.DataFrame:
        """Every query's converted value per (time, instance), including the figures that
        have no samples.csv column (steal, burst balance in s, exit_oom): for notebooks.
        Only the rows' (time, instance) pairs appear, so gaps stay gaps."""
        keys = [(r["time"], r["instance"]) for r in self.rows]
        data: dict[str, list[float | None]] = {}
        for name, per_instance in self.extra.items():
            data[name] = [per_instance.get(i, {}).get(round(to_unix(t), 3)) for t, i in keys]
        df = pd.DataFrame(data, dtype="float64")
        df.insert(0, "instance", [i for _, i in keys])
        df.insert(0, "time", pd.to_datetime([t for t, _ in keys], utc=True))
        return df


def find_gaps(
    present: Iterable[float], grid: Sequence[float], step: float, *, edges: bool
) -> list[tuple[float, float, int]]:
    """Runs of grid points with no data, as (first missing, last missing, count).

    ``edges=False`` ignores the runs before the first and after the last present point
    (an instance that did not exist yet, or was gone, is not a gap)."""
    have = {round(t, 3) for t in present}
    missing = [t for t in grid if round(t, 3) not in have]
    if not edges and have:
        lo, hi = min(have), max(have)
        missing = [t for t in missing if lo < t < hi]
    elif not edges:
        return []
    runs: list[tuple[float, float, int]] = []
    for t in missing:
        if runs and abs(t - runs[-1][1] - step) < step / 2:
            runs[-1] = (runs[-1][0], t, runs[-1][2] + 1)
        else:
            runs.append((t, t, 1))
    return runs


def label_selector(labels: Mapping[str, str]) -> list[str]:
    """``{"app": "x"}`` → ``['app="x"']`` with PromQL string escaping."""
    out = []
    for key, value in labels.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        out.append(f'{key}="{escaped}"')
    return out


class PrometheusSampler(Sampler):
    """A window sampler over any Prometheus-compatible API, driven by query templates."""

    source: ClassVar[str] = "prometheus"
    queries: ClassVar[Mapping[str, Query]] = PROCESS_QUERIES
    default_resolution: ClassVar[float] = 15.0

    def __init__(
        self,
        base_url: str,
        *,
        labels: Mapping[str, str] | None = None,
        interval: float = 1.0,
        step: float | None = None,
        resolution: float | None = None,
        memory_limit_mb: float | None = None,
        settle_s: float | None = None,
        auth: HeaderAuth | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_points: int | None = None,
        what: str = "Prometheus",
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if interval <= 0:
            raise ValueError("sample interval must be positive")
        self.labels = dict(labels or {})
        self.interval, self._step, self._resolution = interval, step, resolution
        self.memory_limit_mb = memory_limit_mb
        self.settle_s = settle_s
        self.clock = clock  # injectable so recorded windows can be replayed
        extra = {"max_points": max_points} if max_points else {}
        self.client = PrometheusClient(
            base_url,
            auth=auth,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            what=what,
            transport=transport,
            **extra,
        )
        self._started: datetime | None = None
        self._sink: SampleWriter | None = None
        self._events: EventLog | None = None
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.result: FetchResult | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r}, labels={self.labels!r})"

    # -- parameters -----------------------------------------------------------------------

    @property
    def resolution(self) -> float:
        """Seconds between the source's own data points (its scrape interval)."""
        if self._resolution is None:
            self._resolution = self.detect_resolution() or self.default_resolution
        return self._resolution

    def detect_resolution(self) -> float | None:
        return None

    @property
    def step(self) -> float:
        """The query step: the sample interval, but not finer than the data itself."""
        return float(self._step) if self._step else max(self.interval, self.resolution)

    @property
    def rate_window(self) -> float:
        """rate() needs two points in its window; four scrape intervals is Prometheus's
        advice for robustness against a missed scrape (prometheus.io, "rate then sum")."""
        return max(4 * self.resolution, self.step)

    def matchers(self) -> list[str]:
        return label_selector(self.labels)

    def rendered_queries(self) -> dict[str, str]:
        matchers = self.matchers()
        window = promql_duration(self.rate_window)
        return {name: q.render(matchers, window) for name, q in self.queries.items()}

    # -- fetching -------------------------------------------------------------------------

    def grid(self, start: datetime, end: datetime) -> tuple[datetime, list[float]]:
        """Query start aligned up to a multiple of the step, and the expected timestamps."""
        step = self.step
        a = math.ceil(to_unix(start) / step - 1e-9) * step
        b = to_unix(end)
        n = int(math.floor((b - a) / step + 1e-9)) + 1 if b >= a else 0
        return from_unix(a), [a + i * step for i in range(n)]

    def fetch(self, start: datetime, end: datetime) -> FetchResult:
        """Query the window [start, end]: rows (sorted by time, then instance), gaps, events."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware (UTC)")
        if end <= start:
            raise ValueError(f"empty window: end {iso(end)} is not after start {iso(start)}")
        aligned, grid = self.grid(start, end)
        step = self.step
        rendered = self.rendered_queries()
        values: dict[str, dict[str, dict[float, float]]] = {}
        for name, promql in rendered.items():
            per_instance: dict[str, dict[float, float]] = {}
            if grid:
                for s in self.client.query_range(promql, aligned, end, step):
                    per_instance.setdefault(s.label("instance"), {}).update(
                        self._points(s, self.queries[name])
                    )
            values[name] = per_instance
        rows = self._rows(values)
        gaps = self._gaps(rows, grid, step)
        warnings = [f"{self.source}: {g.describe()}" for g in gaps]
        if not rows:
            warnings.insert(
                0,
                f"{self.source}: no samples between {iso(start)} and {iso(end)}"
                f" for {', '.join(label_selector(self.labels)) or 'any series'}",
            )
        events = [
            {
                "time": iso(g.start),
                "type": "sample_gap",
                "detail": {
                    "source": self.source,
                    "instance": g.instance,
                    "start": iso(g.start),
                    "end": iso(g.end),
                    "missing_points": g.missing_points,
                    "step_s": step,
                },
            }
            for g in gaps
        ]
        events += self._metric_events(values, warnings)
        return FetchResult(
            rows,
            gaps,
            events,
            warnings,
            step,
            promql_duration(self.rate_window),
            rendered,
            extra=values,
        )

    @staticmethod
    def _points(series: Series, query: Query) -> dict[float, float]:
        out = {}
        for t, v in zip(series.times.tolist(), series.values.tolist(), strict=True):
            if math.isfinite(v):  # NaN/Inf (e.g. 0/0 in a ratio) are not data
                out[round(t, 3)] = float(query.convert(v))
        return out

    def memory_limit(
        self, instance: str, t: float, values: Mapping[str, Mapping[str, Mapping[float, float]]]
    ) -> float | None:
        return self.memory_limit_mb

    def _rows(
        self, values: Mapping[str, Mapping[str, Mapping[float, float]]]
    ) -> list[dict[str, Any]]:
        primary = [n for n, q in self.queries.items() if q.primary]
        keys: set[tuple[float, str]] = set()
        for name in primary:
            for instance, points in values.get(name, {}).items():
                keys.update((t, instance) for t in points)
        rows = []
        for t, instance in sorted(keys):

            def get(name: str, _i: str = instance, _t: float = t) -> float | None:
                return values.get(name, {}).get(_i, {}).get(_t)

            rows.append(
                {
                    "time": from_unix(t),
                    "memory_used_mb": get("memory_used"),
                    "memory_limit_mb": self.memory_limit(instance, t, values),
                    "cpu_pct": get("cpu"),
                    "cpu_throttled_pct": get("throttled"),
                    "source": self.source,
                    "instance": instance,
                }
            )
        return rows

    def _gaps(self, rows: list[dict[str, Any]], grid: Sequence[float], step: float) -> list[Gap]:
        by_instance: dict[str, list[float]] = {}
        for row in rows:
            by_instance.setdefault(row["instance"], []).append(to_unix(row["time"]))
        gaps = (
            [
                Gap(None, from_unix(a), from_unix(b), n)
                for a, b, n in find_gaps(
                    [t for ts in by_instance.values() for t in ts], grid, step, edges=True
                )
            ]
            if rows
            else []
        )
        everywhere = {(g.start, g.end) for g in gaps}
        for instance, times in sorted(by_instance.items()):
            for a, b, n in find_gaps(times, grid, step, edges=False):
                if (from_unix(a), from_unix(b)) not in everywhere:
                    gaps.append(Gap(instance, from_unix(a), from_unix(b), n))
        return sorted(gaps, key=lambda g: (g.start, g.instance or ""))

    def _metric_events(
        self, values: Mapping[str, Mapping[str, Mapping[float, float]]], warnings: list[str]
    ) -> list[dict[str, Any]]:
        return []

    # -- Sampler lifecycle ----------------------------------------------------------------

    def start(self, sink: SampleWriter, events: EventLog) -> None:
        self._sink, self._events = sink, events
        self._started = self.clock()
        try:
            _ = self.resolution  # ask the server now, while the run has not begun
        except PrometheusError as exc:
            self._resolution = self.default_resolution
            self._error(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        """Fetch the run's window and write it. Never raises: a sampler must not take the run
        down; failures land in ``errors`` and as a ``sampler_error`` event."""
        if self._started is None or self._sink is None:
            return
        end = self.clock()
        settle = self.settle_s if self.settle_s is not None else 2 * self.resolution
        if settle > 0:
            time.sleep(settle)  # let the last scrape land in the TSDB
        try:
            result = self.fetch(self._started, end)
        except (PrometheusError, FlyError, ValueError) as exc:
            self._error(f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._started = None
        self.result = result
        for row in result.rows:
            self._sink.write(row)
        for warning in result.warnings:
            log.warning("%s", warning)
        self.warnings.extend(result.warnings)
        if self._events is not None:
            for event in result.events:
                self._events.record(event["type"], event["detail"], time=parse_time(event["time"]))

    def _error(self, message: str) -> None:
        self.errors.append(message)
        log.error("%s sampler: %s", self.source, message)
        if self._events is not None:
            self._events.record("sampler_error", {"source": self.source, "message": message})

    def close(self) -> None:
        self.client.close()


class ProcessSampler(PrometheusSampler):
    """Source ``process``: a Prometheus scraping the service's own ``/metrics``
    (prometheus-client's process collector: RSS and CPU seconds of the service process).
    ``memory_limit_mb`` is what the VM would allow (the preset's memory), if known."""

    source: ClassVar[str] = "process"
    queries: ClassVar[Mapping[str, Query]] = PROCESS_QUERIES

    def matchers(self) -> list[str]:
        """The given labels; without a ``job``, Prometheus's own process (the usual
        ``job="prometheus"`` self-scrape) is left out, as it is not the service."""
        out = label_selector(self.labels)
        if "job" not in self.labels:
            out.append('job!="prometheus"')
        return out

    def detect_resolution(self) -> float | None:
        """The targets' scrape interval, from ``/api/v1/targets`` (None if not exposed)."""
        try:
            return self.client.scrape_interval(self.labels)
        except PrometheusError as exc:
            log.info("could not read the scrape interval from %s: %s", self.client.base_url, exc)
            return None
