"""The recommendation: the cheapest preset every rule allows, with its cost and reasons."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perflib.cost import (
    PriceSet,
    machine_price,
    monthly_cost,
    resolve_price_set,
)
from perflib.fly.presets import Preset, PricingError, parse_preset
from perflib.sizing.capacity import (
    Capacity,
    _capacity_reason,
    capacity,
)
from perflib.sizing.censored import BASIS_PEAK, censored_need
from perflib.sizing.decision import Decision, build_decision
from perflib.sizing.evidence import (
    RunEvidence,
    _as_evidence,
    evidence_from_samples,
)
from perflib.sizing.guide import (
    BUFFER,
    DEFAULT_CURRENT,
    GUIDE_VM_MB,
    HA_INSTANCES,
    POOL_MB_PER_CONNECTION,
    SERVICE_POOL_DEFAULT,
    SMALL_PRESET_MB,
    G,
    SizingError,
    _r,
)
from perflib.sizing.pool import (
    PoolAdvice,
    _pool_from_runs,
)
from perflib.sizing.rules import (
    LatencyAttribution,
    RuleResult,
    _cheapest,
    egress_estimate,
    guide_option_1,
    latency_attribution,
    rule_512,
    rule_buffer,
    rule_cpu,
    rule_latency_unchanged,
    rule_memory_sustained,
    rule_oom,
    rule_p95,
    rule_p95_upstream,
)
from perflib.sizing.second_opinion import (
    SecondOpinion,
    second_opinion,
)
from perflib.sizing.shared_cpu import shared_cpu_advice


@dataclass
class Recommendation:
    """The recommender's answer; ``to_json()`` has docs/contracts.md's keys first."""

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
    peak_censored: bool = False  # every sizing run was OOM-killed: the peak is a lower bound
    memory_basis: str = BASIS_PEAK  # how required_memory_mb was sized (sizing.censored)
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
    decision: Decision | None = None  # tested presets side by side (sizing.decision)
    latency_attribution: list[LatencyAttribution] = field(default_factory=list)
    partial_runs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # partial-run caveats first
    #: when the measured mean CPU exceeds the pick's shared baseline: time to exhaust the
    #: burst balance, the next shared size and performance-1x with prices (else None)
    shared_cpu: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        """True when any run behind it did not run its whole profile."""
        return bool(self.partial_runs)

    @property
    def recommended_tested(self) -> bool:
        """Was the rules' cheapest size itself run? (If not, it is only worth testing.)"""
        if self.decision is None or self.recommended_preset is None:
            return False
        return any(t.preset == self.recommended_preset for t in self.decision.tested)

    @property
    def cheapest_tested_passing(self) -> dict[str, Any] | None:
        """The headline: the cheapest preset a run was made at that passes (sizing.decision)."""
        pick = self.decision.pick if self.decision else None
        if pick is None:
            return None
        return {
            "preset": pick.preset,
            "memory_mb": pick.memory_mb,
            "monthly_cost_usd": pick.monthly_cost_usd,
            "monthly_savings_usd": pick.saving_usd,
            "price_set": self.price_set,
            "sentence": self.decision.sentence if self.decision else None,
        }

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
            "recommended_tested": self.recommended_tested,
            "cheapest_tested_passing": self.cheapest_tested_passing,
            "current_monthly_cost_usd": self.current_monthly_cost_usd,
            "instances": self.instances,
            "region": self.region,
            "price_set": self.price_set,
            "cpu_kind": self.cpu_kind,
            "peak_memory_mb": _r(self.peak_memory_mb),
            "required_memory_mb": _r(self.required_memory_mb),
            "peak_censored": self.peak_censored,
            "memory_basis": self.memory_basis,
            "rules": [asdict(r) for r in self.rules],
            "second_opinion": self.second_opinion.to_dict() if self.second_opinion else None,
            "pool_size": asdict(self.pool) if self.pool else None,
            "capacity": [c.to_dict() for c in self.capacity],
            "confidence": self.confidence,
            "next_steps": list(self.next_steps),
            "runs": list(self.runs),
            "egress": self.egress,
            "guide_option_1": self.guide_option_1,
            "decision": self.decision.to_dict() if self.decision else None,
            "latency_attribution": [a.to_dict() for a in self.latency_attribution],
            "partial": self.partial,
            "partial_runs": list(self.partial_runs),
            "shared_cpu": self.shared_cpu,
            "headline": self.headline,
            "warnings": list(self.warnings),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


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
    ev, ps, region, cur = _inputs(runs, samples, events, current, region, instances, price_set)
    reasons: list[str] = []
    rules: list[RuleResult] = []
    mem = _memory_rules(ev, rules, reasons, latency_check, latency)
    scale = _scale_up_rules(ev, mem, cur, rules, reasons)
    n_inst = max(instances, HA_INSTANCES) if ha else instances
    pick = _cheapest(lambda p: not _why_not(p, mem, scale), region, ps.name)
    cur_cost = monthly_cost(cur, 1, region, price_set=ps.name)
    rec_cost, savings = _pick_reasons(
        pick, cur, cur_cost, instances, n_inst, ha, region, ps, reasons
    )
    shared = shared_cpu_advice(ev, pick, region, ps.name)
    if shared is not None:
        reasons.append(shared["reason"])
    pool = _pool_from_runs(mem.sizing_runs, current_pool)
    pool_note = _pool_reason(pool, current_pool, mem.peak, pick, reasons)
    egress = egress_estimate(mem.sizing_runs, region, monthly_requests)
    if egress and monthly_requests and rec_cost is not None:
        rec_cost = round(rec_cost + egress["monthly_usd"], 2)
        savings = round(cur_cost * instances + egress["monthly_usd"] - rec_cost, 2)
        reasons.append(
            f"Egress: {egress['bytes_per_request']:.0f} B/request (k6 data_received) × "
            f"{monthly_requests:,.0f} requests/30 d = {egress['monthly_gb']:.2f} GB → "
            f"${egress['monthly_usd']:.2f} at ${egress['usd_per_gb']}/GB ({region})"
        )
    cpu_kind = "performance" if scale.perf_needed else "shared"
    so = second_opinion(
        ev, cpu_kind=cpu_kind if scale.perf_needed else None, instances=n_inst,
        region=region, price_set=ps.name,
    )  # fmt: skip
    caps = _capacities(ev, region, ps.name, pick, reasons)
    opt1 = guide_option_1(
        mem.load_peak, ev, mem.lat_verdicts, mem.oom_mb, cur, instances, region, ps.name
    )
    partial = [r for r in ev if r.partial]
    confidence = _confidence(ev, partial, opt1, reasons)
    caveat_lines = [r.completeness.caveat for r in partial if r.completeness is not None]
    decision = build_decision(
        ev, current=cur, region=region, price_set=ps, instances=n_inst,
        why_not=lambda p: _why_not(p, mem, scale), rules_pick=pick, latency=mem.lat_digests,
        basis=mem.basis,
    )  # fmt: skip
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
        required_memory_mb=mem.required,
        peak_memory_mb=mem.peak,
        peak_censored=mem.peak_censored,
        memory_basis=mem.basis,
        cpu_kind=cpu_kind,
        rules=rules,
        second_opinion=so,
        pool=pool,
        capacity=caps,
        confidence=confidence,
        next_steps=_next_steps(ev, pick, cur, pool, pool_note, scale.upstream_bound),
        runs=[r.label for r in ev],
        egress=egress,
        guide_option_1=opt1,
        decision=decision,
        latency_attribution=scale.attributions,
        partial_runs=[r.label for r in partial],
        warnings=[c for c in caveat_lines if c] + [n for r in ev for n in r.notes],
        shared_cpu=shared,
    )


