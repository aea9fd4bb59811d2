"""Is run B's latency different from run A's? Bootstrap CI + Mann-Whitney, per endpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perflib import ingest as k6
from perflib import stats as pstats
from perflib.analysis.latency import (
    ALL,
    _empty_requests,
    _failed,
    _pcol,
)
from perflib.analysis.resources import (
    MemorySummary,
    memory_summary,
    resource_events,
)
from perflib.analysis.run import (
    RunAnalysis,
    _read_text,
)
from perflib.rundir import RunDir
from perflib.stats import (
    bootstrap_diff_ci,
    fisher_exact_p,
    mann_whitney_p,
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

        req = k6.read_requests(run.path) if run.k6_outputs else _empty_requests()
        mem = None
        if run.samples_path.exists():
            events = resource_events(
                run.events(), {"service.log": _read_text(run.service_log_path)}
            )
            mem = memory_summary(run.samples(), run.manifest, events=events)
        out.append((run.name, req, mem))
    return out


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
    the CI and p too narrow; docs/analysis.md). With ≥ 2 runs on both sides the *run* is the
    unit: each run's p95 is one observation, Δ is the difference of their means (BCa
    bootstrap) and Mann–Whitney compares run-level p95s (asv ``_stats.is_different``).

    A change is reported only when the CI excludes 0 **and** |Δ| ≥ (factor − 1) × baseline
    p95 (asv ``--factor``, default 10 %); otherwise "unchanged". The Mann–Whitney p is shown
    as a second, distribution-wide opinion.
    """
    side_a, side_b = _load_side(a), _load_side(b)
    by_runs = len(side_a) >= 2 and len(side_b) >= 2
    boot = {
        "n_resamples": n_resamples,
        "confidence": confidence,
        "method": method or ("BCa" if by_runs else "percentile"),
        "seed": seed,
    }
    pc = _pcol(percentile)
    eps = sorted(_names_of(side_a) & _names_of(side_b)) if endpoints is None else list(endpoints)
    rows = []
    samples_a: dict[str, np.ndarray] = {}
    samples_b: dict[str, np.ndarray] = {}
    for ep in [*eps, ALL]:
        da, db = _durations(side_a, ep), _durations(side_b, ep)
        xa = np.concatenate(da) if da else np.array([])
        xb = np.concatenate(db) if db else np.array([])
        samples_a[ep], samples_b[ep] = xa, xb
        if xa.size == 0 or xb.size == 0:
            continue
        est = _delta(da, db, percentile, by_runs, boot)
        if est is None:
            continue
        pa, pb, lo, hi, p_mw = est
        rows.append(
            _latency_row(
                ep, da, db, pa, pb, lo, hi, p_mw, pc=pc, confidence=confidence, factor=factor
            )
        )
    lat_cols = ["name", "n_a", "n_b", "runs_a", "runs_b", f"{pc}_a", f"{pc}_b", "delta_ms",
                "ci_low", "ci_high", "ratio", "mannwhitney_p", "significant", "change", "verdict"]  # fmt: skip
    memory, errors = _side_tables(labels, side_a, side_b)
    return Comparison(
        latency=pd.DataFrame(rows, columns=lat_cols),
        memory=memory,
        errors=errors,
        percentile=percentile,
        confidence=confidence,
        factor=factor,
        unit="runs" if by_runs else "requests",
        labels=labels,
        samples_a=samples_a,
        samples_b=samples_b,
    )


Side = list[tuple[str, pd.DataFrame, Any]]


def _names_of(side: Side) -> set[str]:
    s: set[str] = set()
    for _, req, _ in side:
        if len(req):
            s |= set(req["name"].astype("string").dropna().unique())
    return s


def _durations(side: Side, ep: str) -> list[np.ndarray]:
    """Each run's request durations (ms) for endpoint ``ep`` (:data:`ALL`: every request)."""
    out = []
    for _, req, _ in side:
        if len(req) == 0:
            out.append(np.array([]))
            continue
        sel = req if ep == ALL else req[req["name"].astype("string") == ep]
        out.append(sel["duration_ms"].to_numpy(dtype="float64"))
    return out


def _delta(
    da: list[np.ndarray], db: list[np.ndarray], q: float, by_runs: bool, boot: dict[str, Any]
) -> tuple[float, float, float, float, float] | None:
    """``(stat A, stat B, CI low, CI high, Mann–Whitney p)`` of B − A: per request (one run a
    side) or per run (each run's percentile one observation, means compared); None when a
    side has no run with data."""

    def stat_p(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return pstats.percentile(v, q, axis=axis)

    def stat_mean(v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(v, axis=axis)

    if by_runs:
        ra = np.array([pstats.percentile(v, q) for v in da])
        rb = np.array([pstats.percentile(v, q) for v in db])
        ra, rb = ra[~np.isnan(ra)], rb[~np.isnan(rb)]
        if ra.size == 0 or rb.size == 0:
            return None
        lo, hi = bootstrap_diff_ci(ra, rb, stat_mean, **boot)
        return float(ra.mean()), float(rb.mean()), lo, hi, mann_whitney_p(rb, ra)
    xa, xb = np.concatenate(da), np.concatenate(db)
    lo, hi = bootstrap_diff_ci(xa, xb, stat_p, **boot)
    return float(stat_p(xa)), float(stat_p(xb)), lo, hi, mann_whitney_p(xb, xa)


def _latency_row(
    ep: str,
    da: list[np.ndarray],
    db: list[np.ndarray],
    pa: float,
    pb: float,
    lo: float,
    hi: float,
    p_mw: float,
    *,
    pc: str,
    confidence: float,
    factor: float,
) -> dict[str, Any]:
    """One endpoint's row: the change is "slower"/"faster" only when the CI excludes 0 and
    |Δ| reaches the practical threshold (asv ``--factor``); the verdict says why."""
    delta = pb - pa
    significant = not math.isnan(lo) and (lo > 0 or hi < 0)
    practical = abs(delta) >= (factor - 1.0) * abs(pa)
    change = ("slower" if delta > 0 else "faster") if (significant and practical) else "unchanged"
    ci = f"{confidence:.0%} CI [{lo:+,.0f}, {hi:+,.0f}] ms" if not math.isnan(lo) else "no CI"
    note = ""
    if change == "unchanged" and significant:
        note = f", within the {factor - 1:.0%} practical threshold"
    return {
        "name": ep,
        "n_a": int(sum(v.size for v in da)),
        "n_b": int(sum(v.size for v in db)),
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
        "verdict": f"{pc} {change} (Δ {delta:+,.0f} ms, {ci}, p = {p_mw:.2g}{note})",
    }


def _side_tables(
    labels: tuple[str, str], side_a: Side, side_b: Side
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Memory (peaks, idle, load, OOM kills) and errors (with Fisher's exact test) per side."""
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
        errors["fisher_p"] = fisher_exact_p([list(counts[0]), list(counts[1])])
    memory = pd.DataFrame(mem_rows)
    memory["delta_peak_mb"] = memory["peak_max_mb"] - memory["peak_max_mb"].iloc[0]
    return memory, errors


def _median(values: list[float | None]) -> float:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else math.nan
