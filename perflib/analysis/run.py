"""One run analysed: :func:`analyze_run` gathers every figure into a :class:`RunAnalysis`, the
object the notebooks, the SLO verdicts and sizing consume (nothing downstream re-reads the
run's raw files)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from perflib import ingest as k6
from perflib.analysis.cpu import Throttling, throttling_analysis
from perflib.analysis.latency import (
    ALL,
    Saturation,
    _empty_requests,
    error_breakdown,
    k6_window,
    latency_by_stage,
    latency_over_time,
    saturation,
    stage_table,
    throughput,
    throughput_summary,
    vus_series,
)
from perflib.analysis.resources import (
    CpuSummary,
    MemorySummary,
    cpu_summary,
    memory_summary,
    resource_events,
)
from perflib.analysis.slo import (
    SloError,
    SloFile,
    default_slos,
    load_slos,
    worst,
)
from perflib.analysis.steps import (
    StepAttribution,
    parse_step_log,
    step_attribution,
)
from perflib.analysis.verdicts import (
    slo_verdicts,
)
from perflib.rundir import SAMPLE_COLUMNS, Completeness, RunDir, completeness

# --------------------------------------------------------------------------- one run


@dataclass
class RunAnalysis:
    """Everything :func:`analyze_run` computes for one run directory."""

    run: RunDir
    slos: SloFile
    requests: pd.DataFrame
    points: pd.DataFrame  # vus, vus_max, dropped_iterations
    k6_start: pd.Timestamp | None
    k6_end: pd.Timestamp | None
    stages: pd.DataFrame
    latency_over_time: pd.DataFrame
    latency_by_stage: pd.DataFrame
    throughput: pd.DataFrame
    summary: pd.DataFrame  # per endpoint: requests, failed, error %, req/s, percentiles
    errors: pd.DataFrame
    saturation: Saturation
    vus: pd.DataFrame
    samples: pd.DataFrame
    memory: MemorySummary
    cpu: CpuSummary
    steps: pd.DataFrame
    step_attribution: StepAttribution
    verdicts: pd.DataFrame = field(default_factory=pd.DataFrame)
    completeness: Completeness | None = None  # interrupted / share of the profile that ran
    skipped_cells: int = 0  # samples.csv cells read as unknown (counted, in the warnings)
    #: what reading samples.csv / events.jsonl had to read around (also in ``warnings``)
    input_notes: list[str] = field(default_factory=list)
    #: k6's own end-of-test figures ``{metric: {stat: value}}`` (k6-summary.json, else the
    #: summary of the NDJSON): what sizing reads for p95, request rate and bytes received.
    k6_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: shared-CPU throttling as a finding (:func:`perflib.analysis.cpu.throttling_analysis`):
    #: burst balance over time, exhaustion, throttled time, time to exhaust at the mean load
    throttling: Throttling | None = None

    def __repr__(self) -> str:  # the frames' reprs would flood a notebook
        return (
            f"RunAnalysis(run={self.run.name!r}, profile={self.profile!r}, "
            f"preset={self.run.preset!r}, requests={len(self.requests)}, "
            f"samples={len(self.samples)}, worst_verdict={self.worst_verdict!r})"
        )

    @property
    def profile(self) -> str | None:
        return self.run.profile

    @property
    def worst_verdict(self) -> str:
        return worst(list(self.verdicts["verdict"])) if len(self.verdicts) else "pass"

    def key_figures(self) -> pd.DataFrame:
        """The headline numbers as a tidy frame: ``figure``, ``value``, ``unit``."""
        rows: list[tuple[str, Any, str]] = []
        rep = representative(self.run.manifest)
        lat = "" if rep["latency"] else f" ({NOT_REPRESENTATIVE})"
        cpu = "" if rep["cpu"] else f" ({NOT_REPRESENTATIVE})"
        allrow = self.summary[self.summary["name"] == ALL]
        if len(allrow):
            r = allrow.iloc[0]
            rows += [
                ("requests", int(r["requests"]), ""),
                ("throughput" + lat, r["req_per_s"], "req/s"),
                ("error rate", r["error_rate_pct"], "%"),
                ("latency p50" + lat, r["p50"], "ms"),
                ("latency p95" + lat, r["p95"], "ms"),
                ("latency p99" + lat, r["p99"], "ms"),
            ]
        rows.append(("dropped iterations", self.saturation.dropped_iterations, ""))
        m, c = self.memory, self.cpu
        rows += [
            ("memory idle", m.idle_mb, "MB"),
            ("memory under load", m.load_mb, "MB"),
            ("memory peak", m.peak_mb, "MB"),
            ("memory limit", m.limit_mb, "MB"),
            (f"longest span > {m.sustained_threshold_mb:g} MB", m.longest_above_s, "s"),
            ("OOM kills", m.oom_kills, ""),
            ("restarts", m.restarts, ""),
        ]
        if m.leak is not None:
            rows.append(("memory slope", m.leak.slope_mb_per_min, "MB/min"))
        rows += [
            ("CPU average" + cpu, c.avg_pct, "%"),
            ("CPU p95" + cpu, c.p95_pct, "%"),
            ("time at 100 % CPU" + cpu, c.time_full_s, "s"),
            ("throttled time", c.throttled_s, "s"),
        ]
        t = self.throttling
        if t is not None and t.applies:
            rows.append(("shared-CPU baseline", t.baseline_pct, "%"))
            if t.exhausted_at_t_s is not None:
                rows.append(("burst balance exhausted at", t.exhausted_at_t_s, "s"))
            if t.time_to_exhaust_full_s is not None:  # None: the mean is within the baseline
                rows.append(
                    ("full burst balance lasts at mean load", t.time_to_exhaust_full_s, "s")
                )
        rows.append(("memory leak", m.leak_verdict, ""))
        sa = self.step_attribution
        if sa.dominant_step is not None:
            rows.append(("dominant step (tail)", f"Step {sa.dominant_step}", ""))
        return pd.DataFrame(rows, columns=["figure", "value", "unit"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (key figures, verdicts, saturation, leak, step attribution)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float | np.floating):
                return None if math.isnan(v) else float(v)
            if isinstance(v, np.integer):
                return int(v)
            if isinstance(v, pd.Timestamp):
                return v.isoformat()
            return v

        leak = self.memory.leak
        done = self.completeness.to_dict() if self.completeness else {}
        return {
            "run_dir": str(self.run.path),
            "profile": self.profile,
            "preset": self.run.preset,
            "interrupted": bool(done.get("interrupted", False)),
            "partial": bool(done.get("partial", False)),
            "profile_share": done.get("profile_share"),
            "completeness": done,
            "skipped_cells": self.skipped_cells,
            "worst_verdict": self.worst_verdict,
            "figures": [
                {k: clean(v) for k, v in r.items()} for r in self.key_figures().to_dict("records")
            ],
            "verdicts": [
                {k: clean(v) for k, v in r.items()}
                for r in self.verdicts.drop(columns=["target_value"], errors="ignore").to_dict(
                    "records"
                )
            ],
            "saturation": {
                "saturated": self.saturation.saturated,
                "dropped_iterations": self.saturation.dropped_iterations,
                "evidence": self.saturation.evidence,
            },
            "throttling": self.throttling.to_dict() if self.throttling is not None else None,
            "leak_verdict": self.memory.leak_verdict,
            "leak_note": self.memory.leak_note,
            "leak": None
            if leak is None
            else {
                "slope_mb_per_min": leak.slope_mb_per_min,
                "ci_low": leak.ci_low,
                "ci_high": leak.ci_high,
                "n": leak.n,
                "window": leak.window,
                "method": leak.method,
                "suspected": leak.suspected,
            },
            "step_attribution": {
                "dominant_step": self.step_attribution.dominant_step,
                "share_pct": clean(self.step_attribution.dominant_share_pct),
                "method": self.step_attribution.method,
                "advice": self.step_attribution.advice,
            },
            "warnings": list(self.warnings),
        }


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _threshold(slos: SloFile, kind: Literal["memory_sustained", "cpu_sustained"]) -> float:
    """The file's sustained-span threshold of ``kind``; the shipped file's when it has none
    (a file with only latency SLOs still gets memory and CPU figures)."""
    try:
        return slos.sustained_threshold(kind)
    except SloError:
        return default_slos().sustained_threshold(kind)


def _read_k6(
    run: RunDir, warnings: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """The run's requests, VU/drop points and k6's own figures, read once through
    :mod:`perflib.ingest`; what ingest had to skip or exclude goes to ``warnings``."""
    requests, points = _empty_requests(), pd.DataFrame(columns=["time", "metric", "value"])
    k6_metrics: dict[str, dict[str, Any]] = {}
    if run.summary_path.exists():
        try:
            k6_metrics = k6.read_summary_export(run.summary_path)
        except k6.K6InputError as exc:
            warnings.append(f"{exc}: k6's own figures taken from the NDJSON instead")
    if not run.k6_outputs:
        warnings.append("no k6 output in the run directory: latency and error figures missing")
        return requests, points, k6_metrics
    ing = k6.ingest(run.path)  # parses once into the Parquet cache the readers use
    try:
        warnings.extend(ing.warnings)  # skipped/truncated lines, never silent
        if not k6_metrics:
            k6_metrics = dict(k6.summarize(ing).get("metrics", {}))
    finally:
        ing.cleanup()
    requests = k6.read_requests(run.path)
    excluded = int(requests.attrs.get("excluded_values", 0))
    if excluded:  # as summarize: left out of every statistic, and said
        warnings.append(
            f"k6 output: {excluded} impossible timing value(s) (NaN, infinite, negative or "
            "above a week) read as unknown and left out of the latency figures"
        )
    points = k6.read_points(run.path, metrics=["vus", "vus_max", "dropped_iterations"])
    return requests, points, k6_metrics


def _read_resources(
    run: RunDir, warnings: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """samples.csv and events.jsonl, and the notes on what reading them had to read around.

    A malformed file raises RunDirError (file and line); isolated bad cells and a cut-off last
    line are read around, and said in ``warnings``."""
    samples = run.samples() if run.samples_path.exists() else None
    if samples is None:
        warnings.append("no samples.csv: memory and CPU figures missing")
        samples = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
        samples["time"] = pd.to_datetime(samples["time"], utc=True)
    raw_events = run.events()
    input_notes = list(samples.attrs.get("notes", [])) + list(raw_events.attrs.get("notes", []))
    warnings.extend(input_notes)
    return samples, raw_events, input_notes


def _resources(
    samples: pd.DataFrame, manifest: Mapping[str, Any], events: pd.DataFrame, slo_file: SloFile
) -> tuple[MemorySummary, CpuSummary]:
    """Memory and CPU summaries with the SLO file's knobs and thresholds."""
    st = slo_file.settings
    memory = memory_summary(
        samples,
        manifest,
        events=events,
        thresholds_mb=st.memory_thresholds_mb,
        sustained_s=st.sustained_s,
        max_gap_s=st.max_gap_s,
        leak_min_mb_per_min=st.leak_min_mb_per_min,
        leak_min_window_s=st.leak_min_window_s,
        sustained_threshold_mb=_threshold(slo_file, "memory_sustained"),
    )
    cpu = cpu_summary(
        samples,
        manifest,
        threshold_pct=_threshold(slo_file, "cpu_sustained"),
        full_pct=st.cpu_full_pct,
        sustained_s=st.sustained_s,
        max_gap_s=st.max_gap_s,
    )
    return memory, cpu