def _inputs(
    runs: Iterable[Any] | None,
    samples: str | Path | pd.DataFrame | None,
    events: str | Path | pd.DataFrame | None,
    current: str | None,
    region: str,
    instances: int,
    price_set: str | None,
) -> tuple[list[RunEvidence], PriceSet, str, Preset]:
    """The evidence, price set, region and current preset, each checked (SizingError)."""
    ev = _as_evidence(runs) if runs else []
    if samples is not None:
        ev.append(evidence_from_samples(samples, events))
    if not ev:
        raise SizingError("no evidence: pass run directories or a samples file")
    if instances < 1:
        raise SizingError(f"instances must be >= 1, got {instances}")
    run_presets = {r.preset for r in ev if r.preset is not None}
    try:
        ps = resolve_price_set(price_set)
        region = region.strip().lower()
        machine_price(DEFAULT_CURRENT, region, ps.name)  # validates the region
        if current:
            cur = parse_preset(current)
        elif len(run_presets) == 1:
            cur = next(iter(run_presets))
        else:
            cur = parse_preset(DEFAULT_CURRENT)
    except PricingError as exc:
        raise SizingError(str(exc)) from exc
    return ev, ps, region, cur


@dataclass
class _MemoryRules:
    """What the memory rules decided: the sizing runs and their peaks, the buffered memory,
    the sizes ruled out (strictly more memory than ``min_exclusive_mb``)."""

    sizing_runs: list[RunEvidence]
    n_sizing: int  # sizing runs before the OOM-killed ones were set aside
    peak: float
    load_peak: float
    required: float
    small_ruled_out: bool
    oom_mb: float
    min_exclusive_mb: float
    lat_verdicts: dict[str, tuple[bool, str, str]]
    basis: str  # how ``required`` was sized (sizing.censored: measured peak, next clean, VPA)
    peak_censored: bool  # every sizing run was OOM-killed: ``peak`` is a lower bound
    lat_digests: dict[str, Mapping[str, Any]]  # run label → compare_latency digest


