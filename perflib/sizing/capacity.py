"""Capacity of a stress run: the highest hold-stage rate within the SLOs, and its price."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perflib.analysis.slo import SloError, default_slos, load_slos
from perflib.cost import (
    cost_per_million_requests,
    monthly_cost,
)
from perflib.fly.presets import Preset, parse_preset
from perflib.rundir import RunDir, jsonable, utc_timestamp
from perflib.sizing.evidence import (
    RunEvidence,
    evidence_from_run,
)
from perflib.sizing.guide import (
    SizingError,
    _r,
)
from perflib.sizing.rules import (
    LatencyAttribution,
)
from perflib.stats import percentile

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

    enrichment_p95_ms: float  #: enrichment_p95 — guide: full enrichment flow < 5 s
    health_p95_ms: float  #: health_p95 — guide: health check < 50 ms
    error_rate: float  #: error_rate — guide: error rate target < 1 % (fraction here)
    scale_up_p95_ms: float  #: scale_up_p95 — guide: "When to scale up: p95 > 3s"
    source: str


def capacity_limits(slo_file: str | Path | None = None) -> CapacityLimits:
    """The capacity limits from an SLO file (default ``data/slo.toml``); ids
    ``enrichment_p95``, ``health_p95``, ``error_rate`` (%), ``scale_up_p95`` — an id the file
    lacks takes the shipped file's target."""
    try:
        slos = load_slos(slo_file)
    except SloError as exc:
        raise SizingError(str(exc)) from exc
    base = default_slos()
    values: dict[str, float] = {}
    for sid, key, scale in (
        ("enrichment_p95", "enrichment_p95_ms", 1.0),
        ("health_p95", "health_p95_ms", 1.0),
        ("error_rate", "error_rate", 0.01),
        ("scale_up_p95", "scale_up_p95_ms", 1.0),
    ):
        src = slos if any(x.id == sid for x in slos.slo) else base
        values[key] = float(src.resolved_target(src.get(sid))) * scale
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
    """:func:`perflib.rundir.jsonable`, floats rounded to 3 decimals (a table cell)."""
    v = jsonable(v)
    return _r(v, 3) if isinstance(v, float) else v


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
    lim = limits or capacity_limits()
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
                "enrichment_p95_ms": percentile(enr_d, 95),
                # unfinished requests enter at a lower bound: then so is the p95
                "enrichment_p95_lower_bound": bool(
                    unfinished and percentile(enr_d, 95) >= censored
                ),
                "enrichment_late": late,
                "enrichment_unfinished": unfinished,
                "health_requests": int(hl.sum()),
                "health_p95_ms": percentile(dur[hl], 95),
                "p95_ms": percentile(
                    np.concatenate([dur[in_win], np.full(unfinished, censored)]), 95
                ),
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
    return _judge_stages(pd.DataFrame(rows, columns=cols), lim)


def _judge_stages(df: pd.DataFrame, lim: CapacityLimits) -> pd.DataFrame:
    """Add to the stage table which SLO checks each stage fails (``fails``, ``within_slo``)
    and which the guide-limits fallback fails (``guide_fails``, ``within_guide_limits``)."""
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


def _highest(table: pd.DataFrame, col: str) -> tuple[float, str | None]:
    """The highest offered rate (and its stage) of the contiguous run of stages, from the
    lightest, that pass ``col``: a stage above one that failed does not count."""
    rate, stage = 0.0, None
    for _, row in table.iterrows():
        if not row[col]:
            break
        rate, stage = float(row["offered_rps"]), str(row["stage"])
    return rate, stage


def _capacity_note(
    table: pd.DataFrame,
    best_stage: str | None,
    first: pd.Series | None,
    lightest: pd.Series | None,
    upstream_bound: bool,
    lim: CapacityLimits,
) -> str:
    """What the capacity figure rests on, or why there is none."""
    if best_stage is None:
        why = f"{first['stage']}: {first['fails']}" if first is not None else "no hold stage"
        return f"no hold stage meets every SLO ({why})" + (
            f"; the enrichment p95 exceeds {lim.enrichment_p95_ms:.0f} ms even at "
            f"{lightest['stage']} while the rest passes there: upstream-bound"
            if upstream_bound and lightest is not None
            else ""
        )
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
    return note


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
    t0 = utc_timestamp(m.get("k6_started_at"))
    if t0 is None:
        raise SizingError(f"{ev.label}: manifest.json has no valid k6_started_at")
    if requests is None:
        if not rd.k6_outputs:
            raise SizingError(f"{ev.label}: no k6 NDJSON output in the run directory")
        if ev.analysis is None:
            raise SizingError(f"{ev.label}: capacity needs the run's analysis (its k6 requests)")
        requests = ev.analysis.requests
        if dropped is None:
            pts = ev.analysis.points
            dropped = pts.loc[pts["metric"] == "dropped_iterations", ["time", "value"]]
    if requests.dropna(subset=["time", "duration_ms"]).empty:
        raise SizingError(f"{ev.label}: no HTTP requests in the k6 output")
    lim = limits or capacity_limits(slo_file)
    table = capacity_stages(
        requests,
        stages,
        t0,
        k6_ended_at=utc_timestamp(m.get("k6_ended_at")),
        dropped=dropped,
        limits=lim,
        warmup_fraction=warmup_fraction,
        requests_per_iteration=requests_per_iteration,
    )
    table = table.sort_values("target_iters_per_s", kind="stable").reset_index(drop=True)
    best, best_stage = _highest(table, "within_slo")
    guide, guide_stage = _highest(table, "within_guide_limits")
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
    note = _capacity_note(table, best_stage, first, lightest, upstream_bound, lim)
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
