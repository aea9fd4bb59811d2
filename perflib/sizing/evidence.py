"""What the recommender knows about a run: :class:`RunEvidence`, built from the run's
:class:`~perflib.analysis.RunAnalysis` (or from a samples file), never from a second reading of
the raw files."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perflib.analysis import RunAnalysis, analyze_run
from perflib.analysis.resources import cpu_span_s
from perflib.analysis.slo import SloFile
from perflib.errors import RunDirError
from perflib.fly.events import event_count, oom_count
from perflib.fly.presets import Preset, PricingError, parse_preset
from perflib.rundir import Completeness, RunDir, read_events, read_samples, utc_timestamp
from perflib.sizing.guide import (
    Limits,
    SizingError,
)
from perflib.stats import longest_span_above, percentile

# ----------------------------------------------------------------- evidence from runs


@dataclass
class RunEvidence:
    """What one run (or one samples file) tells the recommender.

    From a run directory it is built from the run's :class:`~perflib.analysis.RunAnalysis`
    (:func:`evidence_from_analysis`): the samples, the events (events.jsonl and service.log,
    one frame), k6's own figures and the requests all come from that analysis, never from a
    second reading of the raw files."""

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
    analysis: RunAnalysis | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits.from_slos, repr=False)

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
        return percentile(self.memory, 95)

    @property
    def memory_limit_mb(self) -> float | None:
        if self.preset is not None:
            return float(self.preset.memory_mb)
        lim = self.samples["memory_limit_mb"].dropna()
        return float(lim.iloc[-1]) if len(lim) else None

    @property
    def oom_count(self) -> int:
        """OOM kills, counted by :func:`perflib.fly.oom_count` (as ``perflib analyze``)."""
        return oom_count(self.events)

    @property
    def restarts(self) -> int:
        return event_count(self.events, "restart")

    @property
    def sustain_window_s(self) -> float:
        """The guide's "consistently" = ``sustained_s`` above a threshold (SLO file), scaled
        with the run's time scale (a run shortened 10× has 6-s "minutes"), never under 3
        sample intervals."""
        return max(self.limits.sustained_s * self.time_scale, 3 * self.sample_interval_s)

    @property
    def sample_interval_s(self) -> float:
        t = self.samples["time"]
        if len(t) < 2:
            return 1.0
        return float(t.diff().dt.total_seconds().median())

    def longest_above(self, column: str, threshold: float) -> float:
        """Longest span of ``column`` above ``threshold`` (:func:`perflib.stats.spans_above`,
        as ``perflib analyze`` measures memory)."""
        return longest_span_above(
            self.samples["time"], self.samples[column], threshold, max_gap_s=self.limits.max_gap_s
        )

    def cpu_longest_above(self, threshold_pct: float) -> float:
        """Longest span of CPU per vCPU above ``threshold_pct`` — the rule ``perflib analyze``
        uses (:func:`perflib.analysis.resources.cpu_span_s`)."""
        return cpu_span_s(
            self.samples["time"],
            self.samples["cpu_pct"],
            threshold_pct,
            cpus=self.preset.cpus if self.preset is not None else 1,
            full_pct=self.limits.cpu_full_pct,
            max_gap_s=self.limits.max_gap_s,
        )

    @property
    def history_s(self) -> float:
        t = self.samples["time"]
        if len(t) < 2:
            return 0.0
        return float((t.iloc[-1] - t.iloc[0]).total_seconds()) + self.sample_interval_s


def _num(stats: Mapping[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = stats.get(k)
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
    return None


def _check_samples(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    if df.empty or df["memory_used_mb"].dropna().empty:
        raise SizingError(f"{origin}: no memory samples (empty samples.csv)")
    return df


def evidence_from_run(path: str | Path | RunDir, *, slos: SloFile | None = None) -> RunEvidence:
    """Analyse a run directory (:func:`perflib.analysis.analyze_run`) and take the evidence
    from that analysis."""
    run = path if isinstance(path, RunDir) else _open_run(path)
    if not run.samples_path.exists():
        raise SizingError(f"{run.path}: missing samples.csv (nothing to size from)")
    return evidence_from_analysis(analyze_run(run, slos=slos))


def evidence_from_analysis(a: RunAnalysis) -> RunEvidence:
    """The recommender's view of an analysed run: samples, events (events.jsonl + service.log,
    as the analysis counted them), preset, profile and k6's own figures."""
    run = a.run
    if a.samples.empty:
        why = [w for w in a.warnings if "samples" in w]
        raise SizingError(
            f"{run.samples_path}: " + (why[0] if why else "no memory samples (empty samples.csv)")
        )
    samples = _check_samples(a.samples, str(run.samples_path))
    preset = None
    if run.preset:
        try:
            preset = parse_preset(run.preset)
        except PricingError as exc:
            raise SizingError(f"{run.path}/manifest.json vm.preset: {exc}") from exc
    stats = a.k6_metrics
    dur = stats.get("http_req_duration", {})
    reqs = stats.get("http_reqs", {})
    failed = stats.get("http_req_failed", {})
    data = stats.get("data_received", {})
    m = run.manifest
    start, end = utc_timestamp(m.get("k6_started_at")), utc_timestamp(m.get("k6_ended_at"))
    duration = (end - start).total_seconds() if start and end and end > start else None
    requests = _num(reqs, "count")
    rate = _num(reqs, "rate")
    if rate is None and requests is not None and duration:
        rate = requests / duration
    if duration is None and requests and rate:
        duration = requests / rate
    return RunEvidence(
        label=run.name,
        samples=samples.sort_values("time").reset_index(drop=True),
        events=a.memory.events,
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
        completeness=a.completeness,
        notes=list(a.input_notes),
        analysis=a,
        limits=Limits.from_slos(a.slos),
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
