"""Is run B's latency different from run A's? Bootstrap CI judged by equivalence testing
(TOST against a margin from the SLO file) + Mann-Whitney as a second opinion, per endpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from perflib import ingest as k6
from perflib import stats as pstats
from perflib.analysis.cpu import Throttling, throttling_analysis
from perflib.analysis.latency import (
    ALL,
    _empty_requests,
    _failed,
    _pcol,
    k6_window,
)
from perflib.analysis.resources import (
    MemorySummary,
    cpu_summary,
    memory_summary,
    resource_events,
)
from perflib.analysis.run import (
    RunAnalysis,
    _read_text,
)
from perflib.analysis.slo import default_slos
from perflib.rundir import RunDir
from perflib.stats import (
    bootstrap_diff_ci,
    equivalence,
    fisher_exact_p,
    mann_whitney_p,
)

# --------------------------------------------------------------------------- comparison


@dataclass
class Comparison:
    """Two runs (or groups of runs) side by side; ``b`` is judged against baseline ``a``."""

    #: per endpoint: n, pXX a/b, delta, the (1 − 2α) CI, ratio, Mann–Whitney p, ``change``
    #: (unchanged / slower / faster / inconclusive, by TOST), ``margin_ms``, ``ci_level``,
    #: ``more_to_decide`` and ``equivalence`` (:meth:`perflib.stats.Equivalence.to_dict`)
    latency: pd.DataFrame
    memory: pd.DataFrame  # per side: runs, peak (max, mean), idle, load medians
    errors: pd.DataFrame  # per side: requests, failed, error %; Fisher exact p
    percentile: float
    confidence: float  # the CI level shown: 1 − 2α of the equivalence test
    factor: float  # 1 + the equivalence margin (1.10 = ±10 % of the baseline's percentile)
    unit: str  # "requests" or "runs": what was resampled
    labels: tuple[str, str]
    samples_a: dict[str, np.ndarray] = field(default_factory=dict)  # endpoint → durations (plots)
    samples_b: dict[str, np.ndarray] = field(default_factory=dict)
    #: per run: side, run, preset, throttled, throttled_s, first_throttled_t_s,
    #: mean_load_pct, baseline_pct (from each run's :class:`~perflib.analysis.cpu.Throttling`)
    throttling: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: one side throttled (≥ throttled_min_s) and the other not
    throttling_differs: bool = False
    throttling_note: str = ""  # the sentence saying so, with what it confounds
    confounded: list[str] = field(default_factory=list)  # figures the difference confounds
    #: the latency table over the window before the first throttling (both sides), when the
    #: throttling differed and that window holds requests on both sides; else None
    unthrottled: pd.DataFrame | None = None
    unthrottled_window_s: float | None = None  # that window: [0, this) s since k6 start

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

    @property
    def throttling_lines(self) -> list[str]:
        """The throttling note and, when computed, the unthrottled window's verdicts."""
        if not self.throttling_note:
            return []
        out = [self.throttling_note]
        if self.unthrottled is not None and self.unthrottled_window_s is not None:
            out += [
                f"unthrottled window (first {self.unthrottled_window_s:.0f} s) {r.name}: "
                f"{r.verdict}"
                for r in self.unthrottled.itertuples()
            ]
        return out

    def __str__(self) -> str:
        return "\n".join([*self.verdicts, *self.resource_lines, *self.throttling_lines])


def _as_group(x: Any) -> list[Any]:
    if isinstance(x, str | Path | RunDir | RunAnalysis):
        return [x]
    return list(x)


class _Run(NamedTuple):
    """One run of a side: what the comparison reads of it."""

    name: str
    requests: pd.DataFrame
    memory: MemorySummary | None
    throttling: Throttling | None
    k6_start: pd.Timestamp | None


