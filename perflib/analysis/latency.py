"""Latency, throughput, errors and saturation from the k6 request frames.

A percentile is always computed from the raw samples it describes (per bucket, stage,
endpoint) with :func:`perflib.stats.percentile` (k6's definition); percentiles are never
averaged (Prometheus docs, "Histograms and summaries") and every one carries its ``count``.
Time is UTC; ``t_s`` columns are seconds since k6 started (``manifest["k6_started_at"]``), the
axis every chart shares. k6 stamps a request at its *end*, so buckets and stages hold the
requests that *ended* in them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perflib.rundir import utc_timestamp
from perflib.stats import (
    percentile,
    percentile_ci,
)

#: Label of the rows that pool every endpoint.
ALL = "(all)"


#: Stage labels of requests ending before the first / after the last stage.
BEFORE, AFTER = "(before)", "(after)"


DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)


# --------------------------------------------------------------------------- small helpers


def _pcol(p: float) -> str:
    """Column name of a percentile: 95 → ``p95``, 99.9 → ``p99.9``."""
    return f"p{p:g}"


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
    start = utc_timestamp(manifest.get("k6_started_at"))
    end = utc_timestamp(manifest.get("k6_ended_at"))
    if requests is not None and len(requests):
        if start is None:
            col = "start_time" if "start_time" in requests else "time"
            start = requests[col].min()
        if end is None:
            end = requests["time"].max()
    return start, end


def _origin(requests: pd.DataFrame, origin: Any) -> pd.Timestamp | None:
    ts = utc_timestamp(origin)
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
    """The manifest's load-profile stages, named by the load they apply.

    ``stage`` is the label every table and chart shows (``ramp 0→5 VUs``, ``hold 20 VUs``,
    ``hold 5 it/s``: :func:`perflib.profiles.manifest_stage_loads`, the one place stage loads
    are derived); ``stage_name`` the script's own name (``steady``), which SLO files may
    select by; ``start_load``/``target`` the load at either end; ``flat`` whether the load
    is constant over the stage (only those windows can show a memory leak)."""
    from perflib.profiles import manifest_stage_loads, unique_labels

    loads = manifest_stage_loads(manifest)
    rows = [
        {
            "stage_index": i,
            "stage": label,
            "stage_name": ld.name,
            "start_s": ld.start_s,
            "end_s": ld.end_s,
            "start_load": ld.start,
            "target": ld.target,
            "unit": ld.unit,
            "flat": ld.flat,
        }
        for i, (ld, label) in enumerate(zip(loads, unique_labels(loads), strict=True))
    ]
    cols = ["stage_index", "stage", "stage_name", "start_s", "end_s", "start_load", "target",
            "unit", "flat"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


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
    miss exactly the slowest moments (coordinated omission: Tene, "How NOT to Measure Latency").
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
    org = utc_timestamp(origin)
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
    org = utc_timestamp(origin) or (s["time"].min() if len(s) else None)
    s["t_s"] = (s["time"] - org).dt.total_seconds() if org is not None else np.nan
    return s[["time", "t_s", "vus"]]