NOT_REPRESENTATIVE = "not representative"


def representative(manifest: dict[str, Any]) -> dict[str, Any]:
    """Which of a run's figures stand for the VM's: a guest under TCG (software CPU) gives
    memory figures that do, CPU and latency figures that do not (manifest ``vm.representative``,
    written by :mod:`perflib.guest.isolation`); every other run's figures do."""
    rep = (manifest.get("vm") or {}).get("representative") or {}
    return {
        "memory": rep.get("memory", True),
        "cpu": rep.get("cpu", True),
        "latency": rep.get("latency", True),
        "note": rep.get("note"),
    }


def analyze_run(
    run_dir: str | Path | RunDir,
    *,
    slos: SloFile | str | Path | None = None,
    bucket: str | None = None,
) -> RunAnalysis:
    """Analyse one run directory: every frame and summary above plus the SLO verdicts.

    Parts of the run that are missing (no k6 output after an early OOM, no samples.csv) give
    empty frames and ``no data`` verdicts with a warning, never an exception; a path that is
    not a run directory raises FileNotFoundError.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    slo_file = slos if isinstance(slos, SloFile) else load_slos(slos)
    st = slo_file.settings
    width = bucket or st.bucket
    warnings: list[str] = []
    requests, points, k6_metrics = _read_k6(run, warnings)
    start, end = k6_window(run.manifest, requests)
    # the manifest with the k6 window filled in from the requests when the runner lacked it
    manifest = dict(run.manifest)
    if start is not None and not manifest.get("k6_started_at"):
        manifest["k6_started_at"] = start.isoformat()
        warnings.append("manifest has no k6_started_at: k6 window taken from the requests")
    if end is not None and not manifest.get("k6_ended_at"):
        manifest["k6_ended_at"] = end.isoformat()
    duration = (end - start).total_seconds() if start is not None and end is not None else None
    samples, raw_events, input_notes = _read_resources(run, warnings)
    done = completeness(run, ran_s=duration if not run.manifest.get("k6_ended_at") else None)
    if done.caveat:
        warnings.insert(0, done.caveat)
    rep = representative(run.manifest)
    if rep["note"]:
        warnings.append(rep["note"])
    log_text = _read_text(run.service_log_path)
    events = resource_events(raw_events, {"service.log": log_text}, origin=start)
    memory, cpu = _resources(samples, manifest, events, slo_file)
    steps = parse_step_log(log_text)
    analysis = RunAnalysis(
        run=run,
        slos=slo_file,
        requests=requests,
        points=points,
        k6_start=start,
        k6_end=end,
        stages=stage_table(manifest),
        latency_over_time=latency_over_time(requests, bucket=width, origin=start),
        latency_by_stage=latency_by_stage(requests, manifest),
        throughput=throughput(requests, bucket=width, origin=start),
        summary=throughput_summary(requests, duration_s=duration),
        errors=error_breakdown(requests),
        saturation=saturation(points, origin=start),
        vus=vus_series(points, origin=start),
        samples=samples,
        memory=memory,
        cpu=cpu,
        steps=steps,
        step_attribution=step_attribution(steps),
        k6_metrics=k6_metrics,
        warnings=warnings,
        completeness=done,
        skipped_cells=int(samples.attrs.get("bad_cells", 0)),
        input_notes=input_notes,
    )
    analysis.throttling = throttling_analysis(
        cpu,
        manifest,
        events,
        min_throttled_s=slo_file.settings.throttled_min_s,
        max_gap_s=slo_file.settings.max_gap_s,
    )
    analysis.verdicts = slo_verdicts(analysis, slo_file)
    return analysis
