"""The guide's sizing rules (docs/guide.md), each applied exactly and cited in its reason."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from perflib.analysis import STEP_ADVICE, RunAnalysis, compare_runs
from perflib.cost import (
    SECONDS_PER_MONTH,
    machine_price,
    monthly_cost,
    monthly_egress_gb,
)
from perflib.fly.presets import Preset, PricingError, all_presets, parse_preset
from perflib.rundir import RunDir, jsonable
from perflib.sizing.evidence import (
    RunEvidence,
)
from perflib.sizing.guide import (
    BUFFER,
    GUIDE_OPTION_1_MB,
    GUIDE_PRODUCTION_H,
    UPSTREAM_STEPS,
    G,
    Limits,
    SizingError,
    _r,
)
from perflib.stats import percentile

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


def rule_512(load_peak_mb: float, limits: Limits | None = None) -> RuleResult:
    """Option 1: 512 MB only when the load-test peak is below ``memory_512_safe`` (400 MB)."""
    safe = (limits or Limits.from_slos()).safe_512_peak_mb
    ok = load_peak_mb < safe
    verdict = "allows" if ok else "rules out"
    cmp = "<" if ok else "≥"
    return RuleResult(
        "512mb_safe",
        not ok,
        f"{G}, Scaling Options, Option 1: load-test peak {load_peak_mb:.0f} MB {cmp} "
        f"{safe:.0f} MB → {verdict} {GUIDE_OPTION_1_MB} MB (and smaller)",
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
    present (the guide's "p95 latency"), else any endpoint; "slower" is the equivalence
    test's verdict: the whole 90 % CI beyond +margin (analysis.compare_runs)."""
    overall = _overall_rows(result)
    slower = [r for r in overall if r.get("change") == "slower"]
    if slower:
        return True, str(slower[0].get("verdict", "slower"))
    return False, "; ".join(str(r.get("verdict", "")) for r in overall) or "no latency rows"


