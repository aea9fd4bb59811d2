"""Right-sizing: the performance guide's sizing rules, a VPA-style second opinion, DB pool
size, capacity from a stress run, and the 512 MB vs 1 GB preset comparison.

Every rule is the guide's (``/work/shared/reference/performance-guide.md``), applied exactly
and cited in the recommendation's ``reasons``:

* Optimization Checklist: required memory = measured peak × 1.3 ("Add 30% buffer").
* Scaling Options, Option 1: 512 MB is safe only if the load-test peak is < 400 MB.
* VM Sizing Strategy, "When to scale up": OOM kills (we rule out that size and every smaller
  one), memory consistently > 800 MB, p95 latency > 3 s; Option 3: CPU consistently > 70 %
  → dedicated (performance) CPU; Option 2: high availability = ≥ 2 instances, 2× the cost.
* Database Connection Pool Tuning: < 10 req/min → 5, 10–50 → 10, > 50 → 20 connections,
  ~5–10 MB each.

The second opinion follows the Kubernetes VPA recommender (kubernetes/autoscaler
``vertical-pod-autoscaler``: p90 of per-interval memory peaks in 5 %-wide histogram buckets,
+15 % margin, OOM bump max(+100 MiB, ×1.2), confidence = min(lifespan days, samples/1440));
krr (max × 1.15) and AWS Compute Optimizer (p99.5 of 5-minute maxima + 20 %) are shown too.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perflib.errors import PerflibError, RunDirError
from perflib.pricing import (  # re-exported: the sizing contract names them here
    SECONDS_PER_MONTH,
    Preset,
    PricingError,
    all_presets,
    cost_breakdown,
    cost_per_million_requests,
    load_prices,
    machine_price,
    monthly_cost,
    monthly_egress_gb,
    parse_preset,
    resolve_price_set,
)
from perflib.rundir import Completeness, RunDir, completeness, read_events, read_samples

# ----------------------------------------------------------------- the guide's numbers
BUFFER = 1.3  #: Optimization Checklist: "Add 30% buffer for safety margin"
SAFE_512_PEAK_MB = 400.0  #: Option 1: "Safe if: Peak memory <400 MB during load tests"
SMALL_PRESET_MB = 512  #: the size that rule governs (and anything smaller)
SUSTAINED_MEMORY_MB = 800.0  #: "When to scale up: Memory consistently >800 MB"
P95_SCALE_UP_MS = 3000.0  #: "When to scale up: p95 latency >3s"
CPU_SUSTAINED_PCT = 70.0  #: Option 3: "CPU consistently >70%"
HA_INSTANCES = 2  #: Option 2: "fly scale count 2" — "Costs: 2x the resources"
SUSTAINED_S = 60.0  #: "consistently": longest span above a threshold (same as data/slo.toml)
MAX_GAP_S = 5.0  #: a gap between samples longer than this breaks a span
POOL_MB_PER_CONNECTION = (5.0, 10.0)  #: "Each connection uses ~5-10 MB"
DEFAULT_CURRENT = "shared-cpu-1x:1024mb"  #: the guide's "Current Configuration"
GUIDE_VM_MB = 1024  #: the VM the guide's thresholds were written for
SERVICE_POOL_DEFAULT = 10  #: service/settings.py db_pool_size
#: Service steps that wait on an upstream (service.pipeline: 1 C2S fetch, 2 Diretrix, 3 Work
#: API, 6 C2S send); a bigger VM does not make them faster.
UPSTREAM_STEPS = (1, 2, 3, 6)
#: "CPU far below 70 %" (perflib's choice, not the guide's): p95 of cpu_pct per vCPU under
#: half the guide's Option 3 threshold.
CPU_HEADROOM_PCT = CPU_SUSTAINED_PCT / 2
GUIDE_OPTION_1_MB = 512  #: Scaling Options, Option 1: "Reduce to 512 MB"
GUIDE_PRODUCTION_H = 24.0  #: Option 1: "No OOM kills after 24h of production traffic"

G = "Guide"  # citation prefix

# ----------------------------------------------------------------- VPA / krr / AWS numbers
VPA_MARGIN = 0.15  #: --recommendation-margin-fraction
VPA_TARGET_PERCENTILE = 0.9
VPA_LOWER_PERCENTILE = 0.5
VPA_UPPER_PERCENTILE = 0.95
VPA_OOM_MIN_BUMP_MB = 100.0  #: --oom-min-bump-up-bytes = 100 MiB
VPA_OOM_BUMP_RATIO = 1.2  #: --oom-bump-up-ratio
VPA_FIRST_BUCKET_BYTES = 1e7  #: NewExponentialHistogramOptions(1e12, 1e7, 1.05, ε)
VPA_BUCKET_RATIO = 1.05
KRR_BUFFER = 0.15  #: memory_buffer_percentage
KRR_OOM_BUFFER = 0.25  #: oom_memory_buffer_percentage
AWS_PERCENTILE = 99.5  #: P99_5 threshold (default)
AWS_HEADROOM = 0.20  #: memory headroom (default)
AWS_INTERVAL_S = 300.0  #: "maximum utilization point within each five-minute interval"
MIB = 1024 * 1024


class SizingError(PerflibError, ValueError):
    """Bad input to the recommender (missing/empty samples, unknown preset...)."""


# ----------------------------------------------------------------- evidence from runs


@dataclass
class RunEvidence:
    """What one run (or one samples file) tells the recommender."""

    label: str
    samples: pd.DataFrame
    events: pd.DataFrame
    preset: Preset | None = None
    profile: str | None = None
    time_scale: float = 1.0
    p95_ms: float | None = None
    requests: float | None = None
    req_rate: float | None = None  # requests per second over the k6 window
    error_rate: float | None = None  # fraction 0..1
    data_received_bytes: float | None = None
    duration_s: float | None = None
    run: RunDir | None = None
    exit_status: str | None = None
    completeness: Completeness | None = None  # partial runs are flagged wherever they are used
    notes: list[str] = field(default_factory=list)  # bad cells read as unknown, cut-off lines

    @property
    def partial(self) -> bool:
        return bool(self.completeness and self.completeness.partial)

    # ---- memory / cpu statistics
    @property
    def memory(self) -> pd.Series:
        return self.samples["memory_used_mb"].dropna()

    @property
    def peak_mb(self) -> float:
        m = self.memory
        return float(m.max()) if len(m) else math.nan

    @property
    def p95_memory_mb(self) -> float:
        m = self.memory
        return float(np.percentile(m, 95, method="linear")) if len(m) else math.nan

    @property
    def memory_limit_mb(self) -> float | None:
        if self.preset is not None:
            return float(self.preset.memory_mb)
        lim = self.samples["memory_limit_mb"].dropna()
        return float(lim.iloc[-1]) if len(lim) else None

    @property
    def oom_events(self) -> pd.DataFrame:
        ev = self.events
        if ev.empty:
            return ev
        return ev[ev["type"].astype(str) == "oom_killed"]

    @property
    def oom_count(self) -> int:
        return len(self.oom_events)

    @property
    def restarts(self) -> int:
        ev = self.events
        return 0 if ev.empty else int((ev["type"].astype(str) == "restart").sum())

    @property
    def sustain_window_s(self) -> float:
        """The guide's "consistently" = 60 s above a threshold, scaled with the run's
        time scale (a run shortened 10× has 6-s "minutes"), never under 3 sample intervals."""
        return max(SUSTAINED_S * self.time_scale, 3 * self.sample_interval_s)

    @property
    def sample_interval_s(self) -> float:
        t = self.samples["time"]
        if len(t) < 2:
            return 1.0
        return float(t.diff().dt.total_seconds().median())

    def longest_above(self, column: str, threshold: float, per_cpu: bool = False) -> float:
        values = self.samples[column]
        if per_cpu and self.preset is not None:
            values = values / self.preset.cpus
        return longest_span_above(self.samples["time"], values, threshold)

    @property
    def history_s(self) -> float:
        t = self.samples["time"]
        if len(t) < 2:
            return 0.0
        return float((t.iloc[-1] - t.iloc[0]).total_seconds()) + self.sample_interval_s


def longest_span_above(
    times: pd.Series, values: pd.Series, threshold: float, max_gap_s: float = MAX_GAP_S
) -> float:
    """Longest time (s) the series stays strictly above ``threshold``: consecutive samples
    above it, a gap over ``max_gap_s`` or a sample at/below it ends the span. A span of n
    samples lasts from its first to its last sample plus one sample interval (the last
    sample stands for the interval after it), so a single sample counts one interval."""
    if len(values) == 0:
        return 0.0
    t = pd.to_datetime(times, utc=True).reset_index(drop=True)
    v = pd.to_numeric(values, errors="coerce").reset_index(drop=True)
    secs = (t - t.iloc[0]).dt.total_seconds().to_numpy()
    interval = float(np.median(np.diff(secs))) if len(secs) > 1 else 1.0
    above = (v > threshold).to_numpy()
    best = 0.0
    start: int | None = None
    last = 0
    for i, is_above in enumerate(above):
        if is_above and start is not None and secs[i] - secs[last] > max_gap_s:
            best = max(best, secs[last] - secs[start] + interval)
            start = i
        elif is_above and start is None:
            start = i
        elif not is_above and start is not None:
            best = max(best, secs[last] - secs[start] + interval)
            start = None
        if is_above:
            last = i
    if start is not None:
        best = max(best, secs[last] - secs[start] + interval)
    return float(best)


def _stats_from_summary(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{metric: stats}`` from a ``--summary-export`` or ``handleSummary`` JSON (or already
    normalised); the ingest helper's ``read_summary_export`` is preferred when present."""
    metrics = summary.get("metrics", summary) if isinstance(summary, Mapping) else None
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(metrics, Mapping):
        return out
    for name, stats in metrics.items():
        if isinstance(stats, Mapping):
            out[name] = dict(stats.get("values", stats))
    return out


def _k6_stats(run: RunDir) -> dict[str, dict[str, Any]]:
    if run.summary_path.exists():
        try:
            from perflib.k6 import read_summary_export  # ingest helper's normaliser

            return read_summary_export(run.summary_path)
        except (ImportError, AttributeError):
            pass
        except Exception:  # noqa: BLE001 - fall back to our minimal reader below
            pass
        try:
            return _stats_from_summary(json.loads(run.summary_path.read_text("utf-8")))
        except (OSError, json.JSONDecodeError):
            return {}
    if run.k6_outputs:
        try:
            from perflib.k6 import summarize

            return dict(summarize(run.path).get("metrics", {}))
        except Exception:  # noqa: BLE001 - no k6 statistics is not fatal for sizing
            return {}
    return {}


