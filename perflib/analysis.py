"""Analysis of one run (or two): latency, throughput, errors, memory, CPU, steps, SLO verdicts.

Everything here is a pure function over the ingest frames (``perflib.k6.read_requests`` /
``read_points``) and the run directory's ``samples.csv`` / ``events.jsonl`` / ``service.log``;
:func:`analyze_run` gathers them for one run. Methods and their sources: docs/analysis.md.

Two rules hold throughout:

* A percentile is always computed from the raw samples it describes (per bucket, stage,
  endpoint), with k6's definition — linear interpolation at rank ``p·(n−1)``, i.e.
  ``numpy.percentile(method="linear")`` (k6 ``metrics/sink.go``). Percentiles are never
  averaged (Prometheus docs, "Histograms and summaries"), and every one carries its ``count``.
* Time is UTC; ``t_s`` columns are seconds since k6 started (``manifest["k6_started_at"]``),
  the axis every chart shares. k6 stamps a request at its *end*, so buckets and stages hold
  the requests that *ended* in them.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perflib.errors import PerflibError
from perflib.rundir import SAMPLE_COLUMNS, Completeness, RunDir, completeness
from perflib.slo import SEVERITY, Slo, SloFile, judge, load_slos, percentile_of, worst

if TYPE_CHECKING:
    import argparse

#: Label of the rows that pool every endpoint.
ALL = "(all)"
#: Stage labels of requests ending before the first / after the last stage.
BEFORE, AFTER = "(before)", "(after)"
DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
#: The guide's memory thresholds (MB) reported as "time above"; the VM limit is added per run.
GUIDE_MEMORY_THRESHOLDS_MB: tuple[float, ...] = (500.0, 700.0, 800.0)

#: The guide's "Slow Requests" troubleshooting, per service step.
STEP_ADVICE: dict[int, str] = {
    0: "in-process dedup guard: look for lock contention in the service",
    1: "C2S fetch slow: check C2S status",
    2: "Diretrix slow: contact Diretrix support",
    3: "Work API slow: check rate limits",
    4: "message formatting (no I/O): profile the service's CPU time",
    5: "database slow: check Neon metrics / the connection pool size",
    6: "C2S message send slow: check C2S status",
}


# --------------------------------------------------------------------------- small helpers


def percentile(values: Any, p: float) -> float:
    """k6's percentile: linear interpolation at rank ``p/100·(n−1)``; NaN for no values."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan
    return float(np.percentile(arr, p, method="linear"))


def percentile_ci(values: Any, p: float, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the ``p`` percentile from binomial order statistics.

    The number of samples below the true quantile is Binomial(n, p/100), so the order
    statistics of ranks ``l = B⁻¹(α/2)`` and ``u = B⁻¹(1 − α/2) + 1`` bracket it with
    probability ≥ ``confidence`` (asv ``asv_runner/statistics.py: quantile_ci``; Hahn &
    Meeker, *Statistical Intervals*, §5.2). A side that needs a rank outside 1..n is NaN:
    too few samples to bound it (a p99 from 50 requests has no upper bound). Like every
    per-request interval it assumes independent requests (see docs/analysis.md).
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype="float64"))
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    q = p / 100.0
    lo_rank = int(binom.ppf(alpha / 2, n, q))  # 1-based rank of the lower bound
    hi_rank = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    lo = float(x[lo_rank - 1]) if lo_rank >= 1 else math.nan
    hi = float(x[hi_rank - 1]) if hi_rank <= n else math.nan
    return lo, hi


def _pcol(p: float) -> str:
    """Column name of a percentile: 95 → ``p95``, 99.9 → ``p99.9``."""
    return f"p{p:g}"


def _to_ts(value: Any) -> pd.Timestamp | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _empty_requests() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "start_time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "duration_ms": pd.Series([], dtype="float64"),
            "failed": pd.Series([], dtype="boolean"),
            "name": pd.Series([], dtype="category"),
            "status": pd.Series([], dtype="category"),
            "error_code": pd.Series([], dtype="category"),
            "scenario": pd.Series([], dtype="category"),
        }
    )


