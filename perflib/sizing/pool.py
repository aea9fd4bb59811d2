"""Database Connection Pool Tuning (docs/guide.md): pool size from the enrichment request rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from perflib.sizing.capacity import (
    ENRICHMENT_ENDPOINT,
)
from perflib.sizing.evidence import (
    RunEvidence,
)
from perflib.sizing.guide import (
    POOL_MB_PER_CONNECTION,
    SERVICE_POOL_DEFAULT,
    G,
    SizingError,
)

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
    if ev.analysis is None or ev.run is None or not ev.run.k6_outputs:
        return None
    req = ev.analysis.requests
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