def _load_side(side: Any) -> list[_Run]:
    """Each run of a side: its analysis' figures, or (a run directory) the same computed
    from its files — requests, memory, throttling, k6 start."""
    out = []
    for item in _as_group(side):
        if isinstance(item, RunAnalysis):
            out.append(
                _Run(item.run.name, item.requests, item.memory, item.throttling, item.k6_start)
            )
            continue
        run = item if isinstance(item, RunDir) else RunDir.open(item)
        req = k6.read_requests(run.path) if run.k6_outputs else _empty_requests()
        start, _ = k6_window(run.manifest, req)
        mem = thr = None
        if run.samples_path.exists():
            events = resource_events(
                run.events(), {"service.log": _read_text(run.service_log_path)}, origin=start
            )
            samples = run.samples()
            mem = memory_summary(samples, run.manifest, events=events)
            thr = throttling_analysis(cpu_summary(samples, run.manifest), run.manifest, events)
        out.append(_Run(run.name, req, mem, thr, start))
    return out


def compare_runs(
    a: Any,
    b: Any,
    *,
    percentile: float = 95.0,
    n_resamples: int = 2000,
    confidence: float | None = None,
    factor: float | None = None,
    seed: int = 0,
    method: str | None = None,
    labels: tuple[str, str] = ("A", "B"),
    endpoints: Sequence[str] | None = None,
) -> Comparison:
    """Is B's latency different from A's? Equivalence test on Δp95, per endpoint.

    ``a``/``b``: a run directory (path, RunDir or RunAnalysis) or a list of them (a group).
    With one run on either side the *requests* are resampled (percentile bootstrap of
    p95(B) − p95(A), ``scipy.stats.bootstrap``) and Mann–Whitney compares the request
    durations — both treat requests as independent, which they are not (autocorrelation makes
    the CI and p too narrow; docs/analysis.md). With ≥ 2 runs on both sides the *run* is the
    unit: each run's p95 is one observation, Δ is the difference of their means (BCa
    bootstrap) and Mann–Whitney compares run-level p95s (asv ``_stats.is_different``).

    The verdict is two one-sided tests (:func:`perflib.stats.equivalence`, Schuirmann 1987)
    with the margin ±(factor − 1) × A's p95: "unchanged" when the (1 − 2α) CI lies inside
    the margin, "slower"/"faster" when it lies wholly beyond it, else "inconclusive" with how
    many more requests (runs) per side would decide. ``factor`` defaults to 1 +
    ``equivalence_margin_pct`` / 100 and ``confidence`` to 1 − 2 × ``equivalence_alpha`` of
    the SLO file (a different ``confidence`` sets α = (1 − confidence) / 2). The
    Mann–Whitney p is kept as a second, distribution-wide opinion (a column, not the verdict).

    When one side was CPU-throttled (its :class:`~perflib.analysis.cpu.Throttling`) and the
    other not, ``throttling_note`` says so and what it confounds, and ``unthrottled`` repeats
    the latency table over the requests that started before the earliest throttling onset.
    """
    st = default_slos().settings
    if factor is None:
        factor = 1.0 + st.equivalence_margin_pct / 100.0
    if confidence is None:
        confidence = 1.0 - 2.0 * st.equivalence_alpha
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
    judge = {"q": percentile, "by_runs": by_runs, "boot": boot, "pc": pc,
             "confidence": confidence, "factor": factor}  # fmt: skip
    latency, samples_a, samples_b = _latency_table(side_a, side_b, eps, **judge)
    thr = _throttling(labels, side_a, side_b)
    if thr["differs"] and thr["cut_s"]:
        cut_a = [_before(r, thr["cut_s"]) for r in side_a]
        cut_b = [_before(r, thr["cut_s"]) for r in side_b]
        unthrottled, _, _ = _latency_table(cut_a, cut_b, eps, **judge)
        if len(unthrottled):
            thr["unthrottled"] = unthrottled
    memory, errors = _side_tables(labels, side_a, side_b)
    return Comparison(
        latency=latency,
        memory=memory,
        errors=errors,
        percentile=percentile,
        confidence=confidence,
        factor=factor,
        unit="runs" if by_runs else "requests",
        labels=labels,
        samples_a=samples_a,
        samples_b=samples_b,
        throttling=thr["table"],
        throttling_differs=thr["differs"],
        throttling_note=thr["note"],
        confounded=thr["confounded"],
        unthrottled=thr.get("unthrottled"),
        unthrottled_window_s=thr["cut_s"] if thr.get("unthrottled") is not None else None,
    )