def k6_window(
    manifest: Mapping[str, Any] | None, requests: pd.DataFrame | None = None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """(start, end) of the k6 run: the manifest's times, else the requests' extent."""
    manifest = manifest or {}
    start = _to_ts(manifest.get("k6_started_at"))
    end = _to_ts(manifest.get("k6_ended_at"))
    if requests is not None and len(requests):
        if start is None:
            col = "start_time" if "start_time" in requests else "time"
            start = requests[col].min()
        if end is None:
            end = requests["time"].max()
    return start, end


def _origin(requests: pd.DataFrame, origin: Any) -> pd.Timestamp | None:
    ts = _to_ts(origin)
    if ts is not None:
        return ts
    if len(requests) == 0:
        return None
    col = (
        "start_time"
        if "start_time" in requests and requests["start_time"].notna().any()
        else "time"
    )
    return requests[col].min().floor("s")


def _failed(requests: pd.DataFrame) -> pd.Series:
    """``http_req_failed`` per request; where k6 emitted none, status 0 or ≥ 400 (k6's default
    response callback treats 200–399 as expected)."""
    status = pd.to_numeric(
        requests.get("status", pd.Series(index=requests.index, dtype=object)).astype("object"),
        errors="coerce",
    )
    by_status = (status == 0) | (status >= 400)
    if "failed" not in requests:
        return by_status.astype(bool)
    failed = requests["failed"].astype("boolean")
    return failed.fillna(by_status).astype(bool)


def _select(requests: pd.DataFrame, endpoint: str | None) -> pd.DataFrame:
    if endpoint is None or len(requests) == 0:
        return requests
    names = requests["name"].astype("string").fillna("")
    return requests[names.str.contains(endpoint, regex=True)]


def _stats(values: np.ndarray, percentiles: Sequence[float]) -> dict[str, float]:
    out: dict[str, float] = {"count": int(values.size)}
    for p in percentiles:
        out[_pcol(p)] = percentile(values, p)
    known = values[~np.isnan(values)]  # an unknown duration is not a 0 or a NaN mean
    out["mean"] = float(known.mean()) if known.size else math.nan
    out["max"] = float(known.max()) if known.size else math.nan
    return out


# --------------------------------------------------------------------------- latency


def latency_over_time(
    requests: pd.DataFrame,
    *,
    bucket: str | pd.Timedelta = "10s",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    origin: Any = None,
    by_endpoint: bool = True,
    include_all: bool = True,
    column: str = "duration_ms",
) -> pd.DataFrame:
    """Percentiles of ``column`` per time bucket, from the raw samples of each bucket.

    Returns one row per (bucket, endpoint) that holds requests: ``bucket_start`` (UTC),
    ``t_s`` (bucket start, seconds since ``origin``), ``name`` (``"(all)"`` pools every
    endpoint), ``count``, ``p50``/``p95``/``p99`` (ms), ``mean``, ``max``. Buckets are aligned
    on ``origin`` (k6's start; default: the first request's start, floored to the second).
    """
    width = pd.Timedelta(bucket)
    cols = ["bucket_start", "t_s", "name", "count", *[_pcol(p) for p in percentiles], "mean", "max"]
    org = _origin(requests, origin)
    if org is None or len(requests) == 0:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(
        {
            "idx": ((requests["time"] - org) // width).astype("int64"),
            "name": requests["name"].astype("string").fillna("(no name)"),
            "v": requests[column].astype("float64"),
        }
    )
    frames = []
    groups: list[tuple[list[str], pd.DataFrame]] = []
    if by_endpoint:
        groups.append((["idx", "name"], df))
    if include_all:
        groups.append((["idx", "name"], df.assign(name=ALL)))
    for keys, frame in groups:
        g = frame.groupby(keys, sort=True)["v"]
        agg = g.agg(count="count", mean="mean", max="max")
        qs = g.quantile([p / 100 for p in percentiles], interpolation="linear").unstack()
        qs.columns = [_pcol(q * 100) for q in qs.columns]
        frames.append(agg.join(qs).reset_index())
    out = pd.concat(frames, ignore_index=True)
    out["bucket_start"] = org + out["idx"] * width
    out["t_s"] = out["idx"] * width.total_seconds()
    out["count"] = out["count"].astype("int64")
    return out[cols].sort_values(["bucket_start", "name"], ignore_index=True)


def stage_table(manifest: Mapping[str, Any] | None) -> pd.DataFrame:
    """The manifest's load-profile stages: ``stage``, ``start_s``, ``end_s``, ``target``."""
    rows = []
    for i, st in enumerate((manifest or {}).get("stages") or []):
        start = float(st.get("start_s", 0.0))
        dur = float(st.get("duration_s", 0.0))
        rows.append(
            {
                "stage_index": i,
                "stage": str(st.get("name", f"stage-{i}")),
                "start_s": start,
                "end_s": start + dur,
                "target": st.get("target"),
            }
        )
    return pd.DataFrame(rows, columns=["stage_index", "stage", "start_s", "end_s", "target"])


def assign_stage(t_s: pd.Series | np.ndarray, stages: pd.DataFrame) -> pd.Series:
    """Stage label of each elapsed time: ``[start_s, end_s)``; ``(before)``/``(after)`` outside.

    Stages are matched in order, so a time on a boundary belongs to the later stage.
    """
    t = np.asarray(t_s, dtype="float64")
    labels = np.full(t.shape, AFTER, dtype=object)
    if len(stages) == 0:
        return pd.Series(labels, index=getattr(t_s, "index", None), dtype="object")
    labels[t < stages["start_s"].min()] = BEFORE
    for st in stages.itertuples():
        labels[(t >= st.start_s) & (t < st.end_s)] = st.stage
    return pd.Series(labels, index=getattr(t_s, "index", None), dtype="object")


def latency_by_stage(
    requests: pd.DataFrame,
    manifest: Mapping[str, Any] | None,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    include_all: bool = True,
) -> pd.DataFrame:
    """Percentiles per load-profile stage and endpoint (requests assigned by their end time).

    Columns: ``stage``, ``stage_index``, ``start_s``, ``end_s``, ``target`` (VUs), ``name``,
    ``count``, percentiles, ``mean``, ``max``, ``req_per_s`` (count / stage duration). Requests
    outside every stage (k6's graceful stop) appear under ``(after)``.
    """
    stages = stage_table(manifest)
    start, _ = k6_window(manifest, requests)
    pcols = [_pcol(p) for p in percentiles]
    cols = [
        "stage",
        "stage_index",
        "start_s",
        "end_s",
        "target",
        "name",
        "count",
        *pcols,
        "mean",
        "max",
        "req_per_s",
    ]
    if len(requests) == 0 or start is None:
        return pd.DataFrame(columns=cols)
    t_s = (requests["time"] - start).dt.total_seconds()
    df = pd.DataFrame(
        {
            "stage": assign_stage(t_s, stages).to_numpy(),
            "name": requests["name"].astype("string").fillna("(no name)").to_numpy(),
            "v": requests["duration_ms"].astype("float64").to_numpy(),
            "t": t_s.to_numpy(),
        }
    )
    info = {row.stage: row for row in stages.itertuples()}
    order = {name: i for i, name in enumerate([BEFORE, *stages["stage"], AFTER])}
    rows = []
    names = [(n, df[df["name"] == n]) for n in sorted(df["name"].unique())]
    if include_all:
        names.append((ALL, df))
    for name, sub in names:
        for stage, grp in sub.groupby("stage", sort=False):
            st = info.get(stage)
            if st is not None:
                s0, s1, target, idx = st.start_s, st.end_s, st.target, st.stage_index
            else:
                s0, s1 = float(grp["t"].min()), float(grp["t"].max())
                target, idx = None, -1 if stage == BEFORE else len(stages)
            dur = s1 - s0
            stats = _stats(grp["v"].to_numpy(), percentiles)
            rows.append(
                {
                    "stage": stage,
                    "stage_index": idx,
                    "start_s": s0,
                    "end_s": s1,
                    "target": target,
                    "name": name,
                    **stats,
                    "req_per_s": stats["count"] / dur if dur > 0 else math.nan,
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    out["_o"] = out["stage"].map(order)
    return out.sort_values(["_o", "name"], ignore_index=True).drop(columns="_o")


# --------------------------------------------------------------------------- throughput, errors


def throughput(
    requests: pd.DataFrame,
    *,
    bucket: str | pd.Timedelta = "10s",
    origin: Any = None,
    include_all: bool = True,
) -> pd.DataFrame:
    """Requests per second per time bucket and endpoint, with failures.

    Columns: ``bucket_start``, ``t_s``, ``name``, ``requests``, ``failed``, ``req_per_s``,
    ``error_rate_pct``. The last bucket's rate uses the time actually covered.
    """
    width = pd.Timedelta(bucket)
    cols = ["bucket_start", "t_s", "name", "requests", "failed", "req_per_s", "error_rate_pct"]
    org = _origin(requests, origin)
    if org is None or len(requests) == 0:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(
        {
            "idx": ((requests["time"] - org) // width).astype("int64"),
            "name": requests["name"].astype("string").fillna("(no name)"),
            "failed": _failed(requests).astype("int64"),
        }
    )
    parts = [df] + ([df.assign(name=ALL)] if include_all else [])
    out = (
        pd.concat(parts)
        .groupby(["idx", "name"])
        .agg(requests=("failed", "size"), failed=("failed", "sum"))
        .reset_index()
    )
    end_s = (requests["time"].max() - org).total_seconds()
    w = width.total_seconds()
    covered = np.minimum(w, end_s - out["idx"] * w)
    covered = np.where(covered > 0, covered, w)
    out["req_per_s"] = out["requests"] / covered
    out["error_rate_pct"] = 100.0 * out["failed"] / out["requests"]
    out["bucket_start"] = org + out["idx"] * width
    out["t_s"] = out["idx"] * w
    return out[cols].sort_values(["bucket_start", "name"], ignore_index=True)


def throughput_summary(
    requests: pd.DataFrame, *, duration_s: float | None = None, include_all: bool = True
) -> pd.DataFrame:
    """Whole-run figures per endpoint: ``requests``, ``failed``, ``error_rate_pct``,
    ``duration_s``, ``req_per_s``, and latency ``p50``/``p95``/``p99``/``mean``/``max`` (ms)
    with ``p95_ci_low``/``p95_ci_high`` (:func:`percentile_ci`, 95 %).

    ``duration_s`` defaults to first request start → last request end.
    """
    cols = [
        "name",
        "requests",
        "failed",
        "error_rate_pct",
        "duration_s",
        "req_per_s",
        "p50",
        "p95",
        "p99",
        "mean",
        "max",
        "p95_ci_low",
        "p95_ci_high",
    ]
    if len(requests) == 0:
        return pd.DataFrame(columns=cols)
    if duration_s is None:
        start = requests["start_time"].min() if "start_time" in requests else requests["time"].min()
        duration_s = max((requests["time"].max() - start).total_seconds(), 1e-9)
    failed = _failed(requests)
    names = requests["name"].astype("string").fillna("(no name)")
    rows = []
    groups = [(n, names == n) for n in sorted(names.unique())]
    if include_all:
        groups.append((ALL, pd.Series(True, index=requests.index)))
    for name, mask in groups:
        n = int(mask.sum())
        f = int(failed[mask].sum())
        values = requests.loc[mask, "duration_ms"].to_numpy(dtype="float64")
        stats = _stats(values, (50, 95, 99))
        ci_lo, ci_hi = percentile_ci(values, 95)
        rows.append(
            {
                "name": name,
                "requests": n,
                "failed": f,
                "error_rate_pct": 100.0 * f / n if n else math.nan,
                "duration_s": duration_s,
                "req_per_s": n / duration_s,
                **{k: stats[k] for k in ("p50", "p95", "p99", "mean", "max")},
                "p95_ci_low": ci_lo,
                "p95_ci_high": ci_hi,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def error_breakdown(requests: pd.DataFrame) -> pd.DataFrame:
    """Failed requests split by endpoint, HTTP status and k6 ``error_code``.

    Columns: ``name``, ``status``, ``error_code`` (``""`` when absent), ``count``,
    ``pct_of_requests`` (of all requests of the run), ``pct_of_endpoint`` (of that endpoint's
    requests), ``pct_of_failures``. Sorted by count, largest first. ``failed`` comes from
    ``http_req_failed``; where k6 emitted none, status 0 or ≥ 400 counts as failed.
    """
    cols = [
        "name",
        "status",
        "error_code",
        "count",
        "pct_of_requests",
        "pct_of_endpoint",
        "pct_of_failures",
    ]
    if len(requests) == 0:
        return pd.DataFrame(columns=cols)
    failed = _failed(requests)
    df = pd.DataFrame(
        {
            "name": requests["name"].astype("string").fillna("(no name)"),
            "status": requests["status"].astype("string").fillna("")
            if "status" in requests
            else "",
            "error_code": (
                requests["error_code"].astype("string").fillna("")
                if "error_code" in requests
                else ""
            ),
        }
    )
    per_endpoint = df["name"].value_counts()
    bad = df[failed.to_numpy()]
    if len(bad) == 0:
        return pd.DataFrame(columns=cols)
    out = bad.groupby(["name", "status", "error_code"]).size().rename("count").reset_index()
    out["pct_of_requests"] = 100.0 * out["count"] / len(df)
    out["pct_of_endpoint"] = 100.0 * out["count"] / out["name"].map(per_endpoint)
    out["pct_of_failures"] = 100.0 * out["count"] / len(bad)
    return out.sort_values(["count", "name"], ascending=[False, True], ignore_index=True)[cols]


def error_rate(requests: pd.DataFrame, endpoint: str | None = None) -> tuple[float, int, int]:
    """(error rate in %, failed, requests) for the requests whose name matches ``endpoint``."""
    sel = _select(requests, endpoint)
    n = len(sel)
    if n == 0:
        return math.nan, 0, 0
    f = int(_failed(sel).sum())
    return 100.0 * f / n, f, n


@dataclass
class Saturation:
    """Whether k6 had to drop iterations (no free VU): latency then under-reports the wait.

    k6 measures ``http_req_duration`` from the actual send and drops — never queues —
    iterations an arrival-rate executor could not start, so a saturated run's percentiles
    miss exactly the slowest moments (coordinated omission; anchors doc §2.2).
    """

    saturated: bool
    dropped_iterations: int
    first_at: pd.Timestamp | None = None
    last_at: pd.Timestamp | None = None
    first_t_s: float | None = None
    by_scenario: dict[str, int] = field(default_factory=dict)
    max_vus: float | None = None
    max_vus_max: float | None = None

    @property
    def evidence(self) -> str:
        if not self.saturated:
            vus = f"; max VUs {self.max_vus:g}" if self.max_vus is not None else ""
            return f"no dropped_iterations{vus}"
        where = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_scenario.items()))
        when = f" from t={self.first_t_s:.1f} s" if self.first_t_s is not None else ""
        return (
            f"{self.dropped_iterations} dropped_iterations{when}"
            f"{f' ({where})' if where else ''}: k6 had no free VU, latency under-reported"
        )


def saturation(points: pd.DataFrame | None, *, origin: Any = None) -> Saturation:
    """Saturated-run flag from k6's ``dropped_iterations`` points (and ``vus``/``vus_max``)."""
    if points is None or len(points) == 0:
        return Saturation(False, 0)
    metric = points["metric"].astype("string")
    dropped = points[metric == "dropped_iterations"]
    vus = points.loc[metric == "vus", "value"]
    vmax = points.loc[metric == "vus_max", "value"]
    total = int(round(float(dropped["value"].sum()))) if len(dropped) else 0
    org = _to_ts(origin)
    sat = Saturation(
        saturated=total > 0,
        dropped_iterations=total,
        max_vus=float(vus.max()) if len(vus) else None,
        max_vus_max=float(vmax.max()) if len(vmax) else None,
    )
    if total > 0:
        sat.first_at = dropped["time"].min()
        sat.last_at = dropped["time"].max()
        if org is not None:
            sat.first_t_s = (sat.first_at - org).total_seconds()
        if "scenario" in dropped:
            grp = dropped.groupby(dropped["scenario"].astype("string").fillna(""))["value"].sum()
            sat.by_scenario = {k: int(round(v)) for k, v in grp.items()}
    return sat


def vus_series(points: pd.DataFrame | None, *, origin: Any = None) -> pd.DataFrame:
    """k6's ``vus`` gauge over time: ``time``, ``t_s``, ``vus`` (summed over segments)."""
    if points is None or len(points) == 0:
        return pd.DataFrame(columns=["time", "t_s", "vus"])
    v = points[points["metric"].astype("string") == "vus"]
    # segments each report their own VUs once a second: sum per whole second.
    s = v.groupby(v["time"].dt.floor("s"))["value"].sum().rename("vus").reset_index()
    org = _to_ts(origin) or (s["time"].min() if len(s) else None)
    s["t_s"] = (s["time"] - org).dt.total_seconds() if org is not None else np.nan
    return s[["time", "t_s", "vus"]]


# --------------------------------------------------------------------------- resource samples


def _epoch_s(times: pd.Series) -> np.ndarray:
    """Seconds since the epoch as floats, whatever the datetime resolution (ns, us, …)."""
    t = pd.to_datetime(pd.Series(times), utc=True)
    return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64")


def _dt_weights(times: pd.Series, max_gap_s: float) -> np.ndarray:
    """Seconds each sample stands for: the time to the next sample, capped at ``max_gap_s``
    (a gap longer than that is unknown time, not time above a threshold)."""
    t = _epoch_s(times)
    if t.size == 0:
        return np.array([])
    dt = np.diff(t)
    last = float(np.median(dt)) if dt.size else 0.0
    return np.minimum(np.append(dt, last), max_gap_s)


def spans_above(
    times: pd.Series, values: pd.Series, threshold: float, *, max_gap_s: float = 5.0
) -> pd.DataFrame:
    """Unbroken runs of samples strictly above ``threshold``.

    Columns: ``start``, ``end`` (first / last sample above), ``span_s`` = end − start (what
    "sustained" is measured on: the condition was observed that long), ``time_s`` (the
    samples' weights, see :func:`_dt_weights`), ``samples``, ``max``. A sample at or below
    the threshold, a missing value, or a gap longer than ``max_gap_s`` ends a run.
    """
    cols = ["start", "end", "span_s", "time_s", "samples", "max"]
    if len(times) == 0:
        return pd.DataFrame(columns=cols)
    t = pd.Series(times).reset_index(drop=True)
    v = pd.Series(values, dtype="float64").reset_index(drop=True)
    above = (v > threshold).to_numpy()
    secs = _epoch_s(t)
    gap = np.append(True, np.diff(secs) > max_gap_s)
    w = _dt_weights(t, max_gap_s)
    rows = []
    i, n = 0, len(v)
    while i < n:
        if not above[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and above[j + 1] and not gap[j + 1]:
            j += 1
        rows.append(
            {
                "start": t[i],
                "end": t[j],
                "span_s": secs[j] - secs[i],
                "time_s": float(w[i : j + 1].sum()),
                "samples": j - i + 1,
                "max": float(v[i : j + 1].max()),
            }
        )
        i = j + 1
    return pd.DataFrame(rows, columns=cols)


def _timeline(samples: pd.DataFrame, origin: pd.Timestamp | None) -> pd.DataFrame:
    """One row per sample time (several instances → their maximum), with ``t_s``."""
    df = samples.copy()
    if "instance" in df and df["instance"].nunique(dropna=True) > 1:
        num = ["memory_used_mb", "memory_limit_mb", "cpu_pct", "cpu_throttled_pct"]
        df = df.groupby("time", as_index=False)[num].max()
    df = df.sort_values("time", ignore_index=True)
    df["t_s"] = (df["time"] - origin).dt.total_seconds() if origin is not None else np.nan
    return df


@dataclass
class LeakEstimate:
    """Memory slope during steady load: Theil–Sen estimator with its confidence interval.

    Theil (1950) / Sen (1968): the median of all pairwise slopes, robust to GC spikes and
    outliers; ``scipy.stats.theilslopes`` gives the CI from Kendall's tau distribution
    (Sen 1968). That CI assumes independent residuals; memory samples are autocorrelated, so
    read it as optimistic (docs/analysis.md).
    """

    slope_mb_per_min: float
    ci_low: float
    ci_high: float
    intercept_mb: float
    n: int
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    window: str
    confidence: float = 0.95
    min_mb_per_min: float = 1.0
    method: str = "Theil-Sen (scipy.stats.theilslopes), CI from Kendall's tau"

    @property
    def suspected(self) -> bool:
        """A leak is suspected when the whole CI lies above ``min_mb_per_min``."""
        return self.ci_low > self.min_mb_per_min

    @property
    def evidence(self) -> str:
        return (
            f"slope {self.slope_mb_per_min:+.2f} MB/min, {self.confidence:.0%} CI "
            f"[{self.ci_low:+.2f}, {self.ci_high:+.2f}] over {self.n} samples ({self.window})"
        )


def leak_estimate(
    times: pd.Series,
    memory_mb: pd.Series,
    *,
    confidence: float = 0.95,
    min_mb_per_min: float = 1.0,
    window: str = "",
    min_samples: int = 10,
    min_window_s: float = 0.0,
) -> LeakEstimate | None:
    """Theil–Sen slope of memory (MB/min) with its CI.

    None with fewer than ``min_samples`` samples or a window shorter than ``min_window_s``
    (a short window cannot tell a leak from warm-up: caches and pools fill at first).
    """
    from scipy.stats import theilslopes

    df = pd.DataFrame(
        {
            "t": pd.Series(times).reset_index(drop=True),
            "m": pd.Series(memory_mb, dtype="float64").reset_index(drop=True),
        }
    ).dropna()
    if len(df) < min_samples:
        return None
    x = (df["t"] - df["t"].iloc[0]).dt.total_seconds().to_numpy() / 60.0
    # time covered: first to last sample plus one sampling interval (n samples at 1 s = n s)
    covered_s = (np.ptp(x) + float(np.median(np.diff(x)))) * 60.0 if x.size > 1 else 0.0
    if np.ptp(x) <= 0 or covered_s < min_window_s:
        return None
    res = theilslopes(df["m"].to_numpy(), x, alpha=confidence)
    return LeakEstimate(
        slope_mb_per_min=float(res.slope),
        ci_low=float(res.low_slope),
        ci_high=float(res.high_slope),
        intercept_mb=float(res.intercept),
        n=len(df),
        window_start=df["t"].iloc[0],
        window_end=df["t"].iloc[-1],
        window=window,
        confidence=confidence,
        min_mb_per_min=min_mb_per_min,
    )


_TS_PREFIX = re.compile(
    r"^\s*\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
_OOM_KERNEL = re.compile(
    r"Out of memory: Killed process (?P<pid>\d+)(?: \((?P<comm>[^)]*)\))?", re.IGNORECASE
)
_OOM_INIT = re.compile(r"Process appears to have been OOM killed", re.IGNORECASE)
_RESTART = re.compile(r"reboot: Restarting system|machine restart", re.IGNORECASE)


def _line_time(line: str) -> pd.Timestamp | None:
    m = _TS_PREFIX.match(line)
    return _to_ts(m.group("ts").replace(",", ".")) if m else None


def _log_line(line: str) -> tuple[str, pd.Timestamp | None]:
    """(message, time) of a plain log line or a ``fly logs --json`` object line."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("message"), str):
            return obj["message"], _to_ts(obj.get("timestamp"))
    return line, _line_time(line)


def parse_oom_lines(text: str, *, source: str = "log") -> pd.DataFrame:
    """OOM and restart lines in any log text (Fly's ``fly logs``, the kernel, the lab's log).

    Recognised (fly.md §2, phoenixframework/flame#63): the kernel's ``Out of memory: Killed
    process <pid> (<comm>)`` and Fly init's ``Process appears to have been OOM killed!`` →
    ``oom_killed``; ``reboot: Restarting system`` / ``machine restart`` → ``restart``.
    Plain lines and ``fly logs --json`` lines (``message`` + ``timestamp``) are both read.
    Columns: ``time`` (a leading ISO timestamp or the JSON ``timestamp``, else NaT),
    ``type``, ``source``, ``detail``, ``line_no``, ``signal`` (``kernel``/``init`` for
    kills, ``reboot``/``runner`` for restarts).
    """
    rows = []
    for no, raw in enumerate(text.splitlines(), start=1):
        line, when = _log_line(raw)
        if m := _OOM_KERNEL.search(line):
            detail = {"pid": int(m.group("pid")), "process": m.group("comm"), "line": line.strip()}
            rows.append((when, "oom_killed", source, detail, no, "kernel"))
        elif _OOM_INIT.search(line):
            rows.append((when, "oom_killed", source, {"line": line.strip()}, no, "init"))
        elif m := _RESTART.search(line):
            signal = "reboot" if m.group(0).lower().startswith("reboot") else "runner"
            rows.append((when, "restart", source, {"line": line.strip()}, no, signal))
    df = pd.DataFrame(rows, columns=["time", "type", "source", "detail", "line_no", "signal"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df


def resource_events(
    events: pd.DataFrame | None = None,
    log_texts: Mapping[str, str] | None = None,
    *,
    origin: Any = None,
) -> pd.DataFrame:
    """One frame of OOM / restart / exit events from ``events.jsonl`` and log texts.

    Columns: ``time``, ``t_s``, ``type``, ``source`` (``events.jsonl`` or the log's name),
    ``detail``, ``signal``. Sorted by time (log lines without a time last).
    """
    parts = []
    if events is not None and len(events):
        ev = events[["time", "type", "detail"]].copy()
        ev["source"] = "events.jsonl"
        ev["signal"] = "event"
        parts.append(ev)
    for name, text in (log_texts or {}).items():
        found = parse_oom_lines(text, source=name)
        if len(found):
            parts.append(found.drop(columns="line_no"))
    cols = ["time", "t_s", "type", "source", "detail", "signal"]
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series([], dtype="datetime64[ns, UTC]" if c == "time" else "object")
                for c in cols
            }
        )
    out = pd.concat(parts, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True)
    org = _to_ts(origin)
    out["t_s"] = (out["time"] - org).dt.total_seconds() if org is not None else np.nan
    return out.sort_values("time", na_position="last", ignore_index=True)[cols]


def oom_count(events: pd.DataFrame) -> int:
    """Distinct OOM kills in a :func:`resource_events` frame.

    Each source counts on its own and the largest count wins, because the same kill shows
    up in several places (the lab's ``events.jsonl`` record, and in a Fly log both the
    kernel line and init's "appears to have been OOM killed" line). Within one log, the
    kill count is the larger of its kernel-line and init-line counts.
    """
    return _per_source_count(events, "oom_killed")


def _per_source_count(events: pd.DataFrame, kind: str) -> int:
    """Distinct events of one type: the same event shows up in several places (the lab's
    ``events.jsonl`` record; in a Fly log the guest kernel's line *and* init's or the
    runner's line), so each source counts on its own — ``events.jsonl`` by records, a log
    by the larger of its per-signal line counts — and the largest count wins."""
    sel = events[events["type"] == kind] if len(events) else events
    if len(sel) == 0:
        return 0
    counts = []
    for source, grp in sel.groupby("source"):
        if source == "events.jsonl":
            counts.append(len(grp))
        else:
            counts.append(int(grp["signal"].value_counts().max()))
    return max(counts)


@dataclass
class MemorySummary:
    """Memory figures of one run, on the k6 timeline (MB = MiB)."""

    samples: int
    idle_mb: float | None  # median before k6 started
    idle_max_mb: float | None
    load_mb: float | None  # median while k6 ran
    load_p95_mb: float | None
    peak_mb: float | None  # max over the whole run
    peak_at: pd.Timestamp | None
    peak_t_s: float | None
    limit_mb: float | None
    time_above: pd.DataFrame  # threshold_mb, label, seconds, pct_of_time, longest_span_s, first_at
    sustained_threshold_mb: float
    sustained_s: float
    longest_above_s: float  # longest span above sustained_threshold_mb
    leak: LeakEstimate | None
    leak_note: str  # the estimate's evidence, or why there is none
    events: pd.DataFrame
    oom_kills: int
    restarts: int
    timeline: pd.DataFrame  # time, t_s, memory_used_mb, memory_limit_mb, phase

    @property
    def sustained_above(self) -> bool:
        """The guide's "[warn] Alert if >800 MB sustained": a span ≥ ``sustained_s``."""
        return self.longest_above_s >= self.sustained_s


def _phase(t_s: pd.Series, end_s: float | None) -> pd.Series:
    phase = np.where(t_s < 0, "idle", "load")
    if end_s is not None:
        phase = np.where(t_s > end_s, "after", phase)
    return pd.Series(phase, index=t_s.index)


def memory_summary(
    samples: pd.DataFrame,
    manifest: Mapping[str, Any] | None = None,
    *,
    events: pd.DataFrame | None = None,
    thresholds_mb: Iterable[float] = GUIDE_MEMORY_THRESHOLDS_MB,
    sustained_threshold_mb: float = 800.0,
    sustained_s: float = 60.0,
    max_gap_s: float = 5.0,
    leak_stages: Sequence[str] = ("steady",),
    leak_min_mb_per_min: float = 1.0,
    leak_min_window_s: float = 60.0,
) -> MemorySummary:
    """Idle / under-load / peak memory, time above thresholds, sustained-800, leak, OOMs.

    *Idle* is the median of samples before k6 started, *load* the median while k6 ran
    (``k6_started_at``..``k6_ended_at``), *peak* the maximum over the whole run. Time above a
    threshold sums sample weights (:func:`_dt_weights`). The leak slope uses the samples of
    ``leak_stages`` before any restart/OOM in them — the whole k6 window when the manifest has
    no stages, none when it has stages but none of those (a load that keeps changing, as in
    the stress profile, moves memory without any leak).
    """
    start, end = k6_window(manifest)
    ev = events if events is not None else resource_events(origin=start)
    df = _timeline(samples, start) if len(samples) else samples.assign(t_s=pd.Series(dtype=float))
    mem = df["memory_used_mb"] if len(df) else pd.Series(dtype="float64")
    valid = df[mem.notna()] if len(df) else df
    end_s = (end - start).total_seconds() if (start is not None and end is not None) else None
    if start is not None and len(valid):
        phase = _phase(valid["t_s"], end_s)
        idle = valid.loc[phase == "idle", "memory_used_mb"]
        load = valid.loc[phase == "load", "memory_used_mb"]
    else:
        idle, load = pd.Series(dtype="float64"), valid.get("memory_used_mb", pd.Series(dtype=float))
    limit = df["memory_limit_mb"].dropna() if len(df) else pd.Series(dtype="float64")
    limit_mb = (
        float(limit.max())
        if len(limit)
        else (
            float((manifest or {}).get("vm", {}).get("memory_mb"))
            if (manifest or {}).get("vm", {}).get("memory_mb")
            else None
        )
    )
    levels = sorted({*map(float, thresholds_mb), float(sustained_threshold_mb)})
    rows = []
    total_s = float(_dt_weights(valid["time"], max_gap_s).sum()) if len(valid) else 0.0
    for lvl, label in [
        *[(x, f"> {x:g} MB") for x in levels],
        *([(limit_mb, f"> limit ({limit_mb:g} MB)")] if limit_mb else []),
    ]:
        sp = (
            spans_above(valid["time"], valid["memory_used_mb"], lvl, max_gap_s=max_gap_s)
            if len(valid)
            else spans_above(pd.Series(dtype="datetime64[ns, UTC]"), pd.Series(), lvl)
        )
        secs = float(sp["time_s"].sum()) if len(sp) else 0.0
        rows.append(
            {
                "threshold_mb": lvl,
                "label": label,
                "seconds": secs,
                "pct_of_time": 100.0 * secs / total_s if total_s else math.nan,
                "longest_span_s": float(sp["span_s"].max()) if len(sp) else 0.0,
                "first_at": sp["start"].min() if len(sp) else pd.NaT,
            }
        )
    time_above = pd.DataFrame(
        rows,
        columns=["threshold_mb", "label", "seconds", "pct_of_time", "longest_span_s", "first_at"],
    )
    longest = (
        float(
            time_above.loc[
                time_above["threshold_mb"] == float(sustained_threshold_mb), "longest_span_s"
            ].max()
        )
        if len(time_above)
        else 0.0
    )
    # leak window: the chosen stages, cut at the first OOM/restart inside it.
    leak = None
    leak_note = "no leak estimate: no memory samples or k6 start unknown"
    if len(valid) and start is not None:
        stages = stage_table(manifest)
        chosen = stages[stages["stage"].isin(list(leak_stages))]
        if len(stages) and not len(chosen):
            mask = np.zeros(len(valid), dtype=bool)  # e.g. stress: load keeps changing
            label = "the profile has no stage named " + " or ".join(leak_stages)
        elif len(chosen):
            mask = np.zeros(len(valid), dtype=bool)
            for st in chosen.itertuples():
                mask |= (valid["t_s"] >= st.start_s).to_numpy() & (
                    valid["t_s"] < st.end_s
                ).to_numpy()
            label = "stages " + ", ".join(chosen["stage"])
        else:
            mask = (_phase(valid["t_s"], end_s) == "load").to_numpy()
            label = "k6 window"
        win = valid[mask]
        if len(win) and len(ev):
            planned = ev["detail"].map(lambda d: isinstance(d, dict) and bool(d.get("planned")))
            cut = ev[
                ev["type"].isin(["oom_killed", "restart", "service_exit"])
                & ~planned
                & ev["time"].notna()
                & (ev["time"] > win["time"].min())
            ]["time"]
            if len(cut) and (win["time"] >= cut.min()).any():
                win = win[win["time"] < cut.min()]
                label += " (cut at the first OOM/restart)"
        leak = leak_estimate(
            win["time"],
            win["memory_used_mb"],
            window=label,
            min_mb_per_min=leak_min_mb_per_min,
            min_window_s=leak_min_window_s,
        )
        if leak is None:
            leak_note = (
                f"no leak estimate: {label}"
                if not mask.any()
                else f"no leak estimate: the {len(win)} samples in {label} cover under "
                f"{leak_min_window_s:g} s (or are fewer than 10)"
            )
    timeline = (
        df[["time", "t_s", "memory_used_mb", "memory_limit_mb"]].copy()
        if len(df)
        else pd.DataFrame(columns=["time", "t_s", "memory_used_mb", "memory_limit_mb"])
    )
    if len(timeline) and start is not None:
        timeline["phase"] = _phase(timeline["t_s"], end_s)
    peak_idx = valid["memory_used_mb"].idxmax() if len(valid) else None
    return MemorySummary(
        samples=int(len(valid)),
        idle_mb=float(idle.median()) if len(idle) else None,
        idle_max_mb=float(idle.max()) if len(idle) else None,
        load_mb=float(load.median()) if len(load) else None,
        load_p95_mb=percentile(load, 95) if len(load) else None,
        peak_mb=float(valid.loc[peak_idx, "memory_used_mb"]) if peak_idx is not None else None,
        peak_at=valid.loc[peak_idx, "time"] if peak_idx is not None else None,
        peak_t_s=float(valid.loc[peak_idx, "t_s"])
        if peak_idx is not None and start is not None
        else None,
        limit_mb=limit_mb,
        time_above=time_above,
        sustained_threshold_mb=float(sustained_threshold_mb),
        sustained_s=float(sustained_s),
        longest_above_s=longest if not math.isnan(longest) else 0.0,
        leak=leak,
        leak_note=leak.evidence if leak is not None else leak_note,
        events=ev,
        oom_kills=oom_count(ev),
        restarts=_per_source_count(ev, "restart"),
        timeline=timeline,
    )


@dataclass
class CpuSummary:
    """CPU figures of one run (percent of one vCPU, as samples.csv has them)."""

    samples: int
    load_samples: int  # samples while k6 ran (what avg/p95 use)
    avg_pct: float | None  # mean while k6 ran (all samples when the window is unknown)
    p95_pct: float | None
    max_pct: float | None
    full_pct: float  # what counts as "100 %"
    time_full_s: float
    longest_full_s: float
    throttled_s: float | None  # Σ weight × cpu_throttled_pct / 100; None when never known
    throttled_any_s: float | None  # time with any throttling
    threshold_pct: float  # the dedicated-CPU rule's level (70 %)
    sustained_s: float
    longest_above_s: float  # longest span at or above threshold_pct
    timeline: pd.DataFrame  # time, t_s, cpu_pct, cpu_throttled_pct

    @property
    def dedicated_cpu_advised(self) -> bool:
        """The guide's rule: CPU sustained above 70 % (or at 100 %) → dedicated (performance) CPU."""
        return self.longest_above_s >= self.sustained_s or self.longest_full_s >= self.sustained_s


def cpu_summary(
    samples: pd.DataFrame,
    manifest: Mapping[str, Any] | None = None,
    *,
    threshold_pct: float = 70.0,
    full_pct: float = 98.0,
    sustained_s: float = 60.0,
    max_gap_s: float = 5.0,
) -> CpuSummary:
    """Average / p95 CPU under load, time at 100 %, throttled time, the dedicated-CPU rule.

    CPU spans count samples *at or above* a level (one rule for 70 % and for "100 %" =
    ``full_pct``); memory spans are strictly above, as the guide's "> 800 MB".
    """
    start, end = k6_window(manifest)
    df = _timeline(samples, start) if len(samples) else samples.assign(t_s=pd.Series(dtype=float))
    valid = df[df["cpu_pct"].notna()] if len(df) else df
    if start is not None and len(valid):
        end_s = (end - start).total_seconds() if end is not None else None
        load = valid[_phase(valid["t_s"], end_s) == "load"]
        if len(load) == 0:
            load = valid
    else:
        load = valid
    w = _dt_weights(valid["time"], max_gap_s) if len(valid) else np.array([])
    cpu = valid["cpu_pct"].to_numpy(dtype="float64") if len(valid) else np.array([])
    full_spans = (
        spans_above(valid["time"], valid["cpu_pct"], full_pct - 1e-9, max_gap_s=max_gap_s)
        if len(valid)
        else pd.DataFrame(columns=["span_s", "time_s"])
    )
    above = (
        spans_above(valid["time"], valid["cpu_pct"], threshold_pct - 1e-9, max_gap_s=max_gap_s)
        if len(valid)
        else pd.DataFrame(columns=["span_s"])
    )
    thr = valid["cpu_throttled_pct"] if len(valid) else pd.Series(dtype="float64")
    known = thr.notna().to_numpy() if len(thr) else np.array([], dtype=bool)
    throttled_s = throttled_any = None
    if known.any():
        tv = thr.to_numpy(dtype="float64")
        throttled_s = float(np.nansum(w[known] * tv[known] / 100.0))
        throttled_any = float(w[known & (np.nan_to_num(tv) > 0)].sum())
    cols = [c for c in ("time", "t_s", "cpu_pct", "cpu_throttled_pct") if c in df]
    return CpuSummary(
        samples=int(len(valid)),
        load_samples=int(len(load)),
        avg_pct=float(load["cpu_pct"].mean()) if len(load) else None,
        p95_pct=percentile(load["cpu_pct"], 95) if len(load) else None,
        max_pct=float(cpu.max()) if cpu.size else None,
        full_pct=full_pct,
        time_full_s=float(w[cpu >= full_pct].sum()) if cpu.size else 0.0,
        longest_full_s=float(full_spans["span_s"].max()) if len(full_spans) else 0.0,
        throttled_s=throttled_s,
        throttled_any_s=throttled_any,
        threshold_pct=threshold_pct,
        sustained_s=sustained_s,
        longest_above_s=float(above["span_s"].max()) if len(above) else 0.0,
        timeline=df[cols].copy() if len(df) else pd.DataFrame(columns=cols),
    )


# --------------------------------------------------------------------------- service steps

_STEP = re.compile(
    r"Step\s+(?P<step>\d+)\s*:\s*(?P<what>.*?)\s*\(\s*(?P<ms>\d+(?:\.\d+)?)\s*ms\s*\)",
    re.IGNORECASE,
)
_REQ_ID = re.compile(
    r"\b(?:request_id|req_id|rid|request|req|lead_id|lead)\s*[=:]\s*[\"']?(?P<id>[\w.:-]+)",
    re.IGNORECASE,
)
_PAREN_LEAD = re.compile(r"\(lead\s+(?P<id>[\w.:-]+)\)", re.IGNORECASE)
# a bracketed id standing alone (not Fly's "app[<machine id>]", which names the VM)
_BRACKET_ID = re.compile(
    r"(?<![\w\]])\[(?:req(?:uest)?[ =:-]?)?(?P<id>[0-9a-f]{6,}|[\w-]{8,})\]", re.IGNORECASE
)


def parse_step_log(source: str | Path) -> pd.DataFrame:
    """The service's ``Step N: <what> (<ms> ms)`` lines (a path or the log text).

    Lines may carry a timestamp / level / logger prefix; the request they belong to is taken
    from a ``request_id=``/``req=``/``lead_id=``/``lead=`` field or a ``[<hex id>]`` tag when
    present (NA otherwise). Columns: ``time`` (NaT without a leading ISO timestamp),
    ``step`` (int), ``what``, ``ms``, ``request``, ``line_no``. Malformed lines are skipped.
    """
    if isinstance(source, Path) or (
        isinstance(source, str)
        and "\n" not in source
        and len(source) < 4096
        and Path(source).is_file()
    ):
        text = Path(source).read_text(encoding="utf-8", errors="replace")
    else:
        text = str(source)
    rows = []
    for no, raw in enumerate(text.splitlines(), start=1):
        if "tep" not in raw and "TEP" not in raw:  # cheap pre-filter for big logs
            continue
        line, when = _log_line(raw)
        m = _STEP.search(line)
        if not m:
            continue
        rest = line[: m.start()] + " " + line[m.end() :]
        rid = (
            _REQ_ID.search(rest)
            or _PAREN_LEAD.search(rest)
            or _REQ_ID.search(m.group("what"))
            or _BRACKET_ID.search(rest)
        )
        what = m.group("what").strip().rstrip(".:")
        rows.append(
            (
                when,
                int(m.group("step")),
                what,
                float(m.group("ms")),
                rid.group("id") if rid else None,
                no,
            )
        )
    df = pd.DataFrame(rows, columns=["time", "step", "what", "ms", "request", "line_no"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["step"] = df["step"].astype("int64")
    df["request"] = df["request"].astype("string")
    return df


@dataclass
class StepAttribution:
    """Which service step makes enrichment slow (the guide's "Slow Requests", automated)."""

    per_step: pd.DataFrame  # step, what, count, p50, p95, p99, mean, max, share_*_pct, advice
    dominant_step: int | None
    dominant_share_pct: float | None
    tail_threshold_ms: float | None  # p95 of the per-request total
    tail_requests: int
    requests: int
    method: str

    @property
    def advice(self) -> str:
        if self.dominant_step is None:
            return "no Step timings in service.log"
        return (
            f"Step {self.dominant_step} dominates the slowest requests "
            f"({self.dominant_share_pct:.0f} % of their excess time): "
            f"{STEP_ADVICE.get(self.dominant_step, 'see the service log')}"
        )


def step_attribution(steps: pd.DataFrame, *, tail_pct: float = 95.0) -> StepAttribution:
    """Per-step latency distributions and the step that makes the slowest requests slow.

    With request ids in the log, a request's total is the sum of its steps and the *tail* is
    the requests whose total is at or above the ``tail_pct`` percentile of totals. Per step:

    * ``share_tail_pct`` — its summed time in the tail over the tail's summed total (what the
      slow requests spend their time on);
    * ``excess_tail_pct`` — its share of the tail's *excess*: Σ over tail requests of
      (step time − that step's median over all requests), negatives counted as 0. This is
      what made them slow rather than what is always big, so the dominant step is the one
      with the largest excess (a step that is always 300 ms does not dominate a tail caused
      by a 20 ms step jumping to 300 ms).

    Without ids the tail cannot be formed; the excess is approximated per step by
    p95 − p50 (and ``share_tail_pct`` by the share of per-step p95s), said in ``method``.
    """
    cols = [
        "step",
        "what",
        "count",
        "p50",
        "p95",
        "p99",
        "mean",
        "max",
        "share_all_pct",
        "share_tail_pct",
        "excess_tail_pct",
        "advice",
    ]
    if len(steps) == 0:
        return StepAttribution(pd.DataFrame(columns=cols), None, None, None, 0, 0, "no data")
    rows = []
    for step, grp in steps.groupby("step", sort=True):
        stats = _stats(grp["ms"].to_numpy(), (50, 95, 99))
        rows.append(
            {
                "step": int(step),
                "what": grp["what"].mode().iloc[0],
                **stats,
                "advice": STEP_ADVICE.get(int(step), ""),
            }
        )
    per = pd.DataFrame(rows)
    with_id = steps[steps["request"].notna()]
    # ids that repeat a step many times name something else (a VM, a worker), not a request
    per_request = with_id.groupby(["request", "step"]).size().max() if len(with_id) else 0
    if len(with_id) >= 0.5 * len(steps) and per_request <= 3:
        wide = with_id.pivot_table(
            index="request", columns="step", values="ms", aggfunc="sum", fill_value=0.0
        )
        total = wide.sum(axis=1)
        thr = percentile(total, tail_pct)
        tail = wide[total >= thr]
        excess = (tail - wide.median()).sum().clip(lower=0.0)
        per["share_tail_pct"] = per["step"].map(100.0 * tail.sum() / tail.to_numpy().sum())
        per["share_all_pct"] = per["step"].map(100.0 * wide.sum() / wide.to_numpy().sum())
        per["excess_tail_pct"] = per["step"].map(
            100.0 * excess / excess.sum() if excess.sum() > 0 else excess * 0.0
        )
        method = (
            f"per request (ids in the log): each step's share of the excess over its "
            f"median in the {len(tail)} requests with total >= p{tail_pct:g} "
            f"({thr:.0f} ms)"
        )
        n_req, n_tail = len(wide), len(tail)
    else:
        thr = None
        spread = (per["p95"] - per["p50"]).clip(lower=0.0)
        per["share_tail_pct"] = 100.0 * per["p95"] / per["p95"].sum()
        weight = per["mean"] * per["count"]
        per["share_all_pct"] = 100.0 * weight / weight.sum()
        per["excess_tail_pct"] = 100.0 * spread / spread.sum() if spread.sum() > 0 else 0.0
        method = (
            "approximate (no request ids in the log): each step's p95 - p50 over the sum of them"
        )
        n_req, n_tail = int(per["count"].max()), 0
    for c in ("share_tail_pct", "share_all_pct", "excess_tail_pct"):
        per[c] = per[c].astype("float64")
    top = per.loc[per["excess_tail_pct"].idxmax()]
    return StepAttribution(
        per[cols], int(top["step"]), float(top["excess_tail_pct"]), thr, n_tail, n_req, method
    )


# --------------------------------------------------------------------------- one run


@dataclass
class RunAnalysis:
    """Everything :func:`analyze_run` computes for one run directory."""

    run: RunDir
    slos: SloFile
    requests: pd.DataFrame
    points: pd.DataFrame  # vus, vus_max, dropped_iterations
    k6_start: pd.Timestamp | None
    k6_end: pd.Timestamp | None
    stages: pd.DataFrame
    latency_over_time: pd.DataFrame
    latency_by_stage: pd.DataFrame
    throughput: pd.DataFrame
    summary: pd.DataFrame  # per endpoint: requests, failed, error %, req/s, percentiles
    errors: pd.DataFrame
    saturation: Saturation
    vus: pd.DataFrame
    samples: pd.DataFrame
    memory: MemorySummary
    cpu: CpuSummary
    steps: pd.DataFrame
    step_attribution: StepAttribution
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    completeness: Completeness | None = None  # interrupted / share of the profile that ran
    skipped_cells: int = 0  # samples.csv cells read as unknown (counted, in the warnings)

    def __repr__(self) -> str:  # the frames' reprs would flood a notebook
        return (
            f"RunAnalysis(run={self.run.name!r}, profile={self.profile!r}, "
            f"preset={self.run.preset!r}, requests={len(self.requests)}, "
            f"samples={len(self.samples)}, worst_verdict={self.worst_verdict!r})"
        )

    @property
    def profile(self) -> str | None:
        return self.run.profile

    @property
    def worst_verdict(self) -> str:
        return worst(list(self.verdicts["verdict"])) if len(self.verdicts) else "pass"

    def key_figures(self) -> pd.DataFrame:
        """The headline numbers as a tidy frame: ``figure``, ``value``, ``unit``."""
        rows: list[tuple[str, Any, str]] = []
        rep = representative(self.run.manifest)
        lat = "" if rep["latency"] else f" ({NOT_REPRESENTATIVE})"
        cpu = "" if rep["cpu"] else f" ({NOT_REPRESENTATIVE})"
        allrow = self.summary[self.summary["name"] == ALL]
        if len(allrow):
            r = allrow.iloc[0]
            rows += [
                ("requests", int(r["requests"]), ""),
                ("throughput" + lat, r["req_per_s"], "req/s"),
                ("error rate", r["error_rate_pct"], "%"),
                ("latency p50" + lat, r["p50"], "ms"),
                ("latency p95" + lat, r["p95"], "ms"),
                ("latency p99" + lat, r["p99"], "ms"),
            ]
        rows.append(("dropped iterations", self.saturation.dropped_iterations, ""))
        m, c = self.memory, self.cpu
        rows += [
            ("memory idle", m.idle_mb, "MB"),
            ("memory under load", m.load_mb, "MB"),
            ("memory peak", m.peak_mb, "MB"),
            ("memory limit", m.limit_mb, "MB"),
            (f"longest span > {m.sustained_threshold_mb:g} MB", m.longest_above_s, "s"),
            ("OOM kills", m.oom_kills, ""),
            ("restarts", m.restarts, ""),
        ]
        if m.leak is not None:
            rows.append(("memory slope", m.leak.slope_mb_per_min, "MB/min"))
        rows += [
            ("CPU average" + cpu, c.avg_pct, "%"),
            ("CPU p95" + cpu, c.p95_pct, "%"),
            ("time at 100 % CPU" + cpu, c.time_full_s, "s"),
            ("throttled time", c.throttled_s, "s"),
        ]
        sa = self.step_attribution
        if sa.dominant_step is not None:
            rows.append(("dominant step (tail)", f"Step {sa.dominant_step}", ""))
        return pd.DataFrame(rows, columns=["figure", "value", "unit"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (key figures, verdicts, saturation, leak, step attribution)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float | np.floating):
                return None if math.isnan(v) else float(v)
            if isinstance(v, np.integer):
                return int(v)
            if isinstance(v, pd.Timestamp):
                return v.isoformat()
            return v

        leak = self.memory.leak
        done = self.completeness.to_dict() if self.completeness else {}
        return {
            "run_dir": str(self.run.path),
            "profile": self.profile,
            "preset": self.run.preset,
            "interrupted": bool(done.get("interrupted", False)),
            "partial": bool(done.get("partial", False)),
            "profile_share": done.get("profile_share"),
            "completeness": done,
            "skipped_cells": self.skipped_cells,
            "worst_verdict": self.worst_verdict,
            "figures": [
                {k: clean(v) for k, v in r.items()} for r in self.key_figures().to_dict("records")
            ],
            "verdicts": [
                {k: clean(v) for k, v in r.items()}
                for r in self.verdicts.drop(columns=["target_value"], errors="ignore").to_dict(
                    "records"
                )
            ],
            "saturation": {
                "saturated": self.saturation.saturated,
                "dropped_iterations": self.saturation.dropped_iterations,
                "evidence": self.saturation.evidence,
            },
            "leak": None
            if leak is None
            else {
                "slope_mb_per_min": leak.slope_mb_per_min,
                "ci_low": leak.ci_low,
                "ci_high": leak.ci_high,
                "n": leak.n,
                "method": leak.method,
                "suspected": leak.suspected,
            },
            "step_attribution": {
                "dominant_step": self.step_attribution.dominant_step,
                "share_pct": clean(self.step_attribution.dominant_share_pct),
                "method": self.step_attribution.method,
                "advice": self.step_attribution.advice,
            },
            "warnings": list(self.warnings),
        }


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def analyze_run(
    run_dir: str | Path | RunDir,
    *,
    slos: SloFile | str | Path | None = None,
    bucket: str | None = None,
) -> RunAnalysis:
    """Analyse one run directory: every frame and summary above plus the SLO verdicts.

    Parts of the run that are missing (no k6 output after an early OOM, no samples.csv) give
    empty frames and ``no data`` verdicts with a warning, never an exception; a path that is
    not a run directory raises FileNotFoundError.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    slo_file = slos if isinstance(slos, SloFile) else load_slos(slos)
    st = slo_file.settings
    width = bucket or st.bucket
    warnings: list[str] = []
    requests, points = _empty_requests(), pd.DataFrame(columns=["time", "metric", "value"])
    if run.k6_outputs:
        from perflib import k6

        ing = k6.ingest(run.path)  # parses once into the Parquet cache the readers use
        try:
            warnings.extend(ing.warnings)  # skipped/truncated lines, never silent
        finally:
            ing.cleanup()
        requests = k6.read_requests(run.path)
        excluded = int(requests.attrs.get("excluded_values", 0))
        if excluded:  # as summarize: left out of every statistic, and said
            warnings.append(
                f"k6 output: {excluded} impossible timing value(s) (NaN, infinite, negative or "
                "above a week) read as unknown and left out of the latency figures"
            )
        points = k6.read_points(run.path, metrics=["vus", "vus_max", "dropped_iterations"])
    else:
        warnings.append("no k6 output in the run directory: latency and error figures missing")
    start, end = k6_window(run.manifest, requests)
    # the manifest with the k6 window filled in from the requests when the runner lacked it
    manifest = dict(run.manifest)
    if start is not None and not manifest.get("k6_started_at"):
        manifest["k6_started_at"] = start.isoformat()
        warnings.append("manifest has no k6_started_at: k6 window taken from the requests")
    if end is not None and not manifest.get("k6_ended_at"):
        manifest["k6_ended_at"] = end.isoformat()
    duration = (end - start).total_seconds() if start is not None and end is not None else None
    # A malformed samples.csv / events.jsonl raises RunDirError (file and line); isolated bad
    # cells and a cut-off last line are read around, and said here.
    samples = run.samples() if run.samples_path.exists() else None
    if samples is None:
        warnings.append("no samples.csv: memory and CPU figures missing")
        samples = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
        samples["time"] = pd.to_datetime(samples["time"], utc=True)
    raw_events = run.events()
    warnings.extend(samples.attrs.get("notes", []) + raw_events.attrs.get("notes", []))
    done = completeness(run, ran_s=duration if not run.manifest.get("k6_ended_at") else None)
    if done.caveat:
        warnings.insert(0, done.caveat)
    rep = representative(run.manifest)
    if rep["note"]:
        warnings.append(rep["note"])
    log_text = _read_text(run.service_log_path)
    events = resource_events(raw_events, {"service.log": log_text}, origin=start)
    memory = memory_summary(
        samples,
        manifest,
        events=events,
        thresholds_mb=st.memory_thresholds_mb,
        sustained_s=st.sustained_s,
        max_gap_s=st.max_gap_s,
        leak_stages=st.leak_stages,
        leak_min_mb_per_min=st.leak_min_mb_per_min,
        leak_min_window_s=st.leak_min_window_s,
    )
    cpu = cpu_summary(
        samples,
        manifest,
        full_pct=st.cpu_full_pct,
        sustained_s=st.sustained_s,
        max_gap_s=st.max_gap_s,
    )
    steps = parse_step_log(log_text)
    analysis = RunAnalysis(
        run=run,
        slos=slo_file,
        requests=requests,
        points=points,
        k6_start=start,
        k6_end=end,
        stages=stage_table(manifest),
        latency_over_time=latency_over_time(requests, bucket=width, origin=start),
        latency_by_stage=latency_by_stage(requests, manifest),
        throughput=throughput(requests, bucket=width, origin=start),
        summary=throughput_summary(requests, duration_s=duration),
        errors=error_breakdown(requests),
        saturation=saturation(points, origin=start),
        vus=vus_series(points, origin=start),
        samples=samples,
        memory=memory,
        cpu=cpu,
        steps=steps,
        step_attribution=step_attribution(steps),
        warnings=warnings,
        completeness=done,
        skipped_cells=int(samples.attrs.get("bad_cells", 0)),
    )
    analysis.verdicts = slo_verdicts(analysis, slo_file)
    return analysis


# --------------------------------------------------------------------------- SLO verdicts


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit in ("ms", "s", "MB", "req/s", "MB/min"):
        return f"{v:,.1f} {unit}" if abs(v) < 100 else f"{v:,.0f} {unit}"
    if unit == "%":
        return f"{v:.2f} %"
    return f"{v:g} {unit}".strip()


def _measure(a: RunAnalysis, slo: Slo, slos: SloFile) -> tuple[float | None, str]:
    """(measured value, evidence) of one SLO on one run."""
    kind = slo.kind
    if kind in ("latency", "error_rate", "throughput"):
        req = _select(a.requests, slo.endpoint)
        if slo.stages and len(req) and a.k6_start is not None:
            t = (req["time"] - a.k6_start).dt.total_seconds()
            req = req[assign_stage(t, a.stages).isin(slo.stages).to_numpy()]
        where = (f"endpoint ~ /{slo.endpoint}/" if slo.endpoint else "all requests") + (
            f", stages {', '.join(slo.stages)}" if slo.stages else ""
        )
        if len(req) == 0:
            return None, f"no requests ({where})"
        if kind == "error_rate":
            rate, f, n = error_rate(req)
            return rate, f"{f:,} of {n:,} requests failed ({where})"
        if kind == "throughput":
            dur = (
                (a.k6_end - a.k6_start).total_seconds()
                if a.k6_start is not None and a.k6_end is not None
                else None
            )
            if not dur:
                return None, "k6 window unknown"
            return len(req) / dur, f"{len(req):,} requests in {dur:.0f} s ({where})"
        stat = slo.stat or "p95"
        p = percentile_of(stat)
        vals = req["duration_ms"].to_numpy(dtype="float64")
        value = (
            percentile(vals, p)
            if p is not None
            else (float(np.nanmean(vals)) if stat == "avg" else float(np.nanmax(vals)))
        )
        ci = ""
        if p is not None:
            lo, hi = percentile_ci(vals, p)
            ci = f", 95 % CI [{_fmt(lo, 'ms')}, {_fmt(hi, 'ms')}]".replace("n/a", "unbounded")
        return value, f"{stat} = {_fmt(value, 'ms')}{ci} over {len(vals):,} requests ({where})"
    if kind == "step_latency":
        s = a.steps[a.steps["step"] == slo.step]
        if len(s) == 0:
            return None, f"no 'Step {slo.step}:' lines in service.log"
        stat = slo.stat or "p95"
        p = percentile_of(stat)
        vals = s["ms"].to_numpy()
        value = (
            percentile(vals, p)
            if p is not None
            else (float(vals.mean()) if stat == "avg" else float(vals.max()))
        )
        return value, (
            f"Step {slo.step} ({s['what'].mode().iloc[0]}) {stat} = "
            f"{_fmt(value, 'ms')} over {len(vals):,} timings"
        )
    m, c = a.memory, a.cpu
    if kind == "memory":
        value = {"idle": m.idle_mb, "load": m.load_mb, "peak": m.peak_mb}[slo.stat or "peak"]
        if value is None:
            return None, "no memory samples" + (" before k6 started" if slo.stat == "idle" else "")
        if slo.stat == "peak":
            at = f" at t={m.peak_t_s:.0f} s" if m.peak_t_s is not None else ""
            lim = f" (limit {m.limit_mb:g} MB)" if m.limit_mb else ""
            return value, f"max of {m.samples:,} samples{at}{lim}"
        if slo.stat == "idle":
            return value, f"median of the samples before k6 started (max {m.idle_max_mb:.0f} MB)"
        return value, f"median of the samples while k6 ran (p95 {m.load_p95_mb:.0f} MB)"
    if kind == "memory_sustained":
        if m.samples == 0:
            return None, "no memory samples"
        sp = spans_above(
            m.timeline["time"],
            m.timeline["memory_used_mb"],
            float(slo.threshold),
            max_gap_s=slos.settings.max_gap_s,
        )
        longest = float(sp["span_s"].max()) if len(sp) else 0.0
        total = float(sp["time_s"].sum()) if len(sp) else 0.0
        return longest, (
            f"longest span above {slo.threshold:g} MB: {longest:.0f} s "
            f"({total:.0f} s above in total, {len(sp)} spans)"
        )
    if kind == "oom":
        srcs = (
            sorted(set(m.events.loc[m.events["type"] == "oom_killed", "source"]))
            if len(m.events)
            else []
        )
        return float(m.oom_kills), (
            f"{m.oom_kills} OOM kill(s)"
            + (f" in {', '.join(srcs)}" if srcs else "")
            + f"; {m.restarts} restart(s)"
        )
    if kind == "cpu":
        value = c.avg_pct if slo.stat == "avg" else c.p95_pct
        if value is None:
            return None, "no CPU samples"
        return (
            value,
            f"{slo.stat} of {c.load_samples:,} samples while k6 ran (max {c.max_pct:.0f} %)",
        )
    if kind == "cpu_sustained":
        if c.samples == 0:
            return None, "no CPU samples"
        tl = c.timeline[c.timeline["cpu_pct"].notna()]
        sp = spans_above(
            tl["time"],
            tl["cpu_pct"],
            float(slo.threshold) - 1e-9,
            max_gap_s=slos.settings.max_gap_s,
        )
        longest = float(sp["span_s"].max()) if len(sp) else 0.0
        advice = (
            " → dedicated (performance) CPU advised" if longest >= slos.resolved_target(slo) else ""
        )
        return longest, f"longest span above {slo.threshold:g} % CPU: {longest:.0f} s{advice}"
    if kind == "saturation":
        if len(a.requests) == 0 and len(a.points) == 0:
            return None, "no k6 output"
        return float(a.saturation.dropped_iterations), a.saturation.evidence
    if kind == "leak":
        if m.leak is None:
            return None, m.leak_note
        return m.leak.ci_low, m.leak.evidence
    return None, f"unknown kind {kind}"  # pragma: no cover (validated by pydantic)


def slo_verdicts(analysis: RunAnalysis, slos: SloFile | None = None) -> pd.DataFrame:
    """Every applicable SLO of the file judged on one run.

    Columns: ``id``, ``title``, ``kind``, ``target`` (e.g. ``"< 50 ms"``), ``target_value``,
    ``measured``, ``unit``, ``verdict`` (pass / warn / alert / critical / no data),
    ``evidence``, ``source``. SLOs restricted by ``profiles`` to other profiles, and disabled
    ones, are left out.
    """
    slos = slos or analysis.slos
    rows = []
    for slo in slos.slo:
        if not slo.enabled:
            continue
        if slo.profiles is not None and analysis.profile not in slo.profiles:
            continue
        target = slos.resolved_target(slo)
        measured, evidence = _measure(analysis, slo, slos)
        levels = [f"{slo.op} {target:g} {slo.unit}".strip()]
        up = slo.op in ("<", "<=")
        if slo.alert is not None:
            levels.append(f"alert {'>' if up else '<'} {slo.alert:g}")
        if slo.critical is not None:
            levels.append(f"critical {'>' if up else '<'} {slo.critical:g}")
        rows.append(
            {
                "id": slo.id,
                "title": slo.title or slo.id,
                "kind": slo.kind,
                "target": ", ".join(levels),
                "target_value": target,
                "measured": math.nan if measured is None else float(measured),
                "unit": slo.unit,
                "verdict": judge(measured, slo, target),
                "evidence": evidence,
                "source": slo.source,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "id",
            "title",
            "kind",
            "target",
            "target_value",
            "measured",
            "unit",
            "verdict",
            "evidence",
            "source",
        ],
    )


# --------------------------------------------------------------------------- comparison


@dataclass
class Comparison:
    """Two runs (or groups of runs) side by side; ``b`` is judged against baseline ``a``."""

    latency: pd.DataFrame  # per endpoint: n, pXX a/b, delta, CI, ratio, Mann–Whitney p, verdict
    memory: pd.DataFrame  # per side: runs, peak (max, mean), idle, load medians
    errors: pd.DataFrame  # per side: requests, failed, error %; Fisher exact p
    percentile: float
    confidence: float
    factor: float
    unit: str  # "requests" or "runs": what was resampled
    labels: tuple[str, str]
    samples_a: dict[str, np.ndarray] = field(default_factory=dict)  # endpoint → durations (plots)
    samples_b: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[str]:
        return [f"{r.name}: {r.verdict}" for r in self.latency.itertuples()]

    @property
    def changed(self) -> bool:
        return bool(len(self.latency)) and bool(
            (self.latency["change"].isin(["slower", "faster"])).any()
        )

    @property
    def resource_lines(self) -> list[str]:
        """Memory peaks and error rates of both sides as sentences."""
        a, b = self.labels
        out = []
        if len(self.memory) == 2:
            ma, mb = self.memory.iloc[0], self.memory.iloc[1]
            if not (math.isnan(ma["peak_max_mb"]) or math.isnan(mb["peak_max_mb"])):
                out.append(
                    f"memory peak: {a} {ma['peak_max_mb']:.0f} MB, {b} {mb['peak_max_mb']:.0f} MB "
                    f"(Δ {mb['peak_max_mb'] - ma['peak_max_mb']:+.0f} MB); OOM kills "
                    f"{int(ma['oom_kills'])} vs {int(mb['oom_kills'])}"
                )
        if len(self.errors) == 2:
            ea, eb = self.errors.iloc[0], self.errors.iloc[1]
            p = f", Fisher p = {ea['fisher_p']:.2g}" if "fisher_p" in self.errors else ""
            out.append(
                f"error rate: {a} {ea['error_rate_pct']:.2f} % of {int(ea['requests']):,}, "
                f"{b} {eb['error_rate_pct']:.2f} % of {int(eb['requests']):,}{p}"
            )
        return out

    def __str__(self) -> str:
        return "\n".join([*self.verdicts, *self.resource_lines])


def _as_group(x: Any) -> list[Any]:
    if isinstance(x, str | Path | RunDir | RunAnalysis):
        return [x]
    return list(x)


def _load_side(side: Any) -> list[tuple[str, pd.DataFrame, MemorySummary | None]]:
    """[(run name, requests, memory summary)] for each run of a side."""
    out = []
    for item in _as_group(side):
        if isinstance(item, RunAnalysis):
            out.append((item.run.name, item.requests, item.memory))
            continue
        run = item if isinstance(item, RunDir) else RunDir.open(item)
        from perflib import k6

        req = k6.read_requests(run.path) if run.k6_outputs else _empty_requests()
        mem = None
        if run.samples_path.exists():
            events = resource_events(
                run.events(), {"service.log": _read_text(run.service_log_path)}
            )
            mem = memory_summary(run.samples(), run.manifest, events=events)
        out.append((run.name, req, mem))
    return out


def _bootstrap_diff(
    x: np.ndarray,
    y: np.ndarray,
    stat: Any,
    *,
    n_resamples: int,
    confidence: float,
    method: str,
    seed: int,
) -> tuple[float, float]:
    from scipy.stats import bootstrap

    if x.size < 2 or y.size < 2:
        return math.nan, math.nan

    def diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return stat(b, axis) - stat(a, axis)

    batch = max(1, int(2e7 // max(x.size + y.size, 1)))
    res = bootstrap(
        (x, y),
        diff,
        vectorized=True,
        paired=False,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        batch=batch,
        rng=np.random.default_rng(seed),
    )
    lo, hi = res.confidence_interval
    return float(lo), float(hi)


def compare_runs(
    a: Any,
    b: Any,
    *,
    percentile: float = 95.0,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    factor: float = 1.10,
    seed: int = 0,
    method: str | None = None,
    labels: tuple[str, str] = ("A", "B"),
    endpoints: Sequence[str] | None = None,
) -> Comparison:
    """Is B's latency different from A's? Bootstrap CI on Δp95 + Mann–Whitney U, per endpoint.

    ``a``/``b``: a run directory (path, RunDir or RunAnalysis) or a list of them (a group).
    With one run on either side the *requests* are resampled (percentile bootstrap of
    p95(B) − p95(A), ``scipy.stats.bootstrap``) and Mann–Whitney compares the request
    durations — both treat requests as independent, which they are not (autocorrelation makes
    the CI and p too narrow; anchors doc §3). With ≥ 2 runs on both sides the *run* is the
    unit: each run's p95 is one observation, Δ is the difference of their means (BCa
    bootstrap) and Mann–Whitney compares run-level p95s (asv ``_stats.is_different``).

    A change is reported only when the CI excludes 0 **and** |Δ| ≥ (factor − 1) × baseline
    p95 (asv ``--factor``, default 10 %); otherwise "unchanged". The Mann–Whitney p is shown
    as a second, distribution-wide opinion.
    """
    from scipy.stats import fisher_exact, mannwhitneyu

    side_a, side_b = _load_side(a), _load_side(b)
    by_runs = len(side_a) >= 2 and len(side_b) >= 2
    unit = "runs" if by_runs else "requests"
    boot_method = method or ("BCa" if by_runs else "percentile")
    q = percentile
    pc = _pcol(q)

    def stat_p(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.percentile(v, q, axis=axis, method="linear")

    def stat_mean(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(v, axis=axis)

    def names_of(side: list[tuple[str, pd.DataFrame, Any]]) -> set[str]:
        s: set[str] = set()
        for _, req, _ in side:
            if len(req):
                s |= set(req["name"].astype("string").dropna().unique())
        return s

    eps = sorted(names_of(side_a) & names_of(side_b)) if endpoints is None else list(endpoints)
    rows = []
    samples_a: dict[str, np.ndarray] = {}
    samples_b: dict[str, np.ndarray] = {}
    for ep in [*eps, ALL]:

        def durations(side: list[tuple[str, pd.DataFrame, Any]], ep: str = ep) -> list[np.ndarray]:
            out = []
            for _, req, _ in side:
                if len(req) == 0:
                    out.append(np.array([]))
                    continue
                sel = req if ep == ALL else req[req["name"].astype("string") == ep]
                out.append(sel["duration_ms"].to_numpy(dtype="float64"))
            return out

        da, db = durations(side_a), durations(side_b)
        xa = np.concatenate(da) if da else np.array([])
        xb = np.concatenate(db) if db else np.array([])
        samples_a[ep], samples_b[ep] = xa, xb
        if xa.size == 0 or xb.size == 0:
            continue
        if by_runs:
            ra = np.array([percentile_or_nan(v, q) for v in da])
            rb = np.array([percentile_or_nan(v, q) for v in db])
            ra, rb = ra[~np.isnan(ra)], rb[~np.isnan(rb)]
            if ra.size == 0 or rb.size == 0:
                continue
            pa, pb = float(ra.mean()), float(rb.mean())
            lo, hi = _bootstrap_diff(
                ra,
                rb,
                stat_mean,
                n_resamples=n_resamples,
                confidence=confidence,
                method=boot_method,
                seed=seed,
            )
            mw = mannwhitneyu(rb, ra, alternative="two-sided") if ra.size and rb.size else None
        else:
            pa, pb = float(stat_p(xa)), float(stat_p(xb))
            lo, hi = _bootstrap_diff(
                xa,
                xb,
                stat_p,
                n_resamples=n_resamples,
                confidence=confidence,
                method=boot_method,
                seed=seed,
            )
            mw = mannwhitneyu(xb, xa, alternative="two-sided")
        delta = pb - pa
        p_mw = float(mw.pvalue) if mw is not None else math.nan
        significant = not math.isnan(lo) and (lo > 0 or hi < 0)
        practical = abs(delta) >= (factor - 1.0) * abs(pa)
        change = (
            ("slower" if delta > 0 else "faster") if (significant and practical) else "unchanged"
        )
        ci = f"{confidence:.0%} CI [{lo:+,.0f}, {hi:+,.0f}] ms" if not math.isnan(lo) else "no CI"
        note = ""
        if change == "unchanged" and significant:
            note = f", within the {factor - 1:.0%} practical threshold"
        verdict = f"{pc} {change} (Δ {delta:+,.0f} ms, {ci}, p = {p_mw:.2g}{note})"
        rows.append(
            {
                "name": ep,
                "n_a": int(xa.size),
                "n_b": int(xb.size),
                "runs_a": len(da),
                "runs_b": len(db),
                f"{pc}_a": pa,
                f"{pc}_b": pb,
                "delta_ms": delta,
                "ci_low": lo,
                "ci_high": hi,
                "ratio": pb / pa if pa else math.nan,
                "mannwhitney_p": p_mw,
                "significant": significant,
                "change": change,
                "verdict": verdict,
            }
        )
    lat_cols = [
        "name",
        "n_a",
        "n_b",
        "runs_a",
        "runs_b",
        f"{pc}_a",
        f"{pc}_b",
        "delta_ms",
        "ci_low",
        "ci_high",
        "ratio",
        "mannwhitney_p",
        "significant",
        "change",
        "verdict",
    ]
    latency = pd.DataFrame(rows, columns=lat_cols)

    mem_rows, err_rows, counts = [], [], []
    for label, side in zip(labels, (side_a, side_b), strict=True):
        peaks = [m.peak_mb for _, _, m in side if m is not None and m.peak_mb is not None]
        mem_rows.append(
            {
                "side": label,
                "runs": len(side),
                "peak_max_mb": max(peaks) if peaks else math.nan,
                "peak_mean_mb": float(np.mean(peaks)) if peaks else math.nan,
                "idle_median_mb": _median([m.idle_mb for _, _, m in side if m]),
                "load_median_mb": _median([m.load_mb for _, _, m in side if m]),
                "oom_kills": sum(m.oom_kills for _, _, m in side if m),
            }
        )
        n = sum(len(r) for _, r, _ in side)
        f = sum(int(_failed(r).sum()) for _, r, _ in side if len(r))
        counts.append((f, n - f))
        err_rows.append(
            {
                "side": label,
                "requests": n,
                "failed": f,
                "error_rate_pct": 100.0 * f / n if n else math.nan,
            }
        )
    errors = pd.DataFrame(err_rows)
    if all(sum(c) > 0 for c in counts):
        errors["fisher_p"] = float(fisher_exact([list(counts[0]), list(counts[1])]).pvalue)
    memory = pd.DataFrame(mem_rows)
    memory["delta_peak_mb"] = memory["peak_max_mb"] - memory["peak_max_mb"].iloc[0]
    return Comparison(
        latency=latency,
        memory=memory,
        errors=errors,
        percentile=q,
        confidence=confidence,
        factor=factor,
        unit=unit,
        labels=labels,
        samples_a=samples_a,
        samples_b=samples_b,
    )


def percentile_or_nan(values: np.ndarray, p: float) -> float:
    return percentile(values, p) if len(values) else math.nan


def _median(values: list[float | None]) -> float:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else math.nan


# --------------------------------------------------------------------------- CLI


def _verdict_style(v: str) -> str:
    return {
        "pass": "green",
        "warn": "yellow",
        "alert": "bold yellow",
        "critical": "bold red",
        "no data": "dim",
    }.get(v, "")


NOT_REPRESENTATIVE = "not representative"


def representative(manifest: dict[str, Any]) -> dict[str, Any]:
    """Which of a run's figures stand for the VM's: a guest under TCG (software CPU) gives
    memory figures that do, CPU and latency figures that do not (manifest ``vm.representative``,
    written by :mod:`perflib.guest.isolation`); every other run's figures do."""
    rep = (manifest.get("vm") or {}).get("representative") or {}
    return {
        "memory": rep.get("memory", True),
        "cpu": rep.get("cpu", True),
        "latency": rep.get("latency", True),
        "note": rep.get("note"),
    }


def cli_analyze(args: argparse.Namespace) -> int:
    """``perflib analyze RUN_DIR [--slo FILE] [--json]``.

    Exit codes: 0 no verdict at or above the ``--fail-on`` level (default critical),
    1 at least one such verdict, 2 bad input (not a run directory, invalid SLO file,
    unreadable k6 output).
    """
    from rich.console import Console
    from rich.table import Table

    err = Console(stderr=True, soft_wrap=True)
    try:
        slos = load_slos(getattr(args, "slo", None))
        analysis = analyze_run(args.run_dir, slos=slos)
    except PerflibError:
        raise  # SloError, RunDirError, K6InputError: the CLI prints one line, exit 2
    except FileNotFoundError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        err.print(f"[bold red]error:[/] {args.run_dir}: cannot analyse run: {exc}", highlight=False)
        return 2
    fail_on = getattr(args, "fail_on", None) or "critical"
    failing = [v for v in analysis.verdicts["verdict"] if SEVERITY.get(v, 0) >= SEVERITY[fail_on]]
    code = 1 if failing else 0
    if getattr(args, "json", False):
        print(json.dumps(analysis.to_dict(), indent=2, default=str))
        return code
    out = Console() if Console().is_terminal else Console(width=160)
    head = f"[bold]{analysis.run.name}[/]  profile={analysis.profile}  preset={analysis.run.preset}"
    done = analysis.completeness
    if done is not None and done.partial:
        share = "unknown" if done.share is None else f"{done.share:.0%}"
        head += f"  [bold red]PARTIAL RUN[/] (interrupted={done.interrupted}, profile ran: {share})"
    out.print(head)
    for w in analysis.warnings:
        out.print(f"[yellow]warning:[/] {w}")
    figs = Table(title="Key figures", show_lines=False)
    figs.add_column("figure")
    figs.add_column("value", justify="right")
    for r in analysis.key_figures().itertuples():
        v = r.value
        txt = (
            "n/a"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (f"{v:,.1f}" if isinstance(v, float) else str(v))
        )
        figs.add_row(r.figure, f"{txt} {r.unit}".strip())
    out.print(figs)
    table = Table(title=f"SLO verdicts ({analysis.slos.path})")
    for col in ("SLO", "target", "measured", "verdict", "evidence"):
        table.add_column(col, overflow="fold")
    for r in analysis.verdicts.itertuples():
        table.add_row(
            r.title,
            r.target,
            _fmt(r.measured, r.unit),
            f"[{_verdict_style(r.verdict)}]{r.verdict}[/]",
            r.evidence,
        )
    out.print(table)
    if analysis.step_attribution.dominant_step is not None:
        out.print(analysis.step_attribution.advice)
    if analysis.saturation.saturated:
        out.print(f"[bold yellow]saturated run:[/] {analysis.saturation.evidence}")
    out.print(
        f"worst verdict: [{_verdict_style(analysis.worst_verdict)}]"
        f"{analysis.worst_verdict}[/] (exit {code})"
    )
    return code


if __name__ == "__main__":  # pragma: no cover
    from perflib.cli import main

    sys.exit(main(["analyze", *sys.argv[1:]]))