def _memory_rules(
    ev: list[RunEvidence],
    rules: list[RuleResult],
    reasons: list[str],
    latency_check: bool,
    latency: Mapping[str, Mapping[str, Any]] | None,
) -> _MemoryRules:
    """The buffer, 512 MB, OOM and "p95 latency unchanged" rules."""
    # peaks: stress runs are for capacity, not for sizing (they push past the SLOs on purpose)
    sizing_runs = [r for r in ev if (r.profile or "") != "stress"] or ev
    n_sizing = len(sizing_runs)
    # an OOM-killed run's peak is censored by the kill (a lower bound on the need, never the
    # peak): the buffer applies to the runs that completed, the censored need (next tested
    # clean size or VPA's OOM bump, sizing.censored) to the killed ones
    completed = [r for r in sizing_runs if not r.oom_count]
    if completed and len(completed) < len(sizing_runs):
        reasons.append(
            "Peak memory taken from the runs without OOM kills ("
            + ", ".join(r.label for r in completed)
            + "): an OOM-killed run's peak is cut off at its limit"
        )
    censored = censored_need(ev)
    sizing_runs = completed or sizing_runs
    peak = max(r.peak_mb for r in sizing_runs)
    load_runs = [r for r in sizing_runs if (r.profile or "") == "load"] or sizing_runs
    load_peak = max(r.peak_mb for r in load_runs)
    if completed:
        required, why = rule_buffer(peak)
        found = [RuleResult("buffer", True, why)]
    else:  # every sizing run was killed: no measured peak to buffer
        required, found = 0.0, []
    basis = BASIS_PEAK
    if censored is not None and censored.need_mb > required:
        required, basis = censored.need_mb, censored.basis
        found.append(RuleResult("censored_peak", True, censored.reason))
    r512 = rule_512(load_peak, sizing_runs[0].limits)
    oom_mb, r_oom = rule_oom(ev)
    for rule in (*found, r512, r_oom):
        rules.append(rule)
        reasons.append(rule.reason)
    min_exclusive_mb = oom_mb  # presets must have strictly more memory than this
    lat_verdicts: dict[str, tuple[bool, str, str]] = {}
    lat_digests: dict[str, Mapping[str, Any]] = {}
    if latency_check:
        slow_mb, lat_rules = rule_latency_unchanged(ev, latency, lat_verdicts, lat_digests)
        rules.extend(lat_rules)
        reasons.extend(x.reason for x in lat_rules)
        min_exclusive_mb = max(min_exclusive_mb, slow_mb)
    return _MemoryRules(
        sizing_runs, n_sizing, peak, load_peak, required, r512.triggered, oom_mb,
        min_exclusive_mb, lat_verdicts, basis, not completed, lat_digests,
    )  # fmt: skip


@dataclass
class _ScaleUp:
    """What the guide's scale-up triggers decided."""

    perf_needed: bool = False
    not_larger_than: list[Preset] = field(default_factory=list)  # the pick must be larger
    attributions: list[LatencyAttribution] = field(default_factory=list)
    upstream_bound: list[LatencyAttribution] = field(default_factory=list)


def _scale_up_rules(
    ev: list[RunEvidence],
    mem: _MemoryRules,
    cur: Preset,
    rules: list[RuleResult],
    reasons: list[str],
) -> _ScaleUp:
    """Memory consistently above, p95 above the trigger (unless upstream-bound), CPU
    consistently above: per run; raises ``mem.min_exclusive_mb`` for the memory trigger."""
    out = _ScaleUp()
    for r in ev:
        m = rule_memory_sustained(r)
        rules.append(m)
        if m.triggered:
            reasons.append(m.reason)
            # the guide wrote this for its 1 GB VM: scale up = more than min(limit, 1 GB)
            lim = r.memory_limit_mb or r.peak_mb
            mem.min_exclusive_mb = max(mem.min_exclusive_mb, min(lim, GUIDE_VM_MB))
        p = rule_p95(r)
        if p.triggered and (r.profile or "") == "stress" and mem.n_sizing < len(ev):
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
                out.attributions.append(att)
            up = rule_p95_upstream(r, att)
            rules.append(up)
            reasons.append(up.reason)
            if up.triggered and att is not None:
                out.upstream_bound.append(att)
            else:
                out.not_larger_than.append(r.preset or cur)
        rules.append(c)
        if c.triggered:
            reasons.append(c.reason)
            out.perf_needed = True
    quiet = [x for x in rules if x.rule in ("memory_sustained", "p95", "cpu_sustained")]
    if not any(x.triggered for x in quiet):
        reasons.append(_no_trigger_reason(ev))
    return out


