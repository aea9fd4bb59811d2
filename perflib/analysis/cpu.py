"""Shared-CPU throttling of one run as a finding: the burst balance over time, when it ran
out, the throttled time, and how long the measured load takes to spend a balance.

The model is Fly's (:mod:`perflib.fly.burst`, the class the VM emulation enforces): a shared
vCPU is guaranteed 6.25 %, anything above spends a burst balance that accrues at that rate,
and an empty balance means throttling to the baseline. A service whose *mean* load is above
the baseline is throttled sooner or later whatever its RAM; the run shows when.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perflib.analysis.resources import CpuSummary
from perflib.analysis.slo import default_slos
from perflib.fly.burst import INITIAL_BALANCE_S, MAX_BALANCE_S, BurstBalance
from perflib.fly.presets import Preset, PricingError, parse_preset
from perflib.stats import spans_above


@dataclass
class Throttling:
    """Shared-CPU throttling of one run (``RunAnalysis.throttling``).

    CPU shares are percent of one vCPU summed over the VM's vCPUs (as ``samples.csv`` has
    them), so ``baseline_pct`` is 6.25 × vCPUs for a shared preset and ``mean_load_pct`` is
    comparable with it. ``throttled`` is the measured fact (``cpu_throttled_pct`` samples or
    ``throttled`` events) when the run recorded it, else the model's exhaustion.
    """

    preset: str | None
    cpu_kind: str  # "shared" | "performance" | "unknown"
    applies: bool  # a shared preset: the burst model applies
    baseline_pct: float | None  # guaranteed CPU, % of one vCPU (6.25 per shared vCPU)
    mean_load_pct: float | None  # mean CPU while k6 ran, % of one vCPU (summed over vCPUs)
    exceeds_baseline: bool  # the mean load is above the guaranteed share
    initial_balance_s: float | None
    max_balance_s: float | None
    throttled: bool
    basis: str  # "measured" (samples / events) or "modelled" (burst balance replay)
    throttled_s: float | None  # Σ weight × cpu_throttled_pct / 100 (CpuSummary.throttled_s)
    throttled_any_s: float | None  # time with any throttling
    first_throttled_t_s: float | None  # measured onset (s since k6 start)
    exhausted_at_t_s: float | None  # when the replayed balance first reached 0
    min_balance_s: float | None
    #: seconds the measured mean load takes to spend a fresh Machine's / a full balance
    time_to_exhaust_fresh_s: float | None
    time_to_exhaust_full_s: float | None
    #: throttled stretches (start_t_s, end_t_s, span_s) from cpu_throttled_pct
    spans: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: time, t_s, cpu_pct, balance_s: the replayed burst balance (empty when not shared)
    balance: pd.DataFrame = field(default_factory=pd.DataFrame)
    statement: str = ""

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float | np.floating):
                return None if math.isnan(v) else round(float(v), 3)
            return v

        keys = [
            "preset", "cpu_kind", "applies", "baseline_pct", "mean_load_pct",
            "exceeds_baseline", "initial_balance_s", "max_balance_s", "throttled", "basis",
            "throttled_s", "throttled_any_s", "first_throttled_t_s", "exhausted_at_t_s",
            "min_balance_s", "time_to_exhaust_fresh_s", "time_to_exhaust_full_s", "statement",
        ]  # fmt: skip
        out = {k: clean(getattr(self, k)) for k in keys}
        out["spans"] = [{k: clean(v) for k, v in r.items()} for r in self.spans.to_dict("records")]
        return out


def _preset(manifest: Mapping[str, Any]) -> Preset | None:
    vm = manifest.get("vm") or {}
    spec = vm.get("preset")
    if not spec:
        return None
    try:
        return parse_preset(str(spec), strict=False)
    except PricingError:
        return None


def _balances(manifest: Mapping[str, Any], cpus: int) -> tuple[float, float]:
    """The emulation's recorded balances (already × vCPUs), else Fly's per-vCPU defaults."""
    emu = (manifest.get("vm") or {}).get("emulation") or {}
    initial = emu.get("initial_balance_s")
    full = emu.get("max_balance_s")
    return (
        float(initial) if initial is not None else INITIAL_BALANCE_S * cpus,
        float(full) if full is not None else MAX_BALANCE_S * cpus,
    )


def replay_balance(
    timeline: pd.DataFrame, baseline_cpus: float, initial_s: float, max_s: float
) -> pd.DataFrame:
    """The burst balance after each sample, replaying :class:`perflib.fly.burst.BurstBalance`
    over the CPU samples: sample i's ``cpu_pct`` is its interval's mean, so it spends
    ``cpu_pct/100 × (t_i − t_{i−1})`` CPU-seconds. A missing CPU value leaves the balance
    unchanged (no evidence either way); the first sample starts at ``initial_s``."""
    cols = ["time", "t_s", "cpu_pct", "balance_s"]
    if not len(timeline):
        return pd.DataFrame(columns=cols)
    df = timeline.sort_values("time", ignore_index=True)
    secs = (df["time"] - df["time"].iloc[0]).dt.total_seconds().to_numpy(dtype="float64")
    cpu = pd.to_numeric(df["cpu_pct"], errors="coerce").to_numpy(dtype="float64")
    bal = BurstBalance(baseline_cpus, initial_s, max_s)
    out = np.empty(len(df))
    for i in range(len(df)):
        dt = secs[i] - secs[i - 1] if i else 0.0
        used = baseline_cpus * dt if math.isnan(cpu[i]) else cpu[i] / 100.0 * dt
        out[i] = bal.update(used, dt)
    return pd.DataFrame(
        {"time": df["time"], "t_s": df["t_s"], "cpu_pct": df["cpu_pct"], "balance_s": out}
    )


def _measured_spans(cpu: CpuSummary, max_gap_s: float) -> pd.DataFrame:
    tl = cpu.timeline
    cols = ["start_t_s", "end_t_s", "span_s"]
    if "cpu_throttled_pct" not in tl or not tl["cpu_throttled_pct"].notna().any():
        return pd.DataFrame(columns=cols)
    sp = spans_above(tl["time"], tl["cpu_throttled_pct"], 0.0, max_gap_s=max_gap_s)
    if not len(sp):
        return pd.DataFrame(columns=cols)
    t_of = dict(zip(tl["time"], tl["t_s"], strict=False))
    return pd.DataFrame(
        {
            "start_t_s": [t_of.get(t, math.nan) for t in sp["start"]],
            "end_t_s": [t_of.get(t, math.nan) for t in sp["end"]],
            "span_s": sp["span_s"].to_numpy(),
        },
        columns=cols,
    )


def _event_onset(events: pd.DataFrame | None) -> float | None:
    """t_s of the first ``throttled`` event (the VM emulation's / Fly sampler's)."""
    if events is None or not len(events) or "type" not in events:
        return None
    th = events[events["type"] == "throttled"]
    if not len(th):
        return None
    is_start = np.array([not isinstance(d, dict) or d.get("state") != "end" for d in th["detail"]])
    t = pd.to_numeric(th.loc[is_start, "t_s"], errors="coerce").dropna()
    return float(t.min()) if len(t) else None


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "never"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


def throttling_analysis(
    cpu: CpuSummary,
    manifest: Mapping[str, Any] | None,
    events: pd.DataFrame | None = None,
    *,
    min_throttled_s: float | None = None,
    max_gap_s: float | None = None,
) -> Throttling:
    """The run's shared-CPU throttling: measured (``cpu_throttled_pct``, ``throttled``
    events) and modelled (the burst balance replayed over ``cpu_pct``), the time a steady
    load at the run's mean takes to spend a fresh Machine's balance (``initial``, 5 s per
    vCPU) and a full one (500 s per vCPU): balance ÷ (mean − baseline). A run counts as
    throttled from ``min_throttled_s`` of throttled time (the SLO file's
    ``throttled_min_s``) — shorter blips do not confound a comparison."""
    st = default_slos().settings
    min_throttled_s = st.throttled_min_s if min_throttled_s is None else min_throttled_s
    max_gap_s = st.max_gap_s if max_gap_s is None else max_gap_s
    m = manifest or {}
    preset = _preset(m)
    kind = preset.cpu_kind if preset is not None else str((m.get("vm") or {}).get("cpu_kind") or "")
    kind = kind or "unknown"
    cpus = preset.cpus if preset is not None else cpu.cpus
    mean = cpu.avg_pct * cpu.cpus if cpu.avg_pct is not None else None
    spans = _measured_spans(cpu, max_gap_s)
    onset = _event_onset(events)
    if onset is None and len(spans):
        onset = float(spans["start_t_s"].min())
    measured = cpu.throttled_s is not None or onset is not None
    if kind != "shared":
        baseline = 100.0 * cpus if kind == "performance" else None
        thr = bool((cpu.throttled_s or 0.0) >= min_throttled_s)
        return Throttling(
            preset=preset.name if preset else None, cpu_kind=kind, applies=False,
            baseline_pct=baseline, mean_load_pct=mean,
            exceeds_baseline=bool(baseline is not None and mean is not None and mean > baseline),
            initial_balance_s=None, max_balance_s=None, throttled=thr,
            basis="measured" if measured else "modelled", throttled_s=cpu.throttled_s,
            throttled_any_s=cpu.throttled_any_s, first_throttled_t_s=onset,
            exhausted_at_t_s=None, min_balance_s=None, time_to_exhaust_fresh_s=None,
            time_to_exhaust_full_s=None, spans=spans,
            statement="no shared-CPU burst model: "
            + ("a performance vCPU is not throttled to a baseline" if kind == "performance"
               else "the run's preset is unknown"),
        )  # fmt: skip
    baseline_cpus = preset.cpu_capacity if preset is not None else 0.0
    initial, full = _balances(m, cpus)
    balance = replay_balance(cpu.timeline, baseline_cpus, initial, full)
    empty = balance[balance["balance_s"] <= 0.0] if len(balance) else balance
    exhausted_at = float(empty["t_s"].iloc[0]) if len(empty) else None
    model = BurstBalance(baseline_cpus, initial, full)
    load_cpus = (mean or 0.0) / 100.0
    fresh = model.time_to_exhaust_s(load_cpus, initial) if mean is not None else None
    whole = model.time_to_exhaust_s(load_cpus, full) if mean is not None else None
    if measured:
        throttled = (cpu.throttled_s or 0.0) >= min_throttled_s
    else:
        throttled = exhausted_at is not None
    out = Throttling(
        preset=preset.name if preset else None, cpu_kind=kind, applies=True,
        baseline_pct=100.0 * baseline_cpus, mean_load_pct=mean,
        exceeds_baseline=bool(mean is not None and mean > 100.0 * baseline_cpus),
        initial_balance_s=initial, max_balance_s=full, throttled=bool(throttled),
        basis="measured" if measured else "modelled", throttled_s=cpu.throttled_s,
        throttled_any_s=cpu.throttled_any_s, first_throttled_t_s=onset,
        exhausted_at_t_s=exhausted_at,
        min_balance_s=float(balance["balance_s"].min()) if len(balance) else None,
        time_to_exhaust_fresh_s=fresh, time_to_exhaust_full_s=whole, spans=spans,
        balance=balance,
    )  # fmt: skip
    out.statement = throttling_statement(out)
    return out


def throttling_statement(t: Throttling) -> str:
    """The finding in one or two sentences, each figure printed beside its word."""
    if not t.applies:
        return t.statement
    parts = []
    if t.throttled:
        when = (
            f" from t = {t.first_throttled_t_s:.0f} s"
            if t.first_throttled_t_s is not None
            else (f" from t = {t.exhausted_at_t_s:.0f} s" if t.exhausted_at_t_s is not None else "")
        )
        secs = f" for {t.throttled_s:.0f} s" if t.throttled_s is not None else ""
        parts.append(
            f"throttled{secs}{when}: the shared-CPU burst balance ran out "
            f"({t.basis}; baseline {t.baseline_pct:g} % of a vCPU)"
        )
    else:
        low = f", lowest {t.min_balance_s:.1f} s" if t.min_balance_s is not None else ""
        parts.append(f"no throttling (burst balance {t.initial_balance_s:g} s at start{low})")
    if t.mean_load_pct is not None:
        rel = "above" if t.exceeds_baseline else "at or below"
        s = (
            f"mean CPU {t.mean_load_pct:.1f} % is {rel} the {t.preset} baseline "
            f"{t.baseline_pct:g} %"
        )
        if t.exceeds_baseline:
            s += (
                f": at this load a fresh Machine's {t.initial_balance_s:g} s balance lasts "
                f"{fmt_duration(t.time_to_exhaust_fresh_s)} and a full {t.max_balance_s:g} s one "
                f"{fmt_duration(t.time_to_exhaust_full_s)}, then it is throttled whatever its RAM"
            )
        parts.append(s)
    return "; ".join(parts)