def _overall_rows(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = result.get("latency") or []
    return [r for r in rows if r.get("name") == "(all)"] or rows


def latency_change(result: Mapping[str, Any]) -> str:
    """The equivalence verdict of a ``compare_runs`` digest's all-requests row (else the
    worst endpoint's): "slower", "inconclusive", "faster" or "unchanged"."""
    changes = {r.get("change") for r in _overall_rows(result)}
    for word in ("slower", "inconclusive", "faster", "unchanged"):
        if word in changes:
            return word
    return "inconclusive"


def rule_latency_unchanged(
    runs: Sequence[RunEvidence],
    latency: Mapping[str, Mapping[str, Any]] | None = None,
    verdicts: dict[str, tuple[bool, str, str]] | None = None,
    digests: dict[str, Mapping[str, Any]] | None = None,
) -> tuple[float, list[RuleResult]]:
    """Option 1: a smaller size is safe only if "p95 latency unchanged" against the largest
    size run with the same profile. Returns the largest memory ruled out and the results;
    ``verdicts`` (when given) gets run label → (slower, verdict, equivalence word) for each
    compared run and ``digests`` run label → the comparison digest (:func:`compare_latency`)."""
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
                res = compare_latency(_side(base), _side(r))
            if digests is not None:
                digests[r.label] = res
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
                verdicts[r.label] = (
                    slower,
                    f"{r.preset.name} vs {base.preset.name}: {verdict}",  # type: ignore[union-attr]
                    latency_change(res),
                )
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
    thr = run.limits.memory_mb
    span = run.longest_above("memory_used_mb", thr)
    win = run.sustain_window_s
    hit = span >= win
    return RuleResult(
        "memory_sustained",
        hit,
        f"{G}, VM Sizing Strategy (memory consistently > {thr:.0f} MB → scale up): {run.label} "
        f"above {thr:.0f} MB for {span:.0f} s "
        f"{'≥' if hit else '<'} {win:.0f} s" + (" → scale up" if hit else ""),
    )


def rule_p95(run: RunEvidence) -> RuleResult:
    if run.p95_ms is None:
        return RuleResult("p95", False, f"{G}: {run.label} has no k6 p95 (latency rule skipped)")
    lim = run.limits.p95_ms
    hit = run.p95_ms > lim
    return RuleResult(
        "p95",
        hit,
        f"{G}, VM Sizing Strategy (p95 latency > {lim / 1000:g} s → scale up): {run.label} p95 "
        f"{run.p95_ms:.0f} ms {'>' if hit else '≤'} {lim:.0f} ms" + (" → scale up" if hit else ""),
    )


def rule_cpu(run: RunEvidence) -> RuleResult:
    thr = run.limits.cpu_pct
    span = run.cpu_longest_above(thr)
    win = run.sustain_window_s
    hit = span >= win
    return RuleResult(
        "cpu_sustained",
        hit,
        f"{G}, Scaling Options, Option 3 (CPU consistently > {thr:.0f} % → dedicated CPU): "
        f"{run.label} above {thr:.0f} % for {span:.0f} s "
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
    cpu_headroom_pct: float  # "far below" the dedicated-CPU threshold (Limits)

    @property
    def upstream(self) -> bool:
        return self.dominant_step in UPSTREAM_STEPS

    @property
    def headroom(self) -> bool:
        """CPU far below 70 %, peak × 1.3 within the limit, no OOM kill."""
        return (
            self.cpu_p95_pct < self.cpu_headroom_pct
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
    """The analysis' step attribution of the run's service.log with the run's CPU and memory
    headroom; None without an analysed run directory or Step timings in its log."""
    if run.analysis is None or run.run is None:
        return None
    sa = run.analysis.step_attribution
    if sa.dominant_step is None:
        return None
    row = sa.per_step.loc[sa.per_step["step"] == sa.dominant_step].iloc[0]
    cpu = pd.to_numeric(run.samples["cpu_pct"], errors="coerce").dropna()
    cpus = run.preset.cpus if run.preset is not None else 1
    cpu_p95 = percentile(cpu / cpus, 95)
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
        cpu_headroom_pct=run.limits.cpu_headroom_pct,
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
            f"below {run.limits.cpu_pct:.0f} % (p95 < {att.cpu_headroom_pct:.0f} %) and peak × "
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
    latency_verdicts: Mapping[str, tuple[bool, str, str]],
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
    safe = runs[0].limits.safe_512_peak_mb if runs else Limits.from_slos().safe_512_peak_mb
    peak_ok = load_peak_mb < safe
    criteria = [
        {
            "criterion": f"Peak memory <{safe:.0f} MB during load tests",
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
    elif any(slower for slower, _, _ in lat):
        lat_status = ("not met", "; ".join(v for slower, v, _ in lat if slower))
    elif all(word in ("unchanged", "faster") for _, _, word in lat):
        lat_status = ("met", "; ".join(v for _, v, _ in lat))
    else:  # the interval crosses the margin: "unchanged" is not shown (equivalence test)
        lat_status = ("unverified", "; ".join(v for _, v, _ in lat))
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
    from perflib.cost import egress_usd_per_gb

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


def compare_latency(baseline: RunAnalysis | RunDir, other: RunAnalysis | RunDir) -> dict[str, Any]:
    """Δp95 with a bootstrap CI + Mann–Whitney (:func:`perflib.analysis.compare_runs`) on the
    runs' analyses; "not available" with the reason when a side has no k6 requests."""
    for side in (baseline, other):
        if isinstance(side, RunAnalysis) and side.requests.empty:
            return {"available": False, "reason": f"{side.run.name}: no k6 requests to compare"}
    labels = (_label(baseline), _label(other))
    if labels[0] == labels[1]:  # two runs of one preset: their names tell them apart
        labels = (_label(baseline, name=True), _label(other, name=True))
    return comparison_summary(compare_runs(baseline, other, labels=labels))


def _label(side: RunAnalysis | RunDir, *, name: bool = False) -> str:
    """What a comparison calls a run: its preset (else its directory's name)."""
    run = side.run if isinstance(side, RunAnalysis) else side
    preset = (run.manifest.get("vm") or {}).get("preset")
    return str(run.name if name or not preset else preset)


def _side(ev: RunEvidence) -> RunAnalysis | RunDir:
    """What a latency comparison reads for a run: its analysis (else its directory)."""
    if ev.analysis is not None:
        return ev.analysis
    if ev.run is None:
        raise SizingError(f"{ev.label}: a latency comparison needs a run directory")
    return ev.run


def comparison_summary(res: Any) -> dict[str, Any]:
    """JSON-able digest of an analysis ``Comparison`` (tables as records, no raw samples)."""
    if isinstance(getattr(res, "latency", None), pd.DataFrame):
        out: dict[str, Any] = {"available": True, "object": res}
        for key in ("unit", "percentile", "confidence", "factor", "labels"):
            out[key] = getattr(res, key, None)
        out["verdicts"] = list(getattr(res, "verdicts", []))
        out["changed"] = bool(getattr(res, "changed", False))
        out["throttling_differs"] = bool(getattr(res, "throttling_differs", False))
        out["throttling_note"] = str(getattr(res, "throttling_note", ""))
        out["confounded"] = list(getattr(res, "confounded", []))
        out["unthrottled_window_s"] = getattr(res, "unthrottled_window_s", None)
        for key in ("latency", "errors", "memory", "throttling", "unthrottled"):
            tab = getattr(res, key, None)
            if isinstance(tab, pd.DataFrame):
                out[key] = json.loads(tab.to_json(orient="records", default_handler=str))
        return out
    out2 = jsonable(res)
    if isinstance(out2, dict):
        out2.setdefault("available", True)
        return out2
    return {"available": True, "result": out2}
