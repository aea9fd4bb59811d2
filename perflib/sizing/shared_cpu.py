"""Does the measured CPU load fit a shared vCPU's guaranteed share, and what would the next
size cost? The burst model is :mod:`perflib.fly.burst` (the VM emulation's); the load is
each run's :attr:`RunAnalysis.throttling` (mean CPU while k6 ran)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perflib.analysis.cpu import fmt_duration
from perflib.cost import machine_price
from perflib.fly.burst import INITIAL_BALANCE_S, MAX_BALANCE_S, BurstBalance
from perflib.fly.presets import SHARED_CPUS, Preset, memory_steps
from perflib.sizing.evidence import RunEvidence


def _fit(kind: str, cpus: int, memory_mb: int) -> Preset | None:
    """The ``kind``-``cpus``x preset with at least ``memory_mb`` (its smallest such step)."""
    steps = [m for m in memory_steps(kind, cpus) if m >= memory_mb]
    return Preset(kind, cpus, steps[0]) if steps else None


def shared_cpu_advice(
    runs: Sequence[RunEvidence], pick: Preset | None, region: str, price_set: str
) -> dict[str, Any] | None:
    """When the heaviest run's mean CPU under load exceeds ``pick``'s shared baseline
    (6.25 % per vCPU): how long a fresh / full burst balance lasts at that load on ``pick``
    (balance ÷ (load − baseline)), the next shared size whose baseline covers the load and
    performance-1x, with their prices. None when ``pick`` is not shared or no run exceeds it.
    """
    if pick is None or pick.cpu_kind != "shared":
        return None
    loads = [
        (r.label, r.analysis.throttling.mean_load_pct)
        for r in runs
        if r.analysis is not None
        and r.analysis.throttling is not None
        and r.analysis.throttling.mean_load_pct is not None
    ]
    if not loads:
        return None
    label, load = max(loads, key=lambda x: x[1])
    base_pct = 100.0 * pick.cpu_capacity
    if load <= base_pct:
        return None
    model = BurstBalance(pick.cpu_capacity)
    fresh = model.time_to_exhaust_s(load / 100, INITIAL_BALANCE_S * pick.cpus)
    full = model.time_to_exhaust_s(load / 100, MAX_BALANCE_S * pick.cpus)
    options = []
    nxt = next(
        (
            p
            for n in SHARED_CPUS
            if n > pick.cpus and 100.0 * Preset("shared", n, 0).cpu_capacity >= load
            for p in [_fit("shared", n, pick.memory_mb)]
            if p is not None
        ),
        None,
    )
    perf = _fit("performance", 1, pick.memory_mb)
    pick_usd = machine_price(pick, region, price_set)
    for p in (nxt, perf):
        if p is not None:
            usd = machine_price(p, region, price_set)
            options.append(
                {
                    "preset": p.name,
                    "baseline_pct": round(100.0 * p.cpu_capacity, 2),
                    "monthly_usd": usd,
                    "extra_usd": round(usd - pick_usd, 2),
                }
            )
    costs = "; ".join(
        f"{o['preset']} (baseline {o['baseline_pct']:g} %) ${o['monthly_usd']:.2f}/30 d "
        f"({o['extra_usd']:+.2f})"
        for o in options
    )
    reason = (
        f"Shared CPU: {label} averaged {load:.1f} % CPU under load, above the {pick.size} "
        f"baseline of {base_pct:g} % — at that load a fresh Machine's burst balance lasts "
        f"{fmt_duration(fresh)} and a full one {fmt_duration(full)}, then {pick.name} is "
        f"throttled to {base_pct:g} % whatever its memory"
        + (f"; sustained load needs {costs} (price set {price_set})" if costs else "")
    )
    return {
        "run": label,
        "mean_load_pct": round(load, 2),
        "baseline_pct": base_pct,
        "preset": pick.name,
        "time_to_exhaust_fresh_s": fresh,
        "time_to_exhaust_full_s": full,
        "options": options,
        "reason": reason,
    }
