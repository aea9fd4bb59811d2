"""A second opinion beside the guide's rules: the Kubernetes VPA recommender (kubernetes/autoscaler
``vertical-pod-autoscaler``: p90 of per-interval memory peaks in 5 %-wide histogram buckets,
+15 % margin, OOM bump max(+100 MiB, x1.2), confidence = min(lifespan days, samples/1440)),
krr (max x 1.15) and AWS Compute Optimizer (p99.5 of 5-minute maxima + 20 %)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from perflib.cost import (
    monthly_cost,
)
from perflib.sizing.evidence import (
    RunEvidence,
)
from perflib.sizing.guide import (
    MIB,
)
from perflib.sizing.rules import (
    _cheapest,
)
from perflib.stats import percentile

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


# ----------------------------------------------------------------- VPA second opinion


def vpa_oom_bump_mb(used_mb: float) -> float:
    """The memory VPA records for an OOM at ``used_mb``: max(used + 100 MiB, used × 1.2)
    (``pkg/recommender/model/container.go`` ``RecordOOM``)."""
    return max(used_mb + VPA_OOM_MIN_BUMP_MB, used_mb * VPA_OOM_BUMP_RATIO)


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
            bump = vpa_oom_bump_mb(used)
            oom_bump = max(oom_bump or 0.0, bump)
            peaks.extend([bump] * r.oom_count)
    p90 = percentile(peaks, 90)
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
    aws = percentile(aws_peaks, AWS_PERCENTILE) * (1 + AWS_HEADROOM)
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