Side = list[_Run]

#: What a difference in CPU throttling between the sides confounds (and what it does not).
CONFOUNDED_BY_THROTTLING = [
    "latency (p95 per endpoint, per stage)",
    "step timings (service.log)",
    "CPU figures",
]


def _latency_table(
    side_a: Side, side_b: Side, eps: list[str], *, q: float, by_runs: bool,
    boot: dict[str, Any], pc: str, confidence: float, factor: float,
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """The per-endpoint (and ``(all)``) latency rows with their equivalence verdicts, and the
    durations each side contributed (for the plots)."""
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
        est = _delta(da, db, q, by_runs, boot)
        if est is None:
            continue
        pa, pb, lo, hi, p_mw = est
        rows.append(
            _latency_row(
                ep,
                da,
                db,
                pa,
                pb,
                lo,
                hi,
                p_mw,
                pc=pc,
                confidence=confidence,
                factor=factor,
                unit="runs" if by_runs else "requests",
            )  # fmt: skip
        )
    lat_cols = ["name", "n_a", "n_b", "runs_a", "runs_b", f"{pc}_a", f"{pc}_b", "delta_ms",
                "ci_low", "ci_high", "ci_level", "margin_ms", "ratio", "mannwhitney_p",
                "significant", "change", "more_to_decide", "verdict", "equivalence"]  # fmt: skip
    return pd.DataFrame(rows, columns=lat_cols), samples_a, samples_b


def _before(run: _Run, cut_s: float) -> _Run:
    """The run with only the requests that *started* before ``cut_s`` s after k6 start."""
    req = run.requests
    if run.k6_start is None or not len(req):
        return run._replace(requests=req.iloc[0:0])
    began = req["start_time"] if "start_time" in req else req["time"]
    keep = ((began - run.k6_start).dt.total_seconds() < cut_s).to_numpy()
    return run._replace(requests=req[keep])


def _throttling(labels: tuple[str, str], side_a: Side, side_b: Side) -> dict[str, Any]:
    """Per-run throttling table; whether it differs between the sides (some run of one side
    throttled, none of the other), which figures that confounds, and the window before the
    earliest throttling onset (where both sides ran unthrottled)."""
    rows = []
    for label, side in zip(labels, (side_a, side_b), strict=True):
        for r in side:
            t = r.throttling
            rows.append(
                {
                    "side": label,
                    "run": r.name,
                    "preset": t.preset if t else None,
                    "throttled": bool(t.throttled) if t else None,
                    "throttled_s": t.throttled_s if t else None,
                    "first_throttled_t_s": (
                        t.first_throttled_t_s
                        if t and t.first_throttled_t_s is not None
                        else (t.exhausted_at_t_s if t else None)
                    ),
                    "mean_load_pct": t.mean_load_pct if t else None,
                    "baseline_pct": t.baseline_pct if t else None,
                }
            )
    table = pd.DataFrame(rows)
    out: dict[str, Any] = {"table": table, "differs": False, "note": "", "confounded": [],
                           "cut_s": None}  # fmt: skip
    if not len(table) or table["throttled"].isna().any():
        return out
    by_side = table.groupby("side", sort=False)["throttled"].any()
    if by_side.nunique() < 2:
        return out
    hit = table[table["throttled"]]
    onsets = pd.to_numeric(hit["first_throttled_t_s"], errors="coerce").dropna()
    cut = float(onsets.min()) if len(onsets) else None
    who = ", ".join(
        f"{r.side} ({r.run}) for {r.throttled_s or 0:.0f} s"
        + (f" from t = {r.first_throttled_t_s:.0f} s" if pd.notna(r.first_throttled_t_s) else "")
        for r in hit.itertuples()
    )
    clean = ", ".join(by_side[~by_side].index)
    note = (
        f"CPU throttling differed: {who} was throttled (shared-CPU burst balance exhausted), "
        f"{clean} was not — it confounds the {'; '.join(CONFOUNDED_BY_THROTTLING)}; memory "
        "peaks and OOM kills are not affected"
    )
    if cut:
        note += f"; compared again over the unthrottled window [0, {cut:.0f}) s"
    out.update(differs=True, note=note, confounded=list(CONFOUNDED_BY_THROTTLING), cut_s=cut)
    return out


def _names_of(side: Side) -> set[str]:
    s: set[str] = set()
    for r in side:
        req = r.requests
        if len(req):
            s |= set(req["name"].astype("string").dropna().unique())
    return s


def _durations(side: Side, ep: str) -> list[np.ndarray]:
    """Each run's request durations (ms) for endpoint ``ep`` (:data:`ALL`: every request)."""
    out = []
    for r in side:
        req = r.requests
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
    unit: str,
) -> dict[str, Any]:
    """One endpoint's row: the change is the equivalence test's verdict
    (:func:`perflib.stats.equivalence`) and the verdict sentence prints the figures it
    follows from — the CI, its level and the margin."""
    delta = pb - pa
    margin = (factor - 1.0) * abs(pa)
    n_side = min(sum(v.size for v in da), sum(v.size for v in db))
    if unit == "runs":
        n_side = min(len(da), len(db))
    eq = equivalence(delta, lo, hi, margin, alpha=(1.0 - confidence) / 2.0, n=n_side)
    significant = not math.isnan(lo) and (lo > 0 or hi < 0)
    ci = f"{confidence:.0%} CI [{lo:+,.0f}, {hi:+,.0f}] ms" if not math.isnan(lo) else "no CI"
    edge = f"margin ±{margin:,.0f} ms = {factor - 1:.0%} of A's {pc}"
    if eq.verdict == "unchanged":
        why = f"CI inside the {edge}"
    elif eq.verdict in ("slower", "faster"):
        why = f"CI wholly beyond the {edge}"
    else:
        why = f"CI crosses the {edge}"
        if eq.more_to_decide is not None:
            why += f"; ~{eq.more_to_decide:,} more {unit} per side would decide (CI ∝ 1/√n)"
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
        "ci_level": confidence,
        "margin_ms": margin,
        "ratio": pb / pa if pa else math.nan,
        "mannwhitney_p": p_mw,
        "significant": significant,
        "change": eq.verdict,
        "more_to_decide": eq.more_to_decide,
        "verdict": f"{pc} {eq.verdict} (Δ {delta:+,.0f} ms, {ci}; {why})",
        "equivalence": eq.to_dict(),
    }


def _side_tables(
    labels: tuple[str, str], side_a: Side, side_b: Side
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Memory (peaks, idle, load, OOM kills) and errors (with Fisher's exact test) per side."""
    mem_rows, err_rows, counts = [], [], []
    for label, side in zip(labels, (side_a, side_b), strict=True):
        mems = [r.memory for r in side]
        peaks = [m.peak_mb for m in mems if m is not None and m.peak_mb is not None]
        mem_rows.append(
            {
                "side": label,
                "runs": len(side),
                "peak_max_mb": max(peaks) if peaks else math.nan,
                "peak_mean_mb": float(np.mean(peaks)) if peaks else math.nan,
                "idle_median_mb": _median([m.idle_mb for m in mems if m]),
                "load_median_mb": _median([m.load_mb for m in mems if m]),
                "oom_kills": sum(m.oom_kills for m in mems if m),
            }
        )
        n = sum(len(r.requests) for r in side)
        f = sum(int(_failed(r.requests).sum()) for r in side if len(r.requests))
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