def _no_trigger_reason(ev: list[RunEvidence]) -> str:
    lim = ev[0].limits
    worst_mem = max(r.longest_above("memory_used_mb", r.limits.memory_mb) for r in ev)
    worst_cpu = max(r.cpu_longest_above(r.limits.cpu_pct) for r in ev)
    p95s = [r.p95_ms for r in ev if r.p95_ms is not None]
    return (
        f"{G}, VM Sizing Strategy: no scale-up trigger — memory > {lim.memory_mb:.0f} MB "
        f"for at most {worst_mem:.0f} s, CPU > {lim.cpu_pct:.0f} % for at most "
        f"{worst_cpu:.0f} s"
        + (f", p95 at most {max(p95s):.0f} ms ≤ {lim.p95_ms:.0f} ms" if p95s else "")
    )


def _why_not(p: Preset, mem: _MemoryRules, scale: _ScaleUp) -> list[str]:
    """The rules preset ``p`` breaks (empty: every rule allows it)."""
    out = []
    if p.memory_mb < mem.required:
        out.append(f"needs {mem.required:.0f} MB ({mem.basis} × {BUFFER})")
    if p.memory_mb <= mem.min_exclusive_mb:
        out.append(f"OOM / latency rules rule out ≤ {mem.min_exclusive_mb:.0f} MB")
    if mem.small_ruled_out and p.memory_mb <= SMALL_PRESET_MB:
        out.append(f"load-test peak ≥ the 512 MB rule's limit: ≤ {SMALL_PRESET_MB} MB ruled out")
    if scale.perf_needed and p.cpu_kind != "performance":
        out.append("CPU consistently high: performance CPU needed")
    bigger = [q.name for q in scale.not_larger_than if not p.is_larger_than(q)]
    if bigger:
        out.append(f"p95 above the scale-up trigger at {', '.join(bigger)}: a larger size needed")
    return out


def _pick_reasons(
    pick: Preset | None,
    cur: Preset,
    cur_cost: float,
    instances: int,
    n_inst: int,
    ha: bool,
    region: str,
    ps: PriceSet,
    reasons: list[str],
) -> tuple[float | None, float | None]:
    """The pick's cost and the savings against the current preset, with their reasons."""
    if pick is None:
        reasons.append("No Fly preset satisfies every rule: the largest is too small")
        return None, None
    unit = machine_price(pick, region, ps.name)
    rec_cost = monthly_cost(pick, n_inst, region, price_set=ps.name)
    savings = round(cur_cost * instances - rec_cost, 2)
    reasons.append(
        f"Cheapest preset satisfying every rule: {pick.name} at ${unit:.2f}"
        f"/30 d ({region}, price set {ps.name}{', reported' if ps.status != 'confirmed' else ''})"
    )
    if ha:
        reasons.append(
            f"{G}, Scaling Options, Option 2 (high availability): {n_inst} instances → "
            f"{n_inst} × ${unit:.2f} = ${rec_cost:.2f}/30 d "
            '("Costs: 2x the resources")'
        )
    if pick.memory_mb < SMALL_PRESET_MB:
        reasons.append(
            f"Caution: {pick.memory_mb} MB is the size users most often report OOM kills "
            "at while installing or booting Python apps (docs/guide.md#fly-oom-evidence); the "
            "load test only covers what it exercised"
        )
    verb = "saves" if savings >= 0 else "costs"
    reasons.append(
        f"Current {cur.name} × {instances} = ${cur_cost * instances:.2f}/30 d → "
        f"{pick.name} × {n_inst} {verb} ${abs(savings):.2f}/30 d"
    )
    return rec_cost, savings


