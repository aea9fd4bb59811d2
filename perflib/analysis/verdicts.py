"""SLO verdicts: each objective of the SLO file measured on a :class:`RunAnalysis` and judged."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perflib.analysis.resources import cpu_span_s
from perflib.analysis.slo import (
    Slo,
    SloFile,
    judge,
    percentile_of,
)
from perflib.stats import (
    percentile,
    percentile_ci,
    spans_above,
)

if TYPE_CHECKING:
    from perflib.analysis.run import RunAnalysis

from perflib.analysis.latency import (
    _select,
    assign_stage,
    error_rate,
)

# --------------------------------------------------------------------------- SLO verdicts


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit in ("ms", "s", "MB", "req/s", "MB/min"):
        return f"{v:,.1f} {unit}" if abs(v) < 100 else f"{v:,.0f} {unit}"
    if unit == "%":
        return f"{v:.2f} %"
    return f"{v:g} {unit}".strip()


def _measure_requests(a: RunAnalysis, slo: Slo, slos: SloFile) -> tuple[float | None, str]:
    """Latency, error rate or throughput of the requests the SLO selects."""
    kind = slo.kind
    req = _select(a.requests, slo.endpoint)
    if slo.stages and len(req) and a.k6_start is not None:
        t = (req["time"] - a.k6_start).dt.total_seconds()
        st = a.stages
        # an SLO names stages by the script's name ("steady") or by their load label
        picked = st.loc[st["stage"].isin(slo.stages) | st["stage_name"].isin(slo.stages), "stage"]
        req = req[assign_stage(t, st).isin(list(picked)).to_numpy()]
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


def _measure_step(a: RunAnalysis, slo: Slo, slos: SloFile) -> tuple[float | None, str]:
    """A percentile (or avg / max) of the service's Step N timings."""
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


def _measure_resources(a: RunAnalysis, slo: Slo, slos: SloFile) -> tuple[float | None, str]:
    """Memory, sustained memory, OOM kills, CPU and sustained CPU (spans: perflib.stats)."""
    kind = slo.kind
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
        total = float(sp["span_s"].sum()) if len(sp) else 0.0
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
        longest = cpu_span_s(
            tl["time"],
            tl["cpu_pct"],
            float(slo.threshold),
            cpus=c.cpus,
            full_pct=slos.settings.cpu_full_pct,
            max_gap_s=slos.settings.max_gap_s,
        )
        advice = (
            " → dedicated (performance) CPU advised" if longest >= slos.resolved_target(slo) else ""
        )
        return longest, f"longest span above {slo.threshold:g} % CPU: {longest:.0f} s{advice}"
    return None, f"unknown kind {kind}"  # pragma: no cover (validated by pydantic)


def _measure_run(a: RunAnalysis, slo: Slo, slos: SloFile) -> tuple[float | None, str]:
    """Run validity: dropped iterations (saturation) and the leak estimate."""
    kind = slo.kind
    m = a.memory
    if kind == "saturation":
        if len(a.requests) == 0 and len(a.points) == 0:
            return None, "no k6 output"
        return float(a.saturation.dropped_iterations), a.saturation.evidence
    if kind == "leak":
        if m.leak is None:
            return None, m.leak_note
        return m.leak.ci_low, m.leak.evidence
    return None, f"unknown kind {kind}"  # pragma: no cover (validated by pydantic)


_MEASURES = {
    "latency": _measure_requests,
    "error_rate": _measure_requests,
    "throughput": _measure_requests,
    "step_latency": _measure_step,
    "memory": _measure_resources,
    "memory_sustained": _measure_resources,
    "oom": _measure_resources,
    "cpu": _measure_resources,
    "cpu_sustained": _measure_resources,
    "saturation": _measure_run,
    "leak": _measure_run,
}


def _measure(a: RunAnalysis, slo: Slo, slos: SloFile) -> tuple[float | None, str]:
    """(measured value, evidence) of one SLO on one run."""
    return _MEASURES[slo.kind](a, slo, slos)


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
