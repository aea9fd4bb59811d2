"""Memory and CPU of one run from ``samples.csv``, OOM / restart events, and the leak estimate.

Time above a threshold and spans are :mod:`perflib.stats`' (a sample stands for its interval);
OOM kills are counted by :func:`perflib.fly.oom_count`, the one count every path uses."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perflib.analysis.latency import (
    k6_window,
    stage_table,
)
from perflib.analysis.slo import (
    default_slos,
)
from perflib.fly.events import event_count, oom_count, parse_log_lines
from perflib.fly.presets import PricingError, parse_preset
from perflib.rundir import utc_timestamp
from perflib.stats import (
    longest_span_above,
    percentile,
    sample_weights,
    spans_above,
    theil_sen,
)

#: The guide's memory thresholds (MB) reported as "time above"; the VM limit is added per run.
GUIDE_MEMORY_THRESHOLDS_MB: tuple[float, ...] = tuple(default_slos().settings.memory_thresholds_mb)


# --------------------------------------------------------------------------- resource samples


def _timeline(samples: pd.DataFrame, origin: pd.Timestamp | None) -> pd.DataFrame:
    """One row per sample time (several instances → their maximum), with ``t_s``."""
    df = samples.copy()
    if "instance" in df and df["instance"].nunique(dropna=True) > 1:
        num = ["memory_used_mb", "memory_limit_mb", "cpu_pct", "cpu_throttled_pct"]
        df = df.groupby("time", as_index=False)[num].max()
    df = df.sort_values("time", ignore_index=True)
    df["t_s"] = (df["time"] - origin).dt.total_seconds() if origin is not None else np.nan
    return df


@dataclass
class LeakEstimate:
    """Memory slope over a flat-load stage: Theil–Sen estimator with its confidence interval.

    Theil (1950) / Sen (1968): the median of all pairwise slopes, robust to GC spikes and
    outliers; ``scipy.stats.theilslopes`` gives the CI from Kendall's tau distribution
    (Sen 1968). That CI assumes independent residuals; memory samples are autocorrelated, so
    read it as optimistic (docs/analysis.md).
    """

    slope_mb_per_min: float
    ci_low: float
    ci_high: float
    intercept_mb: float
    n: int
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    window: str
    confidence: float = 0.95
    min_mb_per_min: float = 1.0
    method: str = "Theil-Sen (scipy.stats.theilslopes), CI from Kendall's tau"

    @property
    def suspected(self) -> bool:
        """A leak is suspected when the whole CI lies above ``min_mb_per_min``."""
        return self.ci_low > self.min_mb_per_min

    @property
    def evidence(self) -> str:
        return (
            f"slope {self.slope_mb_per_min:+.2f} MB/min, {self.confidence:.0%} CI "
            f"[{self.ci_low:+.2f}, {self.ci_high:+.2f}] over {self.n} samples ({self.window})"
        )


def leak_estimate(
    times: pd.Series,
    memory_mb: pd.Series,
    *,
    confidence: float = 0.95,
    min_mb_per_min: float = 1.0,
    window: str = "",
    min_samples: int = 10,
    min_window_s: float = 0.0,
) -> LeakEstimate | None:
    """Theil–Sen slope of memory (MB/min) with its CI.

    None with fewer than ``min_samples`` samples or a window shorter than ``min_window_s``
    (a short window cannot tell a leak from warm-up: caches and pools fill at first).
    """
    df = pd.DataFrame(
        {
            "t": pd.Series(times).reset_index(drop=True),
            "m": pd.Series(memory_mb, dtype="float64").reset_index(drop=True),
        }
    ).dropna()
    if len(df) < min_samples:
        return None
    x = (df["t"] - df["t"].iloc[0]).dt.total_seconds().to_numpy() / 60.0
    # time covered: first to last sample plus one sampling interval (n samples at 1 s = n s)
    covered_s = (np.ptp(x) + float(np.median(np.diff(x)))) * 60.0 if x.size > 1 else 0.0
    if np.ptp(x) <= 0 or covered_s < min_window_s:
        return None
    res = theil_sen(df["m"].to_numpy(), x, confidence)
    return LeakEstimate(
        slope_mb_per_min=res.slope,
        ci_low=res.low,
        ci_high=res.high,
        intercept_mb=res.intercept,
        n=len(df),
        window_start=df["t"].iloc[0],
        window_end=df["t"].iloc[-1],
        window=window,
        confidence=confidence,
        min_mb_per_min=min_mb_per_min,
    )


#: ``signal`` column of :func:`resource_events`: which line of a log reported the event.
_SIGNALS = {
    "kernel_oom_killer": "kernel",
    "init_reported_oom": "init",
    "kernel_reboot": "reboot",
    "runner_restart": "runner",
    "main_child_exit": "exit",
}


def resource_events(
    events: pd.DataFrame | None = None,
    log_texts: Mapping[str, str] | None = None,
    *,
    origin: Any = None,
) -> pd.DataFrame:
    """One frame of OOM / restart / exit events from ``events.jsonl`` and log texts.

    Log text is read by :func:`perflib.fly.parse_log_lines` (the one log parser); lines
    without a time are kept with ``time`` NaT, so :func:`perflib.fly.oom_count` still counts
    them. Columns: ``time``, ``t_s``, ``type``, ``source`` (``events.jsonl`` or the log's
    name), ``detail``, ``signal`` (``kernel``/``init`` for a log's kills,
    ``reboot``/``runner`` for its restarts, ``event`` for events.jsonl). Sorted by time (log
    lines without a time last).
    """
    parts = []
    if events is not None and len(events):
        ev = events[["time", "type", "detail"]].copy()
        ev["source"] = "events.jsonl"
        ev["signal"] = "event"
        parts.append(ev)
    for name, text in (log_texts or {}).items():
        parsed = parse_log_lines(text.splitlines(), source=name)
        rows = [
            {
                "time": e["time"],
                "type": e["type"],
                "detail": e["detail"],
                "source": name,
                "signal": _SIGNALS.get(e["detail"].get("reason", ""), "log"),
            }
            for e in [*parsed.events, *parsed.untimed_events]
        ]
        if rows:
            parts.append(pd.DataFrame(rows))
    cols = ["time", "t_s", "type", "source", "detail", "signal"]
    if not parts:
        return pd.DataFrame(
            {
                c: pd.Series([], dtype="datetime64[ns, UTC]" if c == "time" else "object")
                for c in cols
            }
        )
    out = pd.concat(parts, ignore_index=True)
    out["time"] = pd.to_datetime(out["time"], utc=True, format="ISO8601")
    org = utc_timestamp(origin)
    out["t_s"] = (out["time"] - org).dt.total_seconds() if org is not None else np.nan
    return out.sort_values("time", na_position="last", ignore_index=True)[cols]


@dataclass
class MemorySummary:
    """Memory figures of one run, on the k6 timeline (MB = MiB)."""

    samples: int
    idle_mb: float | None  # median before k6 started
    idle_max_mb: float | None
    load_mb: float | None  # median while k6 ran
    load_p95_mb: float | None
    peak_mb: float | None  # max over the whole run
    peak_at: pd.Timestamp | None
    peak_t_s: float | None
    limit_mb: float | None
    time_above: pd.DataFrame  # threshold_mb, label, seconds, pct_of_time, longest_span_s, first_at
    sustained_threshold_mb: float
    sustained_s: float
    longest_above_s: float  # longest span above sustained_threshold_mb
    leak: LeakEstimate | None
    leak_note: str  # the estimate's evidence, or why there is none
    events: pd.DataFrame
    oom_kills: int
    restarts: int
    timeline: pd.DataFrame  # time, t_s, memory_used_mb, memory_limit_mb, phase

    @property
    def leak_verdict(self) -> str:
        """One phrase that follows from :attr:`leak` / :attr:`leak_note`: "leak suspected",
        "no leak suspected" (the CI's low end at or below the threshold), "not testable in this
        profile — run `perflib run soak`", or "no estimate"."""
        if self.leak is not None:
            return "leak suspected" if self.leak.suspected else "no leak suspected"
        if self.leak_note.startswith(NOT_TESTABLE):
            return f"{NOT_TESTABLE} — run `{SOAK_COMMAND}`"
        return "no estimate"

    @property
    def sustained_above(self) -> bool:
        """The guide's "[warn] Alert if >800 MB sustained": a span ≥ ``sustained_s``."""
        return self.longest_above_s >= self.sustained_s


def _phase(t_s: pd.Series, end_s: float | None) -> pd.Series:
    phase = np.where(t_s < 0, "idle", "load")
    if end_s is not None:
        phase = np.where(t_s > end_s, "after", phase)
    return pd.Series(phase, index=t_s.index)


def _time_above(
    valid: pd.DataFrame, levels: Sequence[float], limit_mb: float | None, max_gap_s: float
) -> pd.DataFrame:
    """Per level (and the VM limit): seconds above it, share of the run, longest span, first
    time above — all from :func:`perflib.stats.spans_above`."""
    times = valid["time"] if len(valid) else pd.Series(dtype="datetime64[ns, UTC]")
    values = valid["memory_used_mb"] if len(valid) else pd.Series(dtype="float64")
    total_s = float(sample_weights(times, max_gap_s).sum()) if len(valid) else 0.0
    rows = []
    for lvl, label in [
        *[(x, f"> {x:g} MB") for x in levels],
        *([(limit_mb, f"> limit ({limit_mb:g} MB)")] if limit_mb else []),
    ]:
        sp = spans_above(times, values, lvl, max_gap_s=max_gap_s)
        secs = float(sp["span_s"].sum()) if len(sp) else 0.0
        rows.append(
            {
                "threshold_mb": lvl,
                "label": label,
                "seconds": secs,
                "pct_of_time": 100.0 * secs / total_s if total_s else math.nan,
                "longest_span_s": float(sp["span_s"].max()) if len(sp) else 0.0,
                "first_at": sp["start"].min() if len(sp) else pd.NaT,
            }
        )
    cols = ["threshold_mb", "label", "seconds", "pct_of_time", "longest_span_s", "first_at"]
    return pd.DataFrame(rows, columns=cols)


#: What the leak verdict says when the run has no flat-load window long enough.
NOT_TESTABLE = "not testable in this profile"
#: The profile that holds one load long enough for a leak estimate.
SOAK_COMMAND = "perflib run soak"


def _leak_window(
    valid: pd.DataFrame,
    events: pd.DataFrame,
    manifest: Mapping[str, Any] | None,
    min_window_s: float,
) -> tuple[pd.DataFrame, str]:
    """The samples a leak slope may use: the longest stage whose load is flat (``hold …``,
    :func:`perflib.profiles.manifest_stage_loads`) and lasts at least ``min_window_s`` (the
    latest of equals: the most warmed-up), cut at the first unplanned OOM/restart/exit in
    it — with a label saying which. Under a changing load (a ramp) memory follows the load
    (more VUs, more buffers), so a slope there says nothing about a leak; no window → an
    empty frame and the label says why, naming the profile that can test it."""
    stages = stage_table(manifest)
    if not len(stages):
        return valid.iloc[0:0], f"{NOT_TESTABLE} (no stage table) — run `{SOAK_COMMAND}`"
    flat = stages[stages["flat"] & ((stages["end_s"] - stages["start_s"]) >= min_window_s)]
    if not len(flat):
        shown = ", ".join(stages["stage"])
        return valid.iloc[0:0], (
            f"{NOT_TESTABLE}: no flat-load stage of at least {min_window_s:g} s "
            f"({shown}) — run `{SOAK_COMMAND}`"
        )
    dur = flat["end_s"] - flat["start_s"]
    st = flat[dur == dur.max()].iloc[-1]
    t_s = valid["t_s"]
    win = valid[((t_s >= st["start_s"]) & (t_s < st["end_s"])).to_numpy()]
    label = f"stage {st['stage']}, {st['end_s'] - st['start_s']:g} s"
    if len(win) and len(events):
        ev = events
        planned = ev["detail"].map(lambda d: isinstance(d, dict) and bool(d.get("planned")))
        cut = ev[
            ev["type"].isin(["oom_killed", "restart", "service_exit"])
            & ~planned
            & ev["time"].notna()
            & (ev["time"] > win["time"].min())
        ]["time"]
        if len(cut) and (win["time"] >= cut.min()).any():
            win = win[win["time"] < cut.min()]
            label += " (cut at the first OOM/restart)"
    return win, label


def memory_summary(
    samples: pd.DataFrame,
    manifest: Mapping[str, Any] | None = None,
    *,
    events: pd.DataFrame | None = None,
    thresholds_mb: Iterable[float] | None = None,
    sustained_threshold_mb: float | None = None,
    sustained_s: float | None = None,
    max_gap_s: float | None = None,
    leak_min_mb_per_min: float | None = None,
    leak_min_window_s: float | None = None,
) -> MemorySummary:
    """Idle / under-load / peak memory, time above thresholds, sustained-800, leak, OOMs.

    *Idle* is the median of samples before k6 started, *load* the median while k6 ran
    (``k6_started_at``..``k6_ended_at``), *peak* the maximum over the whole run. Time above a
    threshold sums sample weights (:func:`perflib.stats.sample_weights`). The leak slope uses
    the samples of the longest flat-load stage of at least ``leak_min_window_s``, before any
    restart/OOM in it; a profile without one (the guide's load profile ramps throughout)
    gets no estimate and a ``leak_note`` that says it is not testable there — a load that
    changes moves memory without any leak. Knobs left at None take the SLO
    file's defaults (:class:`perflib.analysis.slo.Settings`, ``memory_sustained_800``).
    """
    d = default_slos().settings
    thresholds_mb = d.memory_thresholds_mb if thresholds_mb is None else thresholds_mb
    if sustained_threshold_mb is None:
        sustained_threshold_mb = default_slos().sustained_threshold("memory_sustained")
    leak_min_mb_per_min = (
        d.leak_min_mb_per_min if leak_min_mb_per_min is None else leak_min_mb_per_min
    )
    leak_min_window_s = d.leak_min_window_s if leak_min_window_s is None else leak_min_window_s
    sustained_s = d.sustained_s if sustained_s is None else sustained_s
    max_gap_s = d.max_gap_s if max_gap_s is None else max_gap_s
    start, end = k6_window(manifest)
    ev = events if events is not None else resource_events(origin=start)
    df = _timeline(samples, start) if len(samples) else samples.assign(t_s=pd.Series(dtype=float))
    mem = df["memory_used_mb"] if len(df) else pd.Series(dtype="float64")
    valid = df[mem.notna()] if len(df) else df
    end_s = (end - start).total_seconds() if (start is not None and end is not None) else None
    if start is not None and len(valid):
        phase = _phase(valid["t_s"], end_s)
        idle = valid.loc[phase == "idle", "memory_used_mb"]
        load = valid.loc[phase == "load", "memory_used_mb"]
    else:
        idle, load = pd.Series(dtype="float64"), valid.get("memory_used_mb", pd.Series(dtype=float))
    limit = df["memory_limit_mb"].dropna() if len(df) else pd.Series(dtype="float64")
    limit_mb = (
        float(limit.max())
        if len(limit)
        else (
            float((manifest or {}).get("vm", {}).get("memory_mb"))
            if (manifest or {}).get("vm", {}).get("memory_mb")
            else None
        )
    )
    levels = sorted({*map(float, thresholds_mb), float(sustained_threshold_mb)})
    time_above = _time_above(valid, levels, limit_mb, max_gap_s)
    at_level = time_above.loc[
        time_above["threshold_mb"] == float(sustained_threshold_mb), "longest_span_s"
    ]
    longest = float(at_level.max()) if len(at_level) else 0.0
    leak, leak_note = None, "no leak estimate: no memory samples or k6 start unknown"
    if len(valid) and start is not None:
        win, label = _leak_window(valid, ev, manifest, leak_min_window_s)
        leak = leak_estimate(
            win["time"],
            win["memory_used_mb"],
            window=label,
            min_mb_per_min=leak_min_mb_per_min,
            min_window_s=leak_min_window_s,
        )
        if leak is None:
            leak_note = (
                label
                if label.startswith(NOT_TESTABLE)
                else f"no leak estimate: the {len(win)} samples in {label} cover under "
                f"{leak_min_window_s:g} s (or are fewer than 10)"
            )
    timeline = (
        df[["time", "t_s", "memory_used_mb", "memory_limit_mb"]].copy()
        if len(df)
        else pd.DataFrame(columns=["time", "t_s", "memory_used_mb", "memory_limit_mb"])
    )
    if len(timeline) and start is not None:
        timeline["phase"] = _phase(timeline["t_s"], end_s)
    peak_idx = valid["memory_used_mb"].idxmax() if len(valid) else None
    return MemorySummary(
        samples=int(len(valid)),
        idle_mb=float(idle.median()) if len(idle) else None,
        idle_max_mb=float(idle.max()) if len(idle) else None,
        load_mb=float(load.median()) if len(load) else None,
        load_p95_mb=percentile(load, 95) if len(load) else None,
        peak_mb=float(valid.loc[peak_idx, "memory_used_mb"]) if peak_idx is not None else None,
        peak_at=valid.loc[peak_idx, "time"] if peak_idx is not None else None,
        peak_t_s=float(valid.loc[peak_idx, "t_s"])
        if peak_idx is not None and start is not None
        else None,
        limit_mb=limit_mb,
        time_above=time_above,
        sustained_threshold_mb=float(sustained_threshold_mb),
        sustained_s=float(sustained_s),
        longest_above_s=longest if not math.isnan(longest) else 0.0,
        leak=leak,
        leak_note=leak.evidence if leak is not None else leak_note,
        events=ev,
        oom_kills=oom_count(ev),
        restarts=event_count(ev, "restart"),
        timeline=timeline,
    )


def vcpus(manifest: Mapping[str, Any] | None) -> int:
    """The VM's vCPU count: its preset's (``vm.preset``, as sizing reads it), else
    ``vm.cpus``, else 1."""
    vm = (manifest or {}).get("vm") or {}
    if vm.get("preset"):
        try:
            return parse_preset(str(vm["preset"])).cpus
        except PricingError:  # the manifest's error, which `perflib recommend` reports
            return _declared_cpus(vm)
    return _declared_cpus(vm)


def _declared_cpus(vm: Mapping[str, Any]) -> int:
    try:
        return max(int(vm.get("cpus") or 1), 1)
    except (TypeError, ValueError):
        return 1


def cpu_span_s(
    times: pd.Series,
    cpu_pct: pd.Series,
    threshold_pct: float,
    *,
    cpus: int,
    full_pct: float,
    max_gap_s: float,
) -> float:
    """Longest span of CPU above a level — THE CPU span rule of ``analyze`` (figures and
    verdicts) and ``recommend``. CPU is per vCPU (``cpu_pct`` ÷ vCPUs, docs/guide.md#cpu-targets);
    "above" is strict ("consistently above 70 %"), except that a level at or above
    ``full_pct`` means "at 100 %" and counts samples at or above it."""
    per_vcpu = pd.to_numeric(pd.Series(cpu_pct), errors="coerce") / max(cpus, 1)
    return longest_span_above(
        times, per_vcpu, threshold_pct, max_gap_s=max_gap_s, inclusive=threshold_pct >= full_pct
    )


@dataclass
class CpuSummary:
    """CPU figures of one run, per vCPU (``cpu_pct`` ÷ the VM's vCPUs, docs/guide.md#cpu-targets);
    the ``timeline`` keeps ``cpu_pct`` as sampled (percent of one vCPU)."""

    samples: int
    load_samples: int  # samples while k6 ran (what avg/p95 use)
    avg_pct: float | None  # mean while k6 ran (all samples when the window is unknown)
    p95_pct: float | None
    max_pct: float | None
    full_pct: float  # what counts as "100 %"
    time_full_s: float
    longest_full_s: float
    throttled_s: float | None  # Σ weight × cpu_throttled_pct / 100; None when never known
    throttled_any_s: float | None  # time with any throttling
    threshold_pct: float  # the dedicated-CPU rule's level (70 %)
    sustained_s: float
    longest_above_s: float  # longest span strictly above threshold_pct (cpu_span_s)
    timeline: pd.DataFrame  # time, t_s, cpu_pct, cpu_throttled_pct
    cpus: int = 1  # the VM's vCPUs the figures are divided by

    @property
    def dedicated_cpu_advised(self) -> bool:
        """The guide's rule: CPU sustained above 70 % (or at 100 %) → dedicated (performance) CPU."""
        return self.longest_above_s >= self.sustained_s or self.longest_full_s >= self.sustained_s


def cpu_summary(
    samples: pd.DataFrame,
    manifest: Mapping[str, Any] | None = None,
    *,
    threshold_pct: float | None = None,
    full_pct: float | None = None,
    sustained_s: float | None = None,
    max_gap_s: float | None = None,
) -> CpuSummary:
    """Average / p95 CPU under load, time at 100 %, throttled time, the dedicated-CPU rule.

    Every figure is per vCPU (``cpu_pct`` ÷ the manifest's ``vm.cpus``); spans follow
    :func:`cpu_span_s`. Knobs left at None take the SLO file's defaults (settings, the
    ``cpu_sustained`` threshold).
    """
    d = default_slos().settings
    if threshold_pct is None:
        threshold_pct = default_slos().sustained_threshold("cpu_sustained")
    full_pct = d.cpu_full_pct if full_pct is None else full_pct
    sustained_s = d.sustained_s if sustained_s is None else sustained_s
    max_gap_s = d.max_gap_s if max_gap_s is None else max_gap_s
    start, end = k6_window(manifest)
    df = _timeline(samples, start) if len(samples) else samples.assign(t_s=pd.Series(dtype=float))
    valid = df[df["cpu_pct"].notna()] if len(df) else df
    if start is not None and len(valid):
        end_s = (end - start).total_seconds() if end is not None else None
        load = valid[_phase(valid["t_s"], end_s) == "load"]
        if len(load) == 0:
            load = valid
    else:
        load = valid
    n = vcpus(manifest)
    w = sample_weights(valid["time"], max_gap_s) if len(valid) else np.array([])
    cpu = valid["cpu_pct"].to_numpy(dtype="float64") / n if len(valid) else np.array([])
    load_cpu = load["cpu_pct"].astype("float64") / n if len(load) else pd.Series(dtype=float)

    def span(level: float) -> float:
        if not len(valid):
            return 0.0
        return cpu_span_s(
            valid["time"], valid["cpu_pct"], level, cpus=n, full_pct=full_pct, max_gap_s=max_gap_s
        )

    thr = valid["cpu_throttled_pct"] if len(valid) else pd.Series(dtype="float64")
    known = thr.notna().to_numpy() if len(thr) else np.array([], dtype=bool)
    throttled_s = throttled_any = None
    if known.any():
        tv = thr.to_numpy(dtype="float64")
        throttled_s = float(np.nansum(w[known] * tv[known] / 100.0))
        throttled_any = float(w[known & (np.nan_to_num(tv) > 0)].sum())
    cols = [c for c in ("time", "t_s", "cpu_pct", "cpu_throttled_pct") if c in df]
    return CpuSummary(
        samples=int(len(valid)),
        load_samples=int(len(load)),
        avg_pct=float(load_cpu.mean()) if len(load) else None,
        p95_pct=percentile(load_cpu, 95) if len(load) else None,
        max_pct=float(cpu.max()) if cpu.size else None,
        full_pct=full_pct,
        time_full_s=float(w[cpu >= full_pct].sum()) if cpu.size else 0.0,
        longest_full_s=span(full_pct),
        throttled_s=throttled_s,
        throttled_any_s=throttled_any,
        threshold_pct=threshold_pct,
        sustained_s=sustained_s,
        longest_above_s=span(threshold_pct),
        timeline=df[cols].copy() if len(df) else pd.DataFrame(columns=cols),
        cpus=n,
    )