def _pool_reason(
    pool: PoolAdvice | None, current_pool: int, peak: float, pick: Preset | None, reasons: list[str]
) -> str | None:
    """The pool advice's reason, and a warning when a bigger pool would not fit the pick."""
    if not pool:
        return None
    reasons.append(pool.reason)
    extra_hi = (pool.connections - current_pool) * POOL_MB_PER_CONNECTION[1]
    need = (peak + extra_hi) * BUFFER
    if pick is None or extra_hi <= 0 or need <= pick.memory_mb:
        return None
    note = (
        f"{G}, Database Connection Pool Tuning + Optimization Checklist: a pool of "
        f"{pool.connections} instead of {current_pool} adds up to {extra_hi:.0f} MB that "
        f"the measured peak does not include: ({peak:.0f} + {extra_hi:.0f}) × {BUFFER} = "
        f"{need:.0f} MB > {pick.memory_mb} MB of {pick.name} → do not change both at "
        f"once: re-run the load test with DB_POOL_SIZE={pool.connections} first"
    )
    reasons.append(note)
    return note


def _capacities(
    ev: list[RunEvidence], region: str, price_set: str, pick: Preset | None, reasons: list[str]
) -> list[Capacity]:
    """Capacity of every stress run (a run it cannot be computed for says why)."""
    caps: list[Capacity] = []
    for r in ev:
        if (r.profile or "") == "stress" and r.run is not None:
            try:
                cap = capacity(r, region=region, price_set=price_set, recommended=pick)
            except SizingError as exc:
                reasons.append(f"Capacity of {r.label} not computed: {exc}")
                continue
            caps.append(cap)
            reasons.append(_capacity_reason(cap, latency_attribution(r)))
    return caps


def _confidence(
    ev: list[RunEvidence], partial: list[RunEvidence], opt1: dict[str, Any], reasons: list[str]
) -> str:
    """Confidence from the hours of evidence (low for a partial run, which is said first);
    adds the guide's Option 1 answer to the reasons."""
    if partial:  # "safe per the load tests" only holds for the part of them that ran
        opt1["verdict"] += f" (from a partial run: {', '.join(r.label for r in partial)})"
    reasons.append(
        f"{G}, Scaling Options, Option 1 (512 MB): {opt1['verdict']} — "
        + "; ".join(f"{c['criterion']}: {c['status']}" for c in opt1["criteria"])
    )
    history_h = sum(r.history_s for r in ev) / 3600
    confidence = "high" if history_h >= 48 else ("medium" if history_h >= 24 else "low")
    if partial:
        confidence = "low"
        reasons.insert(
            0,
            "Partial evidence: "
            + ", ".join(r.label for r in partial)
            + " did not run the whole load profile, so its peaks and latencies may be too low "
            "(confidence set to low)",
        )
    return confidence


def _next_steps(
    ev: list[RunEvidence],
    pick: Preset | None,
    cur: Preset,
    pool: PoolAdvice | None,
    pool_note: str | None,
    upstream_bound: list[LatencyAttribution],
) -> list[str]:
    """What to do next: deploy and watch, and first what the runs did not settle."""
    size = pick.name if pick else cur.name
    steps = [
        f"Deploy {size} (fly.toml [[vm]] size + memory; a `fly scale` "
        "change is reset by the next deploy) and monitor for 24 h (Optimization Checklist)",
        "Check for OOM kills: fly logs | grep -i oom, or the fly_instance_exit_oom metric",
        "Keep the smaller size only if stable for 48 h with p95 latency unchanged "
        "(Right-Sizing Process); otherwise revert to 1 GB",
    ]
    if pool_note and pool is not None:
        steps.append(
            f"Raise the DB pool to {pool.connections} only after a load test with "
            f"DB_POOL_SIZE={pool.connections} at {size} shows the peak × {BUFFER} still fits"
        )
    p95_s = ev[0].limits.p95_ms / 1000
    by_step: dict[tuple[Any, ...], list[str]] = {}
    for att in upstream_bound:
        key = (att.dominant_step, att.what, att.advice, att.upstreams)
        by_step.setdefault(key, []).append(att.run)
    for (step, what, advice, upstreams), labels in by_step.items():
        where = (
            f"; here the upstreams are the lab's '{upstreams}' emulators, so the p95 "
            "measures their configured latencies"
            if upstreams in ("nominal", "degraded")
            else ""
        )
        steps.insert(
            0,
            f"p95 > {p95_s:g} s ({', '.join(labels)}) is upstream-bound — Step {step} ({what}): "
            f"{advice}; cut it with upstream timeouts, caching or concurrent calls, not a "
            f"bigger VM{where}",
        )
    if pick is not None and pick not in {r.preset for r in ev}:
        steps.insert(
            0,
            f"{pick.name} was not load-tested here: run `perflib run load --vm {pick.name}` "
            f"and `perflib compare` it with the {cur.name} run before deploying",
        )
    return steps