def _num(stats: Mapping[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = stats.get(k)
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
    return None


def _parse_time(text: Any) -> pd.Timestamp | None:
    """An ISO timestamp from the manifest as UTC (naive = UTC), None when absent/garbled."""
    if not text:
        return None
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_samples(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    if df.empty or df["memory_used_mb"].dropna().empty:
        raise SizingError(f"{origin}: no memory samples (empty samples.csv)")
    return df


def evidence_from_run(path: str | Path | RunDir) -> RunEvidence:
    """Load a run directory: samples, events, preset, profile and k6 figures."""
    run = path if isinstance(path, RunDir) else _open_run(path)
    if not run.samples_path.exists():
        raise SizingError(f"{run.path}: missing samples.csv (nothing to size from)")
    try:
        samples = _check_samples(run.samples(), str(run.samples_path))
    except (ValueError, pd.errors.EmptyDataError) as exc:
        if isinstance(exc, SizingError | RunDirError):
            raise
        raise SizingError(f"{run.samples_path}: {exc}") from exc
    events = run.events()
    preset = None
    if run.preset:
        try:
            preset = parse_preset(run.preset)
        except PricingError as exc:
            raise SizingError(f"{run.path}/manifest.json vm.preset: {exc}") from exc
    stats = _k6_stats(run)
    dur = stats.get("http_req_duration", {})
    reqs = stats.get("http_reqs", {})
    failed = stats.get("http_req_failed", {})
    data = stats.get("data_received", {})
    m = run.manifest
    start, end = _parse_time(m.get("k6_started_at")), _parse_time(m.get("k6_ended_at"))
    duration = (end - start).total_seconds() if start and end and end > start else None
    requests = _num(reqs, "count")
    rate = _num(reqs, "rate")
    if rate is None and requests is not None and duration:
        rate = requests / duration
    if duration is None and requests and rate:
        duration = requests / rate
    return RunEvidence(
        label=run.name,
        samples=samples,
        events=events,
        preset=preset,
        profile=run.profile,
        time_scale=float(m.get("time_scale") or 1.0),
        p95_ms=_num(dur, "p(95)"),
        requests=requests,
        req_rate=rate,
        error_rate=_num(failed, "rate", "value"),
        data_received_bytes=_num(data, "count"),
        duration_s=duration,
        run=run,
        exit_status=(m.get("exit") or {}).get("status"),
        completeness=completeness(run),
        notes=list(samples.attrs.get("notes", [])) + list(events.attrs.get("notes", [])),
    )


def _open_run(path: str | Path) -> RunDir:
    p = Path(path)
    if not p.exists():
        raise SizingError(f"{p}: no such run directory")
    try:
        return RunDir.open(p)
    except FileNotFoundError as exc:
        raise SizingError(str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise SizingError(f"{p}/manifest.json: not valid JSON ({exc})") from exc


def evidence_from_samples(
    samples: str | Path | pd.DataFrame,
    events: str | Path | pd.DataFrame | None = None,
    *,
    preset: str | Preset | None = None,
    label: str | None = None,
    p95_ms: float | None = None,
    req_rate: float | None = None,
    profile: str | None = None,
    time_scale: float = 1.0,
) -> RunEvidence:
    """Evidence from a samples.csv (+ events.jsonl), e.g. exported from Fly's Prometheus."""
    if isinstance(samples, pd.DataFrame):
        df = samples.copy()
        origin = label or "samples"
        if "time" in df:
            df["time"] = pd.to_datetime(df["time"], utc=True)
    else:
        sp = Path(samples)
        origin = str(sp)
        if not sp.exists():
            raise SizingError(f"{sp}: samples file not found")
        if sp.stat().st_size == 0:
            raise SizingError(f"{sp}: empty samples file (no header, no rows)")
        try:
            df = read_samples(sp)
        except pd.errors.EmptyDataError as exc:
            raise SizingError(f"{sp}: empty samples file") from exc
        except RunDirError:
            raise
        except ValueError as exc:
            raise SizingError(str(exc)) from exc
    _check_samples(df, origin)
    if events is None:
        ev = pd.DataFrame(columns=["time", "type", "detail"])
    elif isinstance(events, pd.DataFrame):
        ev = events
    else:
        ep = Path(events)
        if not ep.exists():
            raise SizingError(f"{ep}: events file not found")
        ev = read_events(ep)
    p = None
    if preset is not None:
        try:
            p = parse_preset(preset)
        except PricingError as exc:
            raise SizingError(str(exc)) from exc
    notes = list(df.attrs.get("notes", [])) + list(ev.attrs.get("notes", []))
    return RunEvidence(
        label=label or origin,
        samples=df.sort_values("time").reset_index(drop=True),
        events=ev,
        notes=notes,
        preset=p,
        profile=profile,
        time_scale=time_scale,
        p95_ms=p95_ms,
        req_rate=req_rate,
    )


def _as_evidence(items: Iterable[Any]) -> list[RunEvidence]:
    out = []
    for it in items:
        out.append(it if isinstance(it, RunEvidence) else evidence_from_run(it))
    if not out:
        raise SizingError("no runs given: pass run directories or a samples file")
    return out


# ----------------------------------------------------------------- pool size


@dataclass(frozen=True)
class PoolAdvice:
    """Guide, Database Connection Pool Tuning."""

    connections: int
    req_per_min: float
    memory_mb_low: float
    memory_mb_high: float
    reason: str
    basis: str = ""


def pool_size(req_per_min: float) -> int:
    """< 10 req/min → 5, 10–50 → 10, > 50 → 20 connections (the guide's table; 10 and 50
    themselves fall in the middle band)."""
    if req_per_min < 0 or math.isnan(req_per_min):
        raise SizingError(f"request rate must be >= 0, got {req_per_min}")
    if req_per_min < 10:
        return 5
    if req_per_min <= 50:
        return 10
    return 20


def pool_advice(
    req_per_min: float, current: int = SERVICE_POOL_DEFAULT, *, basis: str = ""
) -> PoolAdvice:
    """The guide's pool for ``req_per_min``; ``basis`` says which requests were counted."""
    n = pool_size(req_per_min)
    lo, hi = (n * POOL_MB_PER_CONNECTION[0], n * POOL_MB_PER_CONNECTION[1])
    delta = n - current
    band = "< 10" if n == 5 else ("10–50" if n == 10 else "> 50")
    change = (
        f"; vs the service's {current}: {delta:+d} connections ≈ "
        f"{delta * POOL_MB_PER_CONNECTION[0]:+.0f} to {delta * POOL_MB_PER_CONNECTION[1]:+.0f} MB"
        if delta
        else f"; the service already uses {current}"
    )
    reason = (
        f"{G}, Database Connection Pool Tuning: {req_per_min:.1f} req/min"
        f"{f' ({basis})' if basis else ''} is {band} req/min "
        f"→ pool of {n} connections, ~{lo:.0f}–{hi:.0f} MB at 5–10 MB each{change}"
    )
    return PoolAdvice(n, req_per_min, lo, hi, reason, basis)


def enrichment_rate(ev: RunEvidence) -> float | None:
    """Enrichment requests per second over the k6 window, from the run's k6 NDJSON: the
    traffic that takes a DB connection (``/health`` does not touch the pool). None when the
    run has no k6 NDJSON (then only k6's all-requests rate is known)."""
    rd = ev.run
    if rd is None or not rd.k6_outputs:
        return None
    try:
        req = _requests(rd)
    except Exception:  # noqa: BLE001 - unreadable k6 output: fall back to the summary rate
        return None
    if "name" not in req or req.empty:
        return None
    n = int(req["name"].astype("string").fillna("").str.contains(ENRICHMENT_ENDPOINT).sum())
    dur = ev.duration_s
    if not dur:
        t = pd.to_datetime(req["time"], utc=True)
        dur = (t.max() - t.min()).total_seconds()
    return n / dur if dur and dur > 0 else None


def _pool_from_runs(runs: Sequence[RunEvidence], current: int) -> PoolAdvice | None:
    """The guide's pool rule on the highest enrichment rate of the sizing runs (k6 NDJSON).
    Only when no run has per-request k6 output does it fall back to k6's all-requests rate
    (which counts /health too), and the reason says so; the two are never mixed."""
    enr = [(rate, r.label) for r in runs if (rate := enrichment_rate(r)) is not None]
    if enr:
        rate, label = max(enr)
        basis = (
            f"{label}: /api/v1/leads/process requests only, the traffic that uses the pool; "
            "/health excluded"
        )
        return pool_advice(rate * 60, current, basis=basis)
    alls = [(r.req_rate, r.label) for r in runs if r.req_rate]
    if not alls:
        return None
    rate, label = max(alls)
    basis = (
        f"{label}: all k6 requests incl. /health — no per-request k6 output to count the "
        "enrichment requests alone"
    )
    return pool_advice(rate * 60, current, basis=basis)


# ----------------------------------------------------------------- VPA second opinion


def vpa_bucket_end_mb(value_mb: float) -> float:
    """End of the VPA memory-histogram bucket holding ``value_mb`` (10 MB first bucket, each
    5 % wider; ``util/histogram.go Percentile()`` returns the bucket end)."""
    x = value_mb * MIB
    f, r = VPA_FIRST_BUCKET_BYTES, VPA_BUCKET_RATIO
    b = math.floor(math.log(x * (r - 1) / f + 1, r)) if x > 0 else 0
    return f * (r ** (b + 1) - 1) / (r - 1) / MIB


def vpa_percentile_mb(
    values_mb: Sequence[float], p: float, weights: Sequence[float] | None = None
) -> float:
    """VPA's histogram percentile: walk buckets until the cumulative weight ≥ p·total and
    return that bucket's end."""
    if not len(values_mb):
        return math.nan
    w = np.ones(len(values_mb)) if weights is None else np.asarray(weights, dtype=float)
    ends = np.array([vpa_bucket_end_mb(v) for v in values_mb])
    order = np.argsort(ends, kind="stable")
    cum = np.cumsum(w[order])
    idx = int(np.searchsorted(cum, p * cum[-1] - 1e-12))
    return float(ends[order][min(idx, len(ends) - 1)])


def vpa_target_mb(p90_peak_mb: float) -> float:
    """VPA target for a p90 peak: bucket end × (1 + 15 % margin) (anchor table: 300 → 362.6)."""
    return vpa_bucket_end_mb(p90_peak_mb) * (1 + VPA_MARGIN)


def vpa_confidence(history_s: float, samples: int) -> float:
    """``confidence = min(lifespan_days, samples / 1440)`` (VPA estimator.go)."""
    return min(history_s / 86400.0, samples / 1440.0)


def interval_peaks(ev: RunEvidence, interval_s: float) -> pd.Series:
    """Maximum memory per interval (VPA keeps one peak per aggregation interval)."""
    s = ev.samples.set_index("time")["memory_used_mb"].dropna()
    if s.empty:
        return s
    return (
        s.resample(pd.Timedelta(max(1, round(interval_s * 1000)), unit="ms"), origin="start")
        .max()
        .dropna()
    )


@dataclass
class SecondOpinion:
    """VPA-style estimate beside the guide's rule (plus krr and AWS Compute Optimizer)."""

    method: str
    interval_s: float
    intervals: int
    p90_peak_mb: float
    target_mb: float
    lower_bound_mb: float
    upper_bound_mb: float
    oom_bump_mb: float | None
    confidence: float
    history_hours: float
    preset: str | None
    monthly_cost_usd: float | None
    krr_mb: float
    aws_mb: float
    caveat: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = None if math.isnan(v) or math.isinf(v) else round(v, 4)
        return d


def second_opinion(
    runs: Sequence[RunEvidence],
    *,
    interval_s: float | None = None,
    cpu_kind: str | None = None,
    instances: int = 1,
    region: str = "iad",
    price_set: str | None = None,
) -> SecondOpinion:
    """VPA recommender logic on this lab's much shorter history.

    VPA aggregates one memory peak per 24 h; a load test lasts minutes, so the interval is
    one (time-scaled) minute unless given. OOMs add a sample ``max(used + 100 MiB, used ×
    1.2)`` where used = max(limit, peak) (``container.go RecordOOM``)."""
    scale = min(r.time_scale for r in runs)
    iv = interval_s or max(60.0 * scale, min(r.sample_interval_s for r in runs))
    peaks: list[float] = []
    for r in runs:
        peaks.extend(interval_peaks(r, iv).tolist())
    oom_bump = None
    for r in runs:
        if r.oom_count:
            used = max(r.memory_limit_mb or 0.0, r.peak_mb)
            bump = max(used + VPA_OOM_MIN_BUMP_MB, used * VPA_OOM_BUMP_RATIO)
            oom_bump = max(oom_bump or 0.0, bump)
            peaks.extend([bump] * r.oom_count)
    p90 = float(np.percentile(peaks, 90, method="linear"))
    target = vpa_percentile_mb(peaks, VPA_TARGET_PERCENTILE) * (1 + VPA_MARGIN)
    history = sum(r.history_s for r in runs)
    n_samples = sum(len(r.memory) for r in runs)
    conf = vpa_confidence(history, n_samples)
    lower = vpa_percentile_mb(peaks, VPA_LOWER_PERCENTILE) * (1 + VPA_MARGIN)
    upper = vpa_percentile_mb(peaks, VPA_UPPER_PERCENTILE) * (1 + VPA_MARGIN)
    if conf > 0:
        lower *= (1 + 0.001 / conf) ** -2
        upper *= 1 + 1.0 / conf
    else:
        lower, upper = 0.0, math.inf
    # krr simple strategy: max working set × 1.15, OOM limit × 1.25
    all_mem = pd.concat([r.memory for r in runs])
    krr = float(all_mem.max()) * (1 + KRR_BUFFER)
    for r in runs:
        if r.oom_count and r.memory_limit_mb:
            krr = max(krr, r.memory_limit_mb * (1 + KRR_OOM_BUFFER))
    # AWS Compute Optimizer: p99.5 of per-5-minute maxima + 20 % headroom
    aws_iv = max(AWS_INTERVAL_S * scale, min(r.sample_interval_s for r in runs))
    aws_peaks = pd.concat([interval_peaks(r, aws_iv) for r in runs])
    aws = float(np.percentile(aws_peaks, AWS_PERCENTILE, method="linear")) * (1 + AWS_HEADROOM)
    chosen = _cheapest(
        lambda p: p.memory_mb >= target and (cpu_kind is None or p.cpu_kind == cpu_kind),
        region,
        price_set,
    )
    cost = monthly_cost(chosen, instances, region, price_set=price_set) if chosen else None
    hours = history / 3600
    caveat = (
        f"VPA-style estimate from {hours * 60:.1f} min of history (confidence {conf:.4f}; VPA "
        "counts 1.0 = one day of per-minute samples and wants 8 days): a load test of a few "
        "minutes is not 24 h of production traffic. The guide asks to monitor for 24 h after "
        "the change (Optimization Checklist) and to keep 512 MB only if it is stable for 48 h "
        "with no OOM kills (Right-Sizing Process)."
    )
    return SecondOpinion(
        method="VPA-style: p90 of per-interval peaks (5 % buckets) + 15 %",
        interval_s=iv,
        intervals=len(peaks),
        p90_peak_mb=p90,
        target_mb=target,
        lower_bound_mb=lower,
        upper_bound_mb=upper,
        oom_bump_mb=oom_bump,
        confidence=conf,
        history_hours=hours,
        preset=chosen.name if chosen else None,
        monthly_cost_usd=cost,
        krr_mb=krr,
        aws_mb=aws,
        caveat=caveat,
    )


# ----------------------------------------------------------------- the recommender


@dataclass
class RuleResult:
    """One guide rule evaluated on the evidence."""

    rule: str
    triggered: bool
    reason: str


def _cheapest(ok: Any, region: str, price_set: str | None) -> Preset | None:
    cands = [p for p in all_presets() if ok(p)]
    if not cands:
        return None
    return min(cands, key=lambda p: (machine_price(p, region, price_set), p.cpus, p.memory_mb))


def rule_buffer(peak_mb: float) -> tuple[float, str]:
    """Optimization Checklist: required memory = measured peak × 1.3."""
    req = peak_mb * BUFFER
    return req, (
        f"{G}, Optimization Checklist: required memory = peak {peak_mb:.0f} MB × {BUFFER} "
        f"= {req:.0f} MB (30 % buffer)"
    )


def rule_512(load_peak_mb: float) -> RuleResult:
    """Option 1: 512 MB only when the load-test peak is < 400 MB."""
    ok = load_peak_mb < SAFE_512_PEAK_MB
    verdict = "allows" if ok else "rules out"
    cmp = "<" if ok else "≥"
    return RuleResult(
        "512mb_safe",
        not ok,
        f"{G}, Scaling Options, Option 1: load-test peak {load_peak_mb:.0f} MB {cmp} "
        f"{SAFE_512_PEAK_MB:.0f} MB → {verdict} 512 MB (and smaller)",
    )


def rule_oom(runs: Sequence[RunEvidence]) -> tuple[float, RuleResult]:
    """An OOM kill at a size rules out that size and every smaller one."""
    # the size is the run's limit; without one, the memory it reached before the kill
    sizes = [r.memory_limit_mb or r.peak_mb for r in runs if r.oom_count]
    if not sizes:
        return 0.0, RuleResult(
            "oom", False, f"{G}, VM Sizing Strategy: no OOM kills in {len(runs)} run(s)"
        )
    worst = max(sizes)
    kills = sum(r.oom_count for r in runs)
    at = ", ".join(
        sorted({f"{r.preset.name if r.preset else r.label}" for r in runs if r.oom_count})
    )
    return worst, RuleResult(
        "oom",
        True,
        f'{G}, VM Sizing Strategy ("OOM kills in logs" → scale up): {kills} OOM kill(s) at '
        f"{at} → {worst:.0f} MB and every smaller size ruled out",
    )


def latency_slower(result: Mapping[str, Any]) -> tuple[bool, str]:
    """Did a ``compare_runs`` digest find p95 latency worse? Uses the all-requests row when
    present (the guide's "p95 latency"), else any endpoint; "slower" needs the CI to exclude
    0 and |Δ| ≥ 10 % (analysis.compare_runs)."""
    rows = result.get("latency") or []
    overall = [r for r in rows if r.get("name") == "(all)"] or rows
    slower = [r for r in overall if r.get("change") == "slower"]
    if slower:
        return True, str(slower[0].get("verdict", "slower"))
    return False, "; ".join(str(r.get("verdict", "")) for r in overall) or "no latency rows"


def rule_latency_unchanged(
    runs: Sequence[RunEvidence],
    latency: Mapping[str, Mapping[str, Any]] | None = None,
    verdicts: dict[str, tuple[bool, str]] | None = None,
) -> tuple[float, list[RuleResult]]:
    """Option 1: a smaller size is safe only if "p95 latency unchanged" against the largest
    size run with the same profile. Returns the largest memory ruled out and the results;
    ``verdicts`` (when given) gets run label → (slower, verdict) for each compared run."""
    out: list[RuleResult] = []
    worst = 0.0
    by_profile: dict[str | None, list[RunEvidence]] = {}
    for r in runs:
        if r.preset is not None and r.run is not None:
            by_profile.setdefault(r.profile, []).append(r)
    for group in by_profile.values():
        if len({r.preset.memory_mb for r in group}) < 2:  # type: ignore[union-attr]
            continue
        base = max(group, key=lambda r: (r.preset.memory_mb, r.preset.cpus))  # type: ignore[union-attr]
        for r in group:
            if r.preset.memory_mb >= base.preset.memory_mb:  # type: ignore[union-attr]
                continue
            res = (latency or {}).get(r.label)
            if res is None:
                res = compare_latency(base.run, r.run)  # type: ignore[arg-type]
            if not res.get("available"):
                out.append(
                    RuleResult(
                        "latency_unchanged",
                        False,
                        f'{G}, Option 1 ("p95 latency unchanged"): not '
                        f"checked for {r.label}: {res.get('reason')}",
                    )
                )
                continue
            slower, verdict = latency_slower(res)
            if verdicts is not None:
                verdicts[r.label] = (slower, f"{r.preset.name} vs {base.preset.name}: {verdict}")  # type: ignore[union-attr]
            if slower:
                worst = max(worst, float(r.preset.memory_mb))  # type: ignore[union-attr]
            out.append(
                RuleResult(
                    "latency_unchanged",
                    slower,
                    f'{G}, Scaling Options, Option 1 ("p95 latency unchanged"): '
                    f"{r.preset.name} vs {base.preset.name}: {verdict}"  # type: ignore[union-attr]
                    + (f" → {r.preset.memory_mb} MB and smaller ruled out" if slower else ""),  # type: ignore[union-attr]
                )
            )
    return worst, out


def rule_memory_sustained(run: RunEvidence) -> RuleResult:
    span = run.longest_above("memory_used_mb", SUSTAINED_MEMORY_MB)
    win = run.sustain_window_s
    hit = span >= win
    return RuleResult(
        "memory_sustained",
        hit,
        f'{G}, VM Sizing Strategy ("Memory consistently >800 MB" → scale up): {run.label} '
        f"above {SUSTAINED_MEMORY_MB:.0f} MB for {span:.0f} s "
        f"{'≥' if hit else '<'} {win:.0f} s" + (" → scale up" if hit else ""),
    )


def rule_p95(run: RunEvidence) -> RuleResult:
    if run.p95_ms is None:
        return RuleResult("p95", False, f"{G}: {run.label} has no k6 p95 (latency rule skipped)")
    hit = run.p95_ms > P95_SCALE_UP_MS
    return RuleResult(
        "p95",
        hit,
        f'{G}, VM Sizing Strategy ("p95 latency >3s" → scale up): {run.label} p95 '
        f"{run.p95_ms:.0f} ms {'>' if hit else '≤'} {P95_SCALE_UP_MS:.0f} ms"
        + (" → scale up" if hit else ""),
    )


def rule_cpu(run: RunEvidence) -> RuleResult:
    span = run.longest_above("cpu_pct", CPU_SUSTAINED_PCT, per_cpu=True)
    win = run.sustain_window_s
    hit = span >= win
    return RuleResult(
        "cpu_sustained",
        hit,
        f'{G}, Scaling Options, Option 3 ("CPU consistently >70%" → dedicated CPU): '
        f"{run.label} above {CPU_SUSTAINED_PCT:.0f} % for {span:.0f} s "
        f"{'≥' if hit else '<'} {win:.0f} s" + (" → performance CPU" if hit else ""),
    )


@dataclass
class LatencyAttribution:
    """Where a run's slow requests spend their time (the analysis module's step attribution)
    next to the VM's headroom: evidence for or against "p95 > 3 s → scale up"."""

    run: str
    dominant_step: int | None
    what: str | None
    share_pct: float | None  # of the slowest requests' excess time
    step_p95_ms: float | None
    method: str
    advice: str
    cpu_p95_pct: float  # cpu_pct per vCPU, p95 of the samples
    peak_mb: float
    limit_mb: float | None
    oom_kills: int
    upstreams: str | None  # the run's manifest "upstreams" (e.g. nominal emulators)

    @property
    def upstream(self) -> bool:
        return self.dominant_step in UPSTREAM_STEPS

    @property
    def headroom(self) -> bool:
        """CPU far below 70 %, peak × 1.3 within the limit, no OOM kill."""
        return (
            self.cpu_p95_pct < CPU_HEADROOM_PCT
            and self.limit_mb is not None
            and self.peak_mb * BUFFER <= self.limit_mb
            and not self.oom_kills
        )

    @property
    def vm_bound_unlikely(self) -> bool:
        """An upstream step dominates while the VM has headroom: more VM will not help."""
        return self.upstream and self.headroom

    def summary(self) -> str:
        if self.dominant_step is None:
            return f"{self.run}: no Step timings in service.log"
        lim = f"{self.limit_mb:.0f}" if self.limit_mb is not None else "?"
        return (
            f"Step {self.dominant_step} ({self.what}) holds {self.share_pct:.0f} % of the "
            f"slowest requests' excess time (step p95 {self.step_p95_ms:.0f} ms; "
            f"{self.method.split(':')[0]}); CPU p95 {self.cpu_p95_pct:.0f} % per vCPU, "
            f"peak memory {self.peak_mb:.0f} of {lim} MB"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(upstream=self.upstream, headroom=self.headroom)
        for k in ("share_pct", "step_p95_ms", "cpu_p95_pct", "peak_mb"):
            d[k] = _r(d[k])
        return d


def latency_attribution(run: RunEvidence) -> LatencyAttribution | None:
    """Step attribution of a run's service.log (``perflib.analysis.step_attribution``) with
    the run's CPU and memory headroom; None without a run directory, log or analysis module."""
    if run.run is None or not run.run.service_log_path.is_file():
        return None
    try:
        from perflib.analysis import STEP_ADVICE, parse_step_log, step_attribution

        sa = step_attribution(parse_step_log(run.run.service_log_path))
    except Exception:  # noqa: BLE001 - attribution is extra evidence, never fatal
        return None
    if sa.dominant_step is None:
        return None
    row = sa.per_step.loc[sa.per_step["step"] == sa.dominant_step].iloc[0]
    cpu = pd.to_numeric(run.samples["cpu_pct"], errors="coerce").dropna()
    cpus = run.preset.cpus if run.preset is not None else 1
    cpu_p95 = float(np.percentile(cpu / cpus, 95, method="linear")) if len(cpu) else math.nan
    return LatencyAttribution(
        run=run.label,
        dominant_step=sa.dominant_step,
        what=str(row["what"]),
        share_pct=sa.dominant_share_pct,
        step_p95_ms=float(row["p95"]),
        method=sa.method,
        advice=STEP_ADVICE.get(sa.dominant_step, ""),
        cpu_p95_pct=cpu_p95,
        peak_mb=run.peak_mb,
        limit_mb=run.memory_limit_mb,
        oom_kills=run.oom_count,
        upstreams=(run.run.manifest.get("upstreams") or None),
    )


def rule_p95_upstream(run: RunEvidence, att: LatencyAttribution | None) -> RuleResult:
    """Does the p95 > 3 s trigger rest on the VM? Triggered (= the rule does not drive the
    preset) when an upstream step dominates the slow requests and CPU and memory have
    headroom; otherwise the reason says what the scale-up rests on."""
    if att is None:
        return RuleResult(
            "p95_upstream_bound",
            False,
            f"p95 > 3 s in {run.label} rests on k6's p95 alone: no Step timings in its "
            "service.log, so it cannot be told whether the VM or an upstream is slow → the "
            "guide's scale-up applies",
        )
    if att.vm_bound_unlikely:
        src = f" (upstreams: {att.upstreams})" if att.upstreams else ""
        return RuleResult(
            "p95_upstream_bound",
            True,
            f"p95 > 3 s in {run.label} is upstream-bound{src}: {att.summary()} → CPU is far "
            f"below {CPU_SUSTAINED_PCT:.0f} % (p95 < {CPU_HEADROOM_PCT:.0f} %) and peak × "
            f"{BUFFER} fits, so more VM will not fix it; the guide's rule stays reported but "
            "does not drive the preset choice",
        )
    why = []
    if not att.upstream:
        why.append(f"Step {att.dominant_step} runs in the service, not upstream")
    if not att.headroom:
        why.append("the VM has no headroom (CPU, memory or an OOM kill)")
    return RuleResult(
        "p95_upstream_bound",
        False,
        f"p95 > 3 s in {run.label} rests on: {att.summary()}; {' and '.join(why)} → the "
        "guide's scale-up applies",
    )


def guide_option_1(
    load_peak_mb: float,
    runs: Sequence[RunEvidence],
    latency_verdicts: Mapping[str, tuple[bool, str]],
    oom_ruled_out_mb: float,
    current: Preset,
    instances: int,
    region: str,
    price_set: str,
) -> dict[str, Any]:
    """The guide's literal question, "Option 1: Reduce to 512 MB — Safe if …", answered
    criterion by criterion from the runs, with what the runs cannot show (24 h of traffic)."""
    try:
        target = parse_preset(current.size, GUIDE_OPTION_1_MB)
    except PricingError:
        target = parse_preset("shared-cpu-1x", GUIDE_OPTION_1_MB)
    small = [r for r in runs if r.preset is not None and r.preset.memory_mb <= GUIDE_OPTION_1_MB]
    peak_ok = load_peak_mb < SAFE_512_PEAK_MB
    criteria = [
        {
            "criterion": "Peak memory <400 MB during load tests",
            "status": "met" if peak_ok else "not met",
            "evidence": f"load-test peak {load_peak_mb:.0f} MB",
        }
    ]
    oom_small = sum(r.oom_count for r in small)
    small_h = sum(r.history_s for r in small) / 3600
    all_min = sum(r.history_s for r in runs) / 60
    if oom_small or oom_ruled_out_mb >= GUIDE_OPTION_1_MB:
        oom = ("not met", f"OOM kill(s) rule out {oom_ruled_out_mb:.0f} MB and smaller")
    elif small_h >= GUIDE_PRODUCTION_H:
        oom = ("met", f"no OOM kill in {small_h:.1f} h at ≤ {GUIDE_OPTION_1_MB} MB")
    else:
        oom = (
            "unverified",
            f"no OOM kill in {all_min:.1f} min of test runs ({small_h * 60:.1f} min at ≤ "
            f"{GUIDE_OPTION_1_MB} MB); 24 h of production traffic not observed yet",
        )
    criteria.append(
        {
            "criterion": "No OOM kills after 24h of production traffic",
            "status": oom[0],
            "evidence": oom[1],
        }
    )
    lat = [latency_verdicts[r.label] for r in small if r.label in latency_verdicts]
    if not lat:
        lat_status = ("not tested", "no run at 512 MB compared with a larger size")
    elif any(slower for slower, _ in lat):
        lat_status = ("not met", "; ".join(v for slower, v in lat if slower))
    else:
        lat_status = ("met", "; ".join(v for _, v in lat))
    criteria.append(
        {"criterion": "p95 latency unchanged", "status": lat_status[0], "evidence": lat_status[1]}
    )
    statuses = [c["status"] for c in criteria]
    if "not met" in statuses:
        verdict = "not safe"
    elif "not tested" in statuses:
        verdict = "not enough evidence: " + "; ".join(
            c["criterion"] for c in criteria if c["status"] == "not tested"
        )
    elif "unverified" in statuses:
        verdict = "safe per the load tests; still unverified: 24 h of production traffic"
    else:
        verdict = "safe"
    cost = monthly_cost(target, instances, region, price_set=price_set)
    cur_cost = monthly_cost(current, instances, region, price_set=price_set)
    return {
        "question": "Guide, Scaling Options, Option 1: is 512 MB safe?",
        "preset": target.name,
        "verdict": verdict,
        "criteria": criteria,
        "monthly_cost_usd": cost,
        "current_monthly_cost_usd": cur_cost,
        "monthly_savings_usd": round(cur_cost - cost, 2),
    }


def egress_estimate(
    runs: Sequence[RunEvidence], region: str, monthly_requests: float | None = None
) -> dict[str, Any] | None:
    """Egress from what the service sent (k6 ``data_received``): bytes per request, $ per
    million requests, and a 30-day volume — at ``monthly_requests`` when given, else at the
    test's mean rate sustained for 30 days (an upper bound: a load test is a busy hour)."""
    from perflib.pricing import egress_usd_per_gb

    sent = sum(r.data_received_bytes or 0.0 for r in runs)
    reqs = sum(r.requests or 0.0 for r in runs if r.data_received_bytes)
    if not sent or not reqs:
        return None
    bpr = sent / reqs
    rate = egress_usd_per_gb(region)
    durations = [r.duration_s for r in runs if r.duration_s and r.data_received_bytes]
    per_month = monthly_requests
    basis = "monthly_requests"
    if per_month is None:
        if not durations:
            return None
        per_month = reqs / sum(durations) * SECONDS_PER_MONTH
        basis = "measured rate sustained for 30 days (upper bound)"
    gb = monthly_egress_gb(bpr * reqs, 1.0, requests=reqs, monthly_requests=per_month)
    return {
        "bytes_per_request": round(bpr, 1),
        "usd_per_gb": rate,
        "usd_per_million_requests": round(bpr * 1e6 / 1e9 * rate, 4),
        "monthly_requests": round(per_month),
        "monthly_gb": round(gb, 3),
        "monthly_usd": round(gb * rate, 2),
        "basis": basis,
    }


@dataclass
class Recommendation:
    """The recommender's answer; ``to_json()`` has DESIGN.md's keys first."""

    recommended_preset: str | None
    memory_mb: int | None
    monthly_cost_usd: float | None
    current_preset: str
    current_monthly_cost_usd: float
    monthly_savings_usd: float | None
    reasons: list[str]
    instances: int = 1
    region: str = "iad"
    price_set: str = ""
    required_memory_mb: float = math.nan
    peak_memory_mb: float = math.nan
    cpu_kind: str = "shared"
    rules: list[RuleResult] = field(default_factory=list)
    second_opinion: SecondOpinion | None = None
    pool: PoolAdvice | None = None
    capacity: list[Capacity] = field(default_factory=list)
    confidence: str = "low"
    next_steps: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    egress: dict[str, Any] | None = None
    guide_option_1: dict[str, Any] | None = None
    latency_attribution: list[LatencyAttribution] = field(default_factory=list)
    partial_runs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # partial-run caveats first

    @property
    def partial(self) -> bool:
        """True when any run behind it did not run its whole profile."""
        return bool(self.partial_runs)

    @property
    def headline(self) -> str:
        """What a person reads first; it says when the evidence is a partial run."""
        what = f"{self.recommended_preset} × {self.instances}"
        if self.partial:
            what += f" — FROM A PARTIAL RUN ({', '.join(self.partial_runs)}): re-run to confirm"
        return what

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommended_preset": self.recommended_preset,
            "memory_mb": self.memory_mb,
            "monthly_cost_usd": self.monthly_cost_usd,
            "current_preset": self.current_preset,
            "monthly_savings_usd": self.monthly_savings_usd,
            "reasons": list(self.reasons),
            "current_monthly_cost_usd": self.current_monthly_cost_usd,
            "instances": self.instances,
            "region": self.region,
            "price_set": self.price_set,
            "cpu_kind": self.cpu_kind,
            "peak_memory_mb": _r(self.peak_memory_mb),
            "required_memory_mb": _r(self.required_memory_mb),
            "rules": [asdict(r) for r in self.rules],
            "second_opinion": self.second_opinion.to_dict() if self.second_opinion else None,
            "pool_size": asdict(self.pool) if self.pool else None,
            "capacity": [c.to_dict() for c in self.capacity],
            "confidence": self.confidence,
            "next_steps": list(self.next_steps),
            "runs": list(self.runs),
            "egress": self.egress,
            "guide_option_1": self.guide_option_1,
            "latency_attribution": [a.to_dict() for a in self.latency_attribution],
            "partial": self.partial,
            "partial_runs": list(self.partial_runs),
            "headline": self.headline,
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _r(x: float | None, nd: int = 1) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return None
    return round(float(x), nd)


def recommend(
    runs: Iterable[Any] | None = None,
    *,
    samples: str | Path | pd.DataFrame | None = None,
    events: str | Path | pd.DataFrame | None = None,
    current: str | None = None,
    region: str = "iad",
    instances: int = 1,
    ha: bool = False,
    price_set: str | None = None,
    current_pool: int = SERVICE_POOL_DEFAULT,
    monthly_requests: float | None = None,
    latency_check: bool = True,
    latency: Mapping[str, Mapping[str, Any]] | None = None,
) -> Recommendation:
    """The cheapest Fly preset that satisfies every rule of the guide, with the reasons.

    ``runs``: run directories (paths / RunDir) or RunEvidence; or ``samples`` (+ ``events``).
    ``current``: the preset the app runs on now (default: the runs' preset if they agree,
    else the guide's shared-cpu-1x:1024mb)."""
    ev = _as_evidence(runs) if runs else []
    if samples is not None:
        ev.append(evidence_from_samples(samples, events))
    if not ev:
        raise SizingError("no evidence: pass run directories or a samples file")
    try:
        ps = resolve_price_set(price_set)
        region = region.strip().lower()
        machine_price(DEFAULT_CURRENT, region, ps.name)  # validates the region
    except PricingError as exc:
        raise SizingError(str(exc)) from exc
    if instances < 1:
        raise SizingError(f"instances must be >= 1, got {instances}")
    reasons: list[str] = []
    rules: list[RuleResult] = []

    # current preset
    run_presets = {r.preset for r in ev if r.preset is not None}
    try:
        if current:
            cur = parse_preset(current)
        elif len(run_presets) == 1:
            cur = next(iter(run_presets))
        else:
            cur = parse_preset(DEFAULT_CURRENT)
    except PricingError as exc:
        raise SizingError(str(exc)) from exc

    # peaks: stress runs are for capacity, not for sizing (they push past the SLOs on purpose)
    sizing_runs = [r for r in ev if (r.profile or "") != "stress"] or ev
    sizing_pool = sizing_runs
    # an OOM-killed run's peak is censored at its limit (it would have used more): the OOM
    # rule speaks for it; the buffer applies to the runs that completed
    completed = [r for r in sizing_runs if not r.oom_count]
    if completed and len(completed) < len(sizing_runs):
        reasons.append(
            "Peak memory taken from the runs without OOM kills ("
            + ", ".join(r.label for r in completed)
            + "): an OOM-killed run's peak is cut off at its limit"
        )
    sizing_runs = completed or sizing_runs
    peak = max(r.peak_mb for r in sizing_runs)
    load_runs = [r for r in sizing_runs if (r.profile or "") == "load"] or sizing_runs
    load_peak = max(r.peak_mb for r in load_runs)
    required, why = rule_buffer(peak)
    reasons.append(why)
    rules.append(RuleResult("buffer", True, why))

    r512 = rule_512(load_peak)
    rules.append(r512)
    reasons.append(r512.reason)

    oom_mb, r_oom = rule_oom(ev)
    rules.append(r_oom)
    reasons.append(r_oom.reason)

    min_exclusive_mb = oom_mb  # presets must have strictly more memory than this
    lat_verdicts: dict[str, tuple[bool, str]] = {}
    if latency_check:
        slow_mb, lat_rules = rule_latency_unchanged(ev, latency, lat_verdicts)
        rules.extend(lat_rules)
        reasons.extend(x.reason for x in lat_rules)
        min_exclusive_mb = max(min_exclusive_mb, slow_mb)
    not_larger_than: list[Preset] = []  # p95 > 3 s at these: the pick must be larger
    perf_needed = False
    attributions: list[LatencyAttribution] = []
    upstream_bound: list[LatencyAttribution] = []
    for r in ev:
        m = rule_memory_sustained(r)
        rules.append(m)
        if m.triggered:
            reasons.append(m.reason)
            # the guide wrote this for its 1 GB VM: scale up = more than min(limit, 1 GB)
            lim = r.memory_limit_mb or r.peak_mb
            min_exclusive_mb = max(min_exclusive_mb, min(lim, GUIDE_VM_MB))
        p = rule_p95(r)
        if p.triggered and (r.profile or "") == "stress" and len(sizing_pool) < len(ev):
            p = RuleResult(
                "p95",
                False,
                f"{p.reason.removesuffix(' → scale up')}, not applied: {r.label} is a stress "
                "run, which pushes past the SLOs on purpose (its limit is under capacity)",
            )
            reasons.append(p.reason)
        rules.append(p)
        c = rule_cpu(r)
        if p.triggered:
            reasons.append(p.reason)
            att = latency_attribution(r)
            if att is not None:
                attributions.append(att)
            up = rule_p95_upstream(r, att)
            rules.append(up)
            reasons.append(up.reason)
            if up.triggered:
                upstream_bound.append(att)  # type: ignore[arg-type]
            else:
                not_larger_than.append(r.preset or cur)
        rules.append(c)
        if c.triggered:
            reasons.append(c.reason)
            perf_needed = True
    quiet = [x for x in rules if x.rule in ("memory_sustained", "p95", "cpu_sustained")]
    if not any(x.triggered for x in quiet):
        worst_mem = max(r.longest_above("memory_used_mb", SUSTAINED_MEMORY_MB) for r in ev)
        worst_cpu = max(r.longest_above("cpu_pct", CPU_SUSTAINED_PCT, per_cpu=True) for r in ev)
        p95s = [r.p95_ms for r in ev if r.p95_ms is not None]
        reasons.append(
            f"{G}, VM Sizing Strategy: no scale-up trigger — memory > 800 MB for at most "
            f"{worst_mem:.0f} s, CPU > 70 % for at most {worst_cpu:.0f} s"
            + (f", p95 at most {max(p95s):.0f} ms ≤ 3000 ms" if p95s else "")
        )

    n_inst = instances
    if ha:
        n_inst = max(instances, HA_INSTANCES)

    def ok(p: Preset) -> bool:
        if p.memory_mb < required or p.memory_mb <= min_exclusive_mb:
            return False
        if r512.triggered and p.memory_mb <= SMALL_PRESET_MB:
            return False
        if perf_needed and p.cpu_kind != "performance":
            return False
        return all(p.is_larger_than(q) for q in not_larger_than)

    pick = _cheapest(ok, region, ps.name)
    cur_cost = monthly_cost(cur, 1, region, price_set=ps.name)
    if pick is None:
        reasons.append("No Fly preset satisfies every rule: the largest is too small")
        rec_cost = None
        savings = None
    else:
        rec_cost = monthly_cost(pick, n_inst, region, price_set=ps.name)
        savings = round(cur_cost * instances - rec_cost, 2)
        reasons.append(
            f"Cheapest preset satisfying every rule: {pick.name} at ${machine_price(pick, region, ps.name):.2f}"
            f"/30 d ({region}, price set {ps.name}{', reported' if ps.status != 'confirmed' else ''})"
        )
        if ha:
            reasons.append(
                f"{G}, Scaling Options, Option 2 (high availability): {n_inst} instances → "
                f"{n_inst} × ${machine_price(pick, region, ps.name):.2f} = ${rec_cost:.2f}/30 d "
                '("Costs: 2x the resources")'
            )
        if pick.memory_mb < SMALL_PRESET_MB:
            reasons.append(
                f"Caution: {pick.memory_mb} MB is the size users most often report OOM kills "
                "at while installing or booting Python apps (fly.md §6); the load test only "
                "covers what it exercised"
            )
        verb = "saves" if savings >= 0 else "costs"
        reasons.append(
            f"Current {cur.name} × {instances} = ${cur_cost * instances:.2f}/30 d → "
            f"{pick.name} × {n_inst} {verb} ${abs(savings):.2f}/30 d"
        )

    pool = _pool_from_runs(sizing_runs, current_pool)
    pool_note: str | None = None
    if pool:
        reasons.append(pool.reason)
        extra_hi = (pool.connections - current_pool) * POOL_MB_PER_CONNECTION[1]
        need = (peak + extra_hi) * BUFFER
        if pick is not None and extra_hi > 0 and need > pick.memory_mb:
            pool_note = (
                f"{G}, Database Connection Pool Tuning + Optimization Checklist: a pool of "
                f"{pool.connections} instead of {current_pool} adds up to {extra_hi:.0f} MB that "
                f"the measured peak does not include: ({peak:.0f} + {extra_hi:.0f}) × {BUFFER} = "
                f"{need:.0f} MB > {pick.memory_mb} MB of {pick.name} → do not change both at "
                f"once: re-run the load test with DB_POOL_SIZE={pool.connections} first"
            )
            reasons.append(pool_note)
    egress = egress_estimate(sizing_runs, region, monthly_requests)
    if egress and monthly_requests and rec_cost is not None:
        rec_cost = round(rec_cost + egress["monthly_usd"], 2)
        cur_total = cur_cost * instances + egress["monthly_usd"]
        savings = round(cur_total - rec_cost, 2)
        reasons.append(
            f"Egress: {egress['bytes_per_request']:.0f} B/request (k6 data_received) × "
            f"{monthly_requests:,.0f} requests/30 d = {egress['monthly_gb']:.2f} GB → "
            f"${egress['monthly_usd']:.2f} at ${egress['usd_per_gb']}/GB ({region})"
        )

    so = second_opinion(
        ev,
        cpu_kind="performance" if perf_needed else None,
        instances=n_inst,
        region=region,
        price_set=ps.name,
    )
    caps: list[Capacity] = []
    for r in ev:
        if (r.profile or "") == "stress" and r.run is not None:
            try:
                cap = capacity(r, region=region, price_set=ps.name, recommended=pick)
            except SizingError as exc:
                reasons.append(f"Capacity of {r.label} not computed: {exc}")
                continue
            caps.append(cap)
            reasons.append(_capacity_reason(cap, latency_attribution(r)))
    opt1 = guide_option_1(load_peak, ev, lat_verdicts, oom_mb, cur, instances, region, ps.name)
    partial = [r for r in ev if r.partial]
    if partial:  # "safe per the load tests" only holds for the part of them that ran
        opt1["verdict"] += f" (from a partial run: {', '.join(r.label for r in partial)})"
    reasons.append(
        f"{G}, Scaling Options, Option 1 (512 MB): {opt1['verdict']} — "
        + "; ".join(f"{c['criterion']}: {c['status']}" for c in opt1["criteria"])
    )
    history_h = sum(r.history_s for r in ev) / 3600
    confidence = "high" if history_h >= 48 else ("medium" if history_h >= 24 else "low")
    caveat_lines = [r.completeness.caveat for r in partial if r.completeness is not None]
    if partial:
        confidence = "low"
        reasons.insert(
            0,
            "Partial evidence: "
            + ", ".join(r.label for r in partial)
            + " did not run the whole load profile, so its peaks and latencies may be too low "
            "(confidence set to low)",
        )
    steps = [
        f"Deploy {pick.name if pick else cur.name} (fly.toml [[vm]] size + memory; a `fly scale` "
        "change is reset by the next deploy) and monitor for 24 h (Optimization Checklist)",
        "Check for OOM kills: fly logs | grep -i oom, or the fly_instance_exit_oom metric",
        "Keep the smaller size only if stable for 48 h with p95 latency unchanged "
        "(Right-Sizing Process); otherwise revert to 1 GB",
    ]
    if pool_note:
        steps.append(
            f"Raise the DB pool to {pool.connections} only after a load test with "  # type: ignore[union-attr]
            f"DB_POOL_SIZE={pool.connections} at {pick.name if pick else cur.name} shows the "  # type: ignore[union-attr]
            "peak × 1.3 still fits"
        )
    by_step: dict[tuple[Any, ...], list[str]] = {}
    for att in upstream_bound:
        by_step.setdefault((att.dominant_step, att.what, att.advice, att.upstreams), []).append(
            att.run
        )
    for (step, what, advice, upstreams), labels in by_step.items():
        where = (
            f"; here the upstreams are the lab's '{upstreams}' emulators, so the p95 "
            "measures their configured latencies"
            if upstreams in ("nominal", "degraded")
            else ""
        )
        steps.insert(
            0,
            f"p95 > 3 s ({', '.join(labels)}) is upstream-bound — Step {step} ({what}): "
            f"{advice}; cut it with upstream timeouts, caching or concurrent calls, not a "
            f"bigger VM{where}",
        )
    if pick is not None and pick not in {r.preset for r in ev}:
        steps.insert(
            0,
            f"{pick.name} was not load-tested here: run `perflib run load --vm {pick.name}` "
            f"and `perflib compare` it with the {cur.name} run before deploying",
        )
    return Recommendation(
        recommended_preset=pick.name if pick else None,
        memory_mb=pick.memory_mb if pick else None,
        monthly_cost_usd=rec_cost,
        current_preset=cur.name,
        current_monthly_cost_usd=round(cur_cost * instances, 2),
        monthly_savings_usd=savings,
        reasons=reasons,
        instances=n_inst,
        region=region,
        price_set=ps.name,
        required_memory_mb=required,
        peak_memory_mb=peak,
        cpu_kind="performance" if perf_needed else "shared",
        rules=rules,
        second_opinion=so,
        pool=pool,
        capacity=caps,
        confidence=confidence,
        next_steps=steps,
        runs=[r.label for r in ev],
        egress=egress,
        guide_option_1=opt1,
        latency_attribution=attributions,
        partial_runs=[r.label for r in partial],
        warnings=[c for c in caveat_lines if c] + [n for r in ev for n in r.notes],
    )


# ----------------------------------------------------------------- capacity

#: docs/runs.md: each stress iteration calls GET /health, then GET /api/v1/leads/process.
REQUESTS_PER_ITERATION = 2
#: share of each hold stage dropped as warm-up (the arrival rate has just stepped up)
WARMUP_FRACTION = 0.10
ENRICHMENT_ENDPOINT = "leads/process"  #: regex on k6's `name` tag (as data/slo.toml)
HEALTH_ENDPOINT = "health"
HOLD_PREFIX = "hold"
#: below this many requests a p95 is decided by the slowest one or two (flagged in the note)
MIN_P95_SAMPLES = 20


@dataclass(frozen=True)
class CapacityLimits:
    """The limits a hold stage must meet, read from the SLO file (``data/slo.toml``)."""

    enrichment_p95_ms: float = 5000.0  #: enrichment_p95 — guide: full enrichment flow < 5 s
    health_p95_ms: float = 50.0  #: health_p95 — guide: health check < 50 ms
    error_rate: float = 0.01  #: error_rate — guide: error rate target < 1 % (fraction here)
    scale_up_p95_ms: float = 3000.0  #: scale_up_p95 — guide: "When to scale up: p95 > 3s"
    source: str = "defaults (the guide's figures)"


def capacity_limits(slo_file: str | Path | None = None) -> CapacityLimits:
    """The capacity limits from an SLO file (default ``data/slo.toml``); ids
    ``enrichment_p95``, ``health_p95``, ``error_rate`` (%), ``scale_up_p95``."""
    from perflib.slo import SloError, load_slos

    try:
        slos = load_slos(slo_file)
    except SloError as exc:
        raise SizingError(str(exc)) from exc
    base = CapacityLimits()
    values: dict[str, float] = {}
    for sid, key, scale in (
        ("enrichment_p95", "enrichment_p95_ms", 1.0),
        ("health_p95", "health_p95_ms", 1.0),
        ("error_rate", "error_rate", 0.01),
        ("scale_up_p95", "scale_up_p95_ms", 1.0),
    ):
        try:
            values[key] = float(slos.resolved_target(slos.get(sid))) * scale
        except KeyError:
            values[key] = getattr(base, key)
    return CapacityLimits(**values, source=str(slos.path))


@dataclass
class Capacity:
    """Highest hold-stage request rate of a stress run within the SLOs, and its price.

    ``stages`` is the per-stage table (one row per hold stage). ``max_sustained_rps`` is
    within every SLO (enrichment and health p95, errors, no drops); when that is 0 because
    the enrichment p95 misses its target even at the lightest stage (upstream-bound),
    ``guide_limits_rps`` is the labelled fallback (see :func:`capacity`)."""

    run: str
    preset: str | None
    max_sustained_rps: float
    max_sustained_stage: str | None
    guide_limits_rps: float
    guide_limits_stage: str | None
    enrichment_upstream_bound: bool
    first_breach_offered_rps: float | None
    first_breach_stage: str | None
    first_breach_reason: str | None
    slo_enrichment_p95_ms: float
    slo_health_p95_ms: float
    slo_error_rate: float
    scale_up_p95_ms: float
    warmup_fraction: float
    requests_per_iteration: float
    monthly_cost_usd: float | None
    cost_per_million_usd: float | None
    recommended_preset: str | None = None
    recommended_monthly_cost_usd: float | None = None
    recommended_cost_per_million_usd: float | None = None
    cost_basis_rps: float = 0.0
    cost_basis: str = ""
    note: str = ""
    stages: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    limited_by: str | None = None  # what the slow requests wait on (step attribution)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "stages"}
        for k in (
            "max_sustained_rps",
            "guide_limits_rps",
            "first_breach_offered_rps",
            "cost_per_million_usd",
            "recommended_cost_per_million_usd",
            "cost_basis_rps",
        ):
            d[k] = _r(d[k], 3)
        d["stages"] = [
            {k: _jsonable_scalar(v) for k, v in row.items()}
            for row in self.stages.to_dict(orient="records")
        ]
        return d


def _jsonable_scalar(v: Any) -> Any:
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return _r(float(v), 3)
    if v is pd.NA or v is None:
        return None
    return v


def _read_requests_minimal(paths: Sequence[Path]) -> pd.DataFrame:
    """http_req_duration points from k6 NDJSON, for when perflib.k6 is not importable.
    k6 times are request ends; start = end − duration (blocked/connecting not known)."""
    rows = []
    for p in paths:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as fh:
            for line in fh:
                if '"http_req_duration"' not in line or '"Point"' not in line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                d = obj.get("data", {})
                tags = d.get("tags") or {}
                exp = tags.get("expected_response")
                rows.append(
                    {
                        "time": d.get("time"),
                        "duration_ms": float(d.get("value", math.nan)),
                        "failed": None if exp is None else exp != "true",
                        "name": tags.get("name"),
                    }
                )
    df = pd.DataFrame(rows, columns=["time", "duration_ms", "failed", "name"])
    df["time"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    return df


def _requests(run: RunDir) -> pd.DataFrame:
    try:
        from perflib.k6 import read_requests

        return read_requests(run.path)
    except (ImportError, AttributeError):
        return _read_requests_minimal(run.k6_outputs)


def _dropped(run: RunDir) -> pd.DataFrame:
    """``dropped_iterations`` points (time, value): k6 stamps them when it drops."""
    try:
        from perflib.k6 import read_points
    except ImportError:  # pragma: no cover - the ingest module is part of perflib
        return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "value": []})
    pts = read_points(run.path, metrics=["dropped_iterations"])
    return pts[["time", "value"]]


def _p95(values: np.ndarray) -> float:
    """k6's percentile (linear interpolation, perflib.k6.percentile's method)."""
    return float(np.percentile(values, 95, method="linear")) if len(values) else math.nan


def capacity_stages(
    requests: pd.DataFrame,
    stages: Sequence[Mapping[str, Any]],
    k6_started_at: pd.Timestamp,
    *,
    k6_ended_at: pd.Timestamp | None = None,
    dropped: pd.DataFrame | None = None,
    limits: CapacityLimits | None = None,
    warmup_fraction: float = WARMUP_FRACTION,
    requests_per_iteration: float = REQUESTS_PER_ITERATION,
) -> pd.DataFrame:
    """One row per hold stage of a stress run (tidy: one column per measure).

    Requests belong to the stage in which they STARTED (k6 stamps the end; ``start_time`` is
    end − all phases), after the first ``warmup_fraction`` of the hold, whatever their end:
    a request that took 20 s counts against the stage that sent it, not a later one.
    Enrichment requests the stage sent that never completed (k6 stopped before they ended)
    are counted: per iteration, /health is followed at once by the enrichment, so the
    /health requests ending in the window minus the enrichments starting in it are
    enrichments that were never recorded. They count as errors and as latencies of at
    least (k6 end − window end), so they cannot improve the p95."""
    lim = limits or CapacityLimits()
    if not 0 <= warmup_fraction < 1:
        raise SizingError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    req = requests.dropna(subset=["time", "duration_ms"])
    end = pd.to_datetime(req["time"], utc=True)
    start = end - pd.to_timedelta(req["duration_ms"], unit="ms")
    if "start_time" in req:
        start = pd.to_datetime(req["start_time"], utc=True).fillna(start)
    t0 = pd.Timestamp(k6_started_at)
    s_rel = (start - t0).dt.total_seconds().to_numpy()
    e_rel = (end - t0).dt.total_seconds().to_numpy()
    t_end = (pd.Timestamp(k6_ended_at) - t0).total_seconds() if k6_ended_at is not None else None
    if t_end is None:
        t_end = float(np.nanmax(e_rel)) if len(e_rel) else 0.0
    names = req["name"].astype("string").fillna("")
    is_enr = names.str.contains(ENRICHMENT_ENDPOINT, regex=True).to_numpy()
    is_health = names.str.contains(HEALTH_ENDPOINT, regex=True).to_numpy()
    failed = req["failed"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    dur = req["duration_ms"].to_numpy(dtype=float)
    if dropped is not None and len(dropped):
        d_rel = (pd.to_datetime(dropped["time"], utc=True) - t0).dt.total_seconds().to_numpy()
        d_val = dropped["value"].to_numpy(dtype=float)
    else:
        d_rel = d_val = np.array([], dtype=float)
    rows = []
    for st in stages:
        name = str(st.get("name", ""))
        if not name.startswith(HOLD_PREFIX):
            continue
        a = float(st["start_s"])
        b = a + float(st["duration_s"])
        w0 = a + warmup_fraction * (b - a)
        win = b - w0
        target = float(st.get("target") or 0)
        in_win = (s_rel >= w0) & (s_rel < b)
        enr = in_win & is_enr
        hl = in_win & is_health
        # enrichment never recorded: iterations whose /health ended in the window (the
        # enrichment starts right after it) minus the enrichments that started there
        health_ended = int(((e_rel >= w0) & (e_rel < b) & is_health).sum())
        unfinished = max(0, health_ended - int(enr.sum()))
        censored = max((t_end - b) * 1000.0, 0.0)
        enr_d = np.concatenate([dur[enr], np.full(unfinished, censored)])
        n_started = int(in_win.sum()) + unfinished
        n_failed = int(failed[in_win].sum()) + unfinished
        drops = float(d_val[(d_rel >= w0) & (d_rel < b)].sum())
        completed_in_window = int(((e_rel >= w0) & (e_rel < b)).sum())
        late = int((enr & (e_rel >= b)).sum())
        rows.append(
            {
                "stage": name,
                "target_iters_per_s": target,
                "start_s": a,
                "end_s": b,
                "window_start_s": w0,
                "window_s": win,
                "offered_rps": target * requests_per_iteration,
                "started_rps": n_started / win if win > 0 else math.nan,
                "completed_rps": completed_in_window / win if win > 0 else math.nan,
                "requests": n_started,
                "enrichment_requests": int(enr.sum()) + unfinished,
                "enrichment_p95_ms": _p95(enr_d),
                # unfinished requests enter at a lower bound: then so is the p95
                "enrichment_p95_lower_bound": bool(unfinished and _p95(enr_d) >= censored),
                "enrichment_late": late,
                "enrichment_unfinished": unfinished,
                "health_requests": int(hl.sum()),
                "health_p95_ms": _p95(dur[hl]),
                "p95_ms": _p95(np.concatenate([dur[in_win], np.full(unfinished, censored)])),
                "errors": n_failed,
                "error_rate": n_failed / n_started if n_started else math.nan,
                "dropped_iterations": drops,
            }
        )
    cols = [
        "stage", "target_iters_per_s", "start_s", "end_s", "window_start_s", "window_s",
        "offered_rps", "started_rps", "completed_rps", "requests", "enrichment_requests",
        "enrichment_p95_ms", "enrichment_p95_lower_bound", "enrichment_late",
        "enrichment_unfinished", "health_requests", "health_p95_ms", "p95_ms", "errors", "error_rate", "dropped_iterations",
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        for c in ("within_slo", "within_guide_limits"):
            df[c] = pd.Series(dtype=bool)
        df["fails"] = pd.Series(dtype="string")
        return df
    # a stage with no requests of an endpoint has nothing to show it met the SLO
    common = [
        (df["requests"] == 0, "no requests"),
        (df["error_rate"] > lim.error_rate, f"errors > {lim.error_rate:.0%}"),
        (df["dropped_iterations"] > 0, "dropped iterations"),
    ]
    # a p95 that is only a lower bound (unfinished requests decide it) never passes
    lower = df["enrichment_p95_lower_bound"].astype(bool)
    enr_fail = ~(df["enrichment_p95_ms"] <= lim.enrichment_p95_ms) | lower
    health_fail = ~(df["health_p95_ms"] <= lim.health_p95_ms)
    # the fallback's latency limit: the scale-up trigger above the upstream floor (the
    # enrichment p95 of the lightest hold stage), never stricter than the enrichment SLO
    floor = df.sort_values("target_iters_per_s")["enrichment_p95_ms"].iloc[0]
    guide_limit = lim.enrichment_p95_ms
    if floor == floor:  # not NaN
        guide_limit = max(guide_limit, float(floor) + lim.scale_up_p95_ms)
    df["guide_enrichment_limit_ms"] = guide_limit
    guide_fail = ~(df["enrichment_p95_ms"] <= guide_limit) | lower
    slo_checks = [
        *common,
        (enr_fail, f"enrichment p95 > {lim.enrichment_p95_ms:.0f} ms"),
        (health_fail, f"health p95 > {lim.health_p95_ms:.0f} ms"),
    ]
    guide_checks = [
        *common,
        (health_fail, f"health p95 > {lim.health_p95_ms:.0f} ms"),
        (guide_fail, f"enrichment p95 > {guide_limit:.0f} ms (floor + scale-up trigger)"),
    ]

    def reasons(checks: list[tuple[pd.Series, str]]) -> pd.Series:
        out = pd.Series([""] * len(df), index=df.index, dtype="string")
        for mask, text in checks:
            m = mask.fillna(True).astype(bool)
            out[m] = out[m].where(out[m] == "", out[m] + "; ") + text
        return out

    df["fails"] = reasons(slo_checks)
    df["within_slo"] = df["fails"] == ""
    df["guide_fails"] = reasons(guide_checks)
    df["within_guide_limits"] = df["guide_fails"] == ""
    return df


def capacity(
    run: RunEvidence | RunDir | str | Path,
    *,
    slo_file: str | Path | None = None,
    limits: CapacityLimits | None = None,
    warmup_fraction: float = WARMUP_FRACTION,
    requests_per_iteration: float = REQUESTS_PER_ITERATION,
    region: str = "iad",
    price_set: str | None = None,
    recommended: Preset | str | None = None,
    requests: pd.DataFrame | None = None,
    dropped: pd.DataFrame | None = None,
) -> Capacity:
    """Capacity of a stress run: the highest hold-stage offered rate (target iterations/s ×
    requests per iteration) whose requests met every SLO — enrichment p95, health p95 and the
    error rate of ``data/slo.toml`` — with no dropped iterations (see
    :func:`capacity_stages`). Ramps are ignored; stages must be contiguous from the lightest:
    a stage above one that failed does not count (the service was already behind).

    When no stage meets the enrichment p95 because it misses even at the lightest stage while
    that stage meets everything else (the lab's nominal emulators: p95 ≈ 6–7 s > 5 s, set
    by the upstreams), ``guide_limits_rps`` gives the labelled fallback: the same checks with
    the enrichment limit raised to the guide's scale-up trigger (3 s) above that floor.

    Cost per million requests is priced at the capacity rate (the fallback when the strict
    figure is 0) for the run's preset and for ``recommended``."""
    ev = run if isinstance(run, RunEvidence) else evidence_from_run(run)
    rd = ev.run
    if rd is None:
        raise SizingError(f"{ev.label}: capacity needs a run directory with k6 output")
    m = rd.manifest
    stages = m.get("stages") or []
    if not any(str(s.get("name", "")).startswith(HOLD_PREFIX) for s in stages):
        raise SizingError(
            f"{ev.label}: no hold stages in manifest.json (capacity needs a stress run: "
            "ramp-N/s + hold-N/s stages)"
        )
    t0 = _parse_time(m.get("k6_started_at"))
    if t0 is None:
        raise SizingError(f"{ev.label}: manifest.json has no valid k6_started_at")
    if requests is None:
        if not rd.k6_outputs:
            raise SizingError(f"{ev.label}: no k6 NDJSON output in the run directory")
        requests = _requests(rd)
        if dropped is None:
            dropped = _dropped(rd)
    if requests.dropna(subset=["time", "duration_ms"]).empty:
        raise SizingError(f"{ev.label}: no HTTP requests in the k6 output")
    lim = limits or capacity_limits(slo_file)
    table = capacity_stages(
        requests,
        stages,
        t0,
        k6_ended_at=_parse_time(m.get("k6_ended_at")),
        dropped=dropped,
        limits=lim,
        warmup_fraction=warmup_fraction,
        requests_per_iteration=requests_per_iteration,
    )
    table = table.sort_values("target_iters_per_s", kind="stable").reset_index(drop=True)

    def highest(col: str) -> tuple[float, str | None]:
        rate, stage = 0.0, None
        for _, row in table.iterrows():
            if not row[col]:
                break
            rate, stage = float(row["offered_rps"]), str(row["stage"])
        return rate, stage

    best, best_stage = highest("within_slo")
    guide, guide_stage = highest("within_guide_limits")
    bad = table[~table["within_slo"].astype(bool)]
    first = bad.iloc[0] if not bad.empty else None
    lightest = table.iloc[0] if not table.empty else None
    upstream_bound = bool(
        best == 0.0
        and lightest is not None
        and str(lightest["fails"]).startswith("enrichment p95")
        and ";" not in str(lightest["fails"])
    )
    basis_rps, basis = (best, "within every SLO")
    if best == 0.0 and guide > 0:
        basis_rps = guide
        basis = "within the guide's limits only (enrichment p95 SLO set aside: upstream-bound)"
    if best == 0.0:
        why = f"{first['stage']}: {first['fails']}" if first is not None else "no hold stage"
        note = f"no hold stage meets every SLO ({why})" + (
            f"; the enrichment p95 exceeds {lim.enrichment_p95_ms:.0f} ms even at "
            f"{lightest['stage']} while the rest passes there: upstream-bound"
            if upstream_bound
            else ""
        )
    else:
        row = table[table["stage"] == best_stage].iloc[0]
        its = float(row["target_iters_per_s"])
        note = (
            f"capacity stage {best_stage}: {its:g} iterations/s = {its:g} enrichments/s + "
            f"{its:g} /health/s"
        )
        n_enr = int(row["enrichment_requests"])
        if n_enr < MIN_P95_SAMPLES:
            note += (
                f"; its enrichment p95 rests on {n_enr} requests (< {MIN_P95_SAMPLES}: the top "
                "one or two decide it) — confirm with a longer run (larger time scale)"
            )
    bpr = (ev.data_received_bytes / ev.requests) if ev.data_received_bytes and ev.requests else 0

    def price(p: Preset | None) -> tuple[float | None, float | None]:
        if p is None:
            return None, None
        cost = monthly_cost(p, 1, region, price_set=price_set)
        if basis_rps <= 0:
            return cost, None
        cpm = cost_per_million_requests(
            cost, basis_rps, egress_bytes_per_request=bpr, region=region
        )
        return cost, (None if math.isinf(cpm) else cpm)

    cost, cpm = price(ev.preset)
    rec = parse_preset(recommended) if isinstance(recommended, str) else recommended
    rcost, rcpm = price(rec)
    return Capacity(
        run=ev.label,
        preset=ev.preset.name if ev.preset else None,
        max_sustained_rps=best,
        max_sustained_stage=best_stage,
        guide_limits_rps=guide,
        guide_limits_stage=guide_stage,
        enrichment_upstream_bound=upstream_bound,
        first_breach_offered_rps=None if first is None else float(first["offered_rps"]),
        first_breach_stage=None if first is None else str(first["stage"]),
        first_breach_reason=None if first is None else str(first["fails"]),
        slo_enrichment_p95_ms=lim.enrichment_p95_ms,
        slo_health_p95_ms=lim.health_p95_ms,
        slo_error_rate=lim.error_rate,
        scale_up_p95_ms=lim.scale_up_p95_ms,
        warmup_fraction=warmup_fraction,
        requests_per_iteration=requests_per_iteration,
        monthly_cost_usd=cost,
        cost_per_million_usd=cpm,
        recommended_preset=rec.name if rec else None,
        recommended_monthly_cost_usd=rcost,
        recommended_cost_per_million_usd=rcpm,
        cost_basis_rps=basis_rps,
        cost_basis=basis,
        note=note,
        stages=table,
    )


def _capacity_reason(cap: Capacity, att: LatencyAttribution | None) -> str:
    """Capacity for humans, with what limits it: a rate bounded by upstream latency is not
    the VM's capacity, and a bigger preset will not raise it (sets ``cap.limited_by``)."""
    head = f"Capacity ({cap.run}, {cap.preset or 'unknown preset'}, hold stages by request start)"
    slo = (
        f"enrichment p95 ≤ {cap.slo_enrichment_p95_ms:.0f} ms, health p95 ≤ "
        f"{cap.slo_health_p95_ms:.0f} ms, errors ≤ {cap.slo_error_rate:.0%}, no dropped iterations"
    )
    if cap.max_sustained_rps > 0:
        line = (
            f"{head}: {cap.max_sustained_rps:.1f} req/s ({cap.max_sustained_stage}) within {slo}"
            f" — {cap.note}"
        )
    else:
        line = f"{head}: 0 req/s within {slo} — {cap.note}"
        if cap.enrichment_upstream_bound:
            line += (
                f"; within the guide's limits alone (enrichment p95 ≤ upstream floor + "
                f"{cap.scale_up_p95_ms:.0f} ms scale-up trigger, errors ≤ "
                f"{cap.slo_error_rate:.0%}, health p95, no drops): {cap.guide_limits_rps:.1f} req/s"
                + (f" ({cap.guide_limits_stage})" if cap.guide_limits_stage else "")
            )
    if cap.first_breach_stage is not None:
        line += (
            f"; first breach at {cap.first_breach_offered_rps:.1f} req/s offered "
            f"({cap.first_breach_stage}: {cap.first_breach_reason})"
        )
    if cap.cost_per_million_usd is not None:
        line += f"; ${cap.cost_per_million_usd:.3f} per million requests at {cap.cost_basis_rps:.1f} req/s"
        if cap.recommended_cost_per_million_usd is not None and cap.recommended_preset not in (
            None,
            cap.preset,
        ):
            line += (
                f" (${cap.recommended_cost_per_million_usd:.3f} on {cap.recommended_preset}, "
                "if it sustains the same rate — not measured)"
            )
    if att is not None:
        cap.limited_by = att.summary() + (
            " → upstream-bound: a bigger VM will not raise it" if att.vm_bound_unlikely else ""
        )
        line += f"; what limits it: {cap.limited_by}"
    return line


# ----------------------------------------------------------------- preset comparison


@dataclass
class PresetComparison:
    """Runs of one profile at several presets, side by side (the report's centrepiece)."""

    table: pd.DataFrame  # one row per run
    baseline: str  # label of the run the others are compared with (largest memory)
    latency: dict[str, Any]  # label -> compare_runs result (or why it is missing)
    recommendation: Recommendation
    price_set: str
    region: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        rows = json.loads(self.table.to_json(orient="records"))
        return {
            "profile": self.table["profile"].iloc[0] if len(self.table) else None,
            "baseline": self.baseline,
            "price_set": self.price_set,
            "region": self.region,
            "runs": rows,
            "latency_comparison": _jsonable(
                {
                    k: {kk: vv for kk, vv in v.items() if kk != "object"}
                    for k, v in self.latency.items()
                }
            ),
            "recommendation": self.recommendation.to_dict(),
            "warnings": self.warnings,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and not isinstance(obj, pd.DataFrame | pd.Series):
        obj = obj.to_dict()
    elif hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame | pd.Series):
        return json.loads(obj.to_json())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    return obj


def compare_latency(baseline: RunDir, other: RunDir) -> dict[str, Any]:
    """Δp95 with a bootstrap CI + Mann–Whitney from the analysis module (imported lazily so
    sizing works while it is absent)."""
    try:
        from perflib.analysis import compare_runs
    except (ImportError, AttributeError) as exc:
        return {"available": False, "reason": f"perflib.analysis.compare_runs unavailable: {exc}"}
    try:
        res = compare_runs(baseline, other)
    except Exception as exc:  # noqa: BLE001 - the comparison is optional evidence
        return {"available": False, "reason": f"compare_runs failed: {type(exc).__name__}: {exc}"}
    return comparison_summary(res)


def comparison_summary(res: Any) -> dict[str, Any]:
    """JSON-able digest of an analysis ``Comparison`` (tables as records, no raw samples)."""
    if isinstance(getattr(res, "latency", None), pd.DataFrame):
        out: dict[str, Any] = {"available": True, "object": res}
        for key in ("unit", "percentile", "confidence", "factor", "labels"):
            out[key] = getattr(res, key, None)
        out["verdicts"] = list(getattr(res, "verdicts", []))
        out["changed"] = bool(getattr(res, "changed", False))
        for key in ("latency", "errors", "memory"):
            tab = getattr(res, key, None)
            if isinstance(tab, pd.DataFrame):
                out[key] = json.loads(tab.to_json(orient="records", default_handler=str))
        return out
    out2 = _jsonable(res)
    if isinstance(out2, dict):
        out2.setdefault("available", True)
        return out2
    return {"available": True, "result": out2}


def compare_presets(
    runs: Iterable[Any],
    *,
    region: str = "iad",
    price_set: str | None = None,
    current: str | None = None,
    latency: bool = True,
) -> PresetComparison:
    """Compare runs of the same profile at two or more presets: memory peak/p95 against each
    limit (headroom), OOM kills, error rate, p95 latency (+ the analysis module's Δp95 CI),
    monthly cost of each and the saving against the largest."""
    ev = _as_evidence(runs)
    if len(ev) < 2:
        raise SizingError("compare needs at least two runs (e.g. one at 1024mb, one at 512mb)")
    missing = [r.label for r in ev if r.preset is None]
    if missing:
        raise SizingError(f"runs without a VM preset in their manifest: {', '.join(missing)}")
    profiles = {r.profile for r in ev}
    if len(profiles) > 1:
        raise SizingError(
            f"runs of different profiles cannot be compared: {sorted(map(str, profiles))}"
        )
    warnings: list[str] = []
    if len({r.preset for r in ev}) < 2:
        warnings.append("all runs use the same preset: this compares repeats, not sizes")
    warnings += setup_differences(ev)
    ps = resolve_price_set(price_set)
    ordered = sorted(ev, key=lambda r: (r.preset.memory_mb, r.preset.cpus, r.label), reverse=True)
    base = ordered[0]
    base_cost = monthly_cost(base.preset, 1, region, price_set=ps.name)
    rows = []
    for r in ordered:
        lim = float(r.preset.memory_mb)
        cost = monthly_cost(r.preset, 1, region, price_set=ps.name)
        rows.append(
            {
                "run": r.label,
                "profile": r.profile,
                "preset": r.preset.name,
                "memory_limit_mb": lim,
                "peak_memory_mb": _r(r.peak_mb),
                "p95_memory_mb": _r(r.p95_memory_mb),
                "headroom_mb": _r(lim - r.peak_mb),
                "headroom_pct": _r((lim - r.peak_mb) / lim * 100),
                "peak_over_limit_pct": _r(r.peak_mb / lim * 100),
                "required_mb": _r(r.peak_mb * BUFFER),
                "fits_with_buffer": bool(r.peak_mb * BUFFER <= lim),
                "oom_kills": r.oom_count,
                "restarts": r.restarts,
                "p95_latency_ms": _r(r.p95_ms),
                "error_rate": _r(r.error_rate, 5) if r.error_rate is not None else None,
                "req_rate": _r(r.req_rate, 3),
                "exit_status": r.exit_status,
                "monthly_cost_usd": cost,
                "saving_vs_baseline_usd": round(base_cost - cost, 2),
                "saving_vs_baseline_pct": _r((base_cost - cost) / base_cost * 100),
            }
        )
    table = pd.DataFrame(rows)
    lat: dict[str, Any] = {}
    for r in ordered[1:]:
        if latency and base.run is not None and r.run is not None:
            lat[r.label] = compare_latency(base.run, r.run)
        else:
            lat[r.label] = {"available": False, "reason": "no run directories"}
    rec = recommend(
        ev,
        region=region,
        price_set=ps.name,
        current=current or base.preset.name,
        latency_check=latency,
        latency=lat,
    )
    warnings = rec.warnings + warnings  # partial-run caveats first
    return PresetComparison(table, base.label, lat, rec, ps.name, region, warnings)


#: Manifest settings that must match for two runs' figures to be comparable.
_SETUP_KEYS: tuple[tuple[str, str], ...] = (
    ("time scale", "time_scale"),
    ("upstream profile", "upstreams"),
    ("k6 version", "versions.k6"),
    ("load-profile stages", "stages"),
)


def _manifest_value(run: RunEvidence, dotted: str) -> Any:
    value: Any = run.run.manifest if run.run is not None else {}
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    if dotted == "stages" and value:  # the shape, not incidental keys
        return tuple((s.get("start_s"), s.get("duration_s"), s.get("target")) for s in value)
    return value


def setup_differences(runs: Sequence[RunEvidence]) -> list[str]:
    """One warning per manifest setting that differs between runs (time scale, upstream
    profile, k6 version, stages): a difference in latency or memory may come from it, not
    from the preset."""
    out = []
    for what, key in _SETUP_KEYS:
        values = {r.label: _manifest_value(r, key) for r in runs if r.run is not None}
        if len({json.dumps(v, default=str, sort_keys=True) for v in values.values()}) > 1:
            shown = (
                "differ"
                if key == "stages"
                else ", ".join(
                    f"{label}: {v if v is not None else 'unknown'}" for label, v in values.items()
                )
            )
            out.append(
                f"the runs differ in {what} ({shown}): differences in the figures may come "
                "from that, not from the preset"
            )
    return out


# ----------------------------------------------------------------- CLI


def _print_recommendation(rec: Recommendation) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 120))
    for w in rec.warnings:
        con.print(f"warning: {w}", style="bold yellow", highlight=False, markup=False)
    title = "Right-sizing recommendation" + (" (FROM A PARTIAL RUN)" if rec.partial else "")
    t = Table(title=title, show_header=False)
    t.add_row("recommended", rec.headline)
    t.add_row(
        "monthly cost", f"${rec.monthly_cost_usd:.2f}" if rec.monthly_cost_usd is not None else "–"
    )
    t.add_row("current", f"{rec.current_preset} (${rec.current_monthly_cost_usd:.2f}/30 d)")
    if rec.monthly_savings_usd is not None:
        t.add_row(
            "saving" if rec.monthly_savings_usd >= 0 else "extra cost",
            f"${abs(rec.monthly_savings_usd):.2f}/30 d",
        )
    t.add_row("price set", f"{rec.price_set} ({rec.region})")
    if rec.second_opinion:
        so = rec.second_opinion
        t.add_row(
            "VPA-style", f"{so.target_mb:.0f} MB → {so.preset} (confidence {so.confidence:.4f})"
        )
    if rec.pool:
        t.add_row("DB pool", f"{rec.pool.connections} connections")
    if rec.guide_option_1:
        t.add_row("guide: 512 MB?", guide_option_1_line(rec.guide_option_1))
    con.print(t)
    for r in rec.reasons:
        con.print(f"• {r}", highlight=False, markup=False)
    if rec.next_steps:
        con.print("Next steps:", style="bold")
        for i, step in enumerate(rec.next_steps, 1):
            con.print(f"{i}. {step}", highlight=False, markup=False)
    if rec.second_opinion:
        con.print(rec.second_opinion.caveat, style="yellow", highlight=False)


def guide_option_1_line(opt: Mapping[str, Any]) -> str:
    """One line for humans: the guide's Option 1 verdict, its criteria and the saving."""
    crit = "; ".join(f"{c['criterion']}: {c['status']}" for c in opt["criteria"])
    return (
        f"{opt['preset']}: {opt['verdict']} ({crit}); ${opt['monthly_cost_usd']:.2f}/30 d, "
        f"saves ${opt['monthly_savings_usd']:.2f} vs current"
    )


def cli_recommend(args: argparse.Namespace) -> int:
    """``perflib recommend``: 0 ok, 2 bad input (message on stderr)."""
    run_dirs = list(getattr(args, "run_dirs", None) or [])
    samples = getattr(args, "samples", None)
    events = getattr(args, "events", None)
    if not run_dirs and not samples:
        raise SizingError("give RUN_DIR... or --samples FILE.csv")
    if events and not samples:
        raise SizingError("--events needs --samples")
    try:
        rec = recommend(
            run_dirs or None,
            samples=samples,
            events=events,
            current=getattr(args, "current", None),
            region=getattr(args, "region", "iad") or "iad",
            instances=getattr(args, "instances", 1) or 1,
            ha=bool(getattr(args, "ha", False)),
            price_set=getattr(args, "price_set", None),
            monthly_requests=getattr(args, "monthly_requests", None),
        )
    except PricingError as exc:  # SizingError (a PerflibError): the CLI prints it, exit 2
        print(f"perflib recommend: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        for w in rec.warnings:  # the JSON carries them too; stderr so a person sees them
            print(f"warning: {w}", file=sys.stderr)
        print(rec.to_json())
    else:
        _print_recommendation(rec)
    return 0


def cli_compare(args: argparse.Namespace) -> int:
    """``perflib compare RUN_DIR...``: 0 ok, 2 bad input."""
    try:
        comp = compare_presets(
            args.run_dirs,
            region=getattr(args, "region", "iad") or "iad",
            price_set=getattr(args, "price_set", None),
        )
    except PricingError as exc:  # SizingError (a PerflibError): the CLI prints it, exit 2
        print(f"perflib compare: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        for w in comp.warnings:  # the JSON carries them too; stderr so a person sees them
            print(f"warning: {w}", file=sys.stderr)
        print(comp.to_json())
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(Console().width, 120))
    for w in comp.warnings:
        con.print(f"warning: {w}", style="bold yellow", highlight=False, markup=False)
    t = Table(title=f"Preset comparison ({comp.price_set}, {comp.region})")
    cols = {
        "preset": "preset",
        "peak_memory_mb": "peak MB",
        "p95_memory_mb": "p95 MB",
        "headroom_pct": "headroom %",
        "oom_kills": "OOM",
        "p95_latency_ms": "p95 ms",
        "error_rate": "errors",
        "monthly_cost_usd": "$/30 d",
        "saving_vs_baseline_usd": "saving $",
    }
    for header in cols.values():
        t.add_column(header)
    for row in comp.table.to_dict("records"):
        t.add_row(*["–" if row[c] is None else str(row[c]) for c in cols])
    con.print(t)
    for label, res in comp.latency.items():
        verdict = "; ".join(res.get("verdicts", [])) or str(res.get("reason", ""))
        con.print(f"latency {comp.baseline} → {label}: {verdict}", highlight=False)
    for reason in comp.recommendation.reasons:
        con.print(f"• {reason}", highlight=False, markup=False)
    rec = comp.recommendation
    cost = f"${rec.monthly_cost_usd:.2f}/30 d" if rec.monthly_cost_usd is not None else "–"
    con.print(f"recommended: {rec.headline} ({cost})", highlight=False, markup=False)
    if rec.guide_option_1:
        con.print(f"guide Option 1: {guide_option_1_line(rec.guide_option_1)}", highlight=False)
    return 0


__all__ = [
    "Capacity",
    "PoolAdvice",
    "PresetComparison",
    "Recommendation",
    "RunEvidence",
    "SecondOpinion",
    "SizingError",
    "capacity",
    "cli_compare",
    "cli_recommend",
    "compare_presets",
    "evidence_from_run",
    "evidence_from_samples",
    "pool_advice",
    "pool_size",
    "recommend",
    "second_opinion",
    "vpa_bucket_end_mb",
    "vpa_target_mb",
    "SECONDS_PER_MONTH",
    "cost_breakdown",
    "load_prices",
    "monthly_cost",
    "monthly_egress_gb",
]
