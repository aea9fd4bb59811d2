"""Analysis of one run (or two): latency, throughput, errors, memory, CPU, steps, SLO verdicts.

Modules in data-flow order: :mod:`.latency` (k6 requests), :mod:`.resources` (samples and
events), :mod:`.steps` (service.log step timings), :mod:`.slo` (the SLO file) and
:mod:`.verdicts`, :mod:`.cpu` (shared-CPU throttling), :mod:`.run` (:func:`analyze_run` → :class:`RunAnalysis`, what sizing consumes),
:mod:`.compare` (two runs or groups). Methods and their sources: docs/analysis.md."""

from __future__ import annotations

from perflib.analysis.compare import (
    Comparison,
    Side,
    compare_runs,
)
from perflib.analysis.cpu import (
    Throttling,
    replay_balance,
    throttling_analysis,
)
from perflib.analysis.gate import (
    DeployGate,
    UpstreamFloor,
    deploy_gate,
    upstream_floor,
)
from perflib.analysis.latency import (
    AFTER,
    ALL,
    BEFORE,
    DEFAULT_PERCENTILES,
    Saturation,
    assign_stage,
    error_breakdown,
    error_rate,
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
    GUIDE_MEMORY_THRESHOLDS_MB,
    CpuSummary,
    LeakEstimate,
    MemorySummary,
    cpu_summary,
    leak_estimate,
    memory_summary,
    resource_events,
)
from perflib.analysis.run import (
    RunAnalysis,
    analyze_run,
)
from perflib.analysis.slo import (
    DEFAULT_SLO_PATH,
    SEVERITY,
    SUPPORTED_VERSIONS,
    Kind,
    Op,
    Settings,
    Slo,
    SloError,
    SloFile,
    Verdict,
    default_slos,
    judge,
    load_slos,
    parse_slos,
    percentile_of,
    worst,
)
from perflib.analysis.steps import (
    STEP_ADVICE,
    StepAttribution,
    parse_step_log,
    step_attribution,
)
from perflib.analysis.verdicts import (
    slo_verdicts,
)

__all__ = [
    "DeployGate",
    "UpstreamFloor",
    "deploy_gate",
    "upstream_floor",
    "AFTER",
    "BEFORE",
    "ALL",
    "Comparison",
    "CpuSummary",
    "DEFAULT_PERCENTILES",
    "DEFAULT_SLO_PATH",
    "GUIDE_MEMORY_THRESHOLDS_MB",
    "Kind",
    "LeakEstimate",
    "MemorySummary",
    "Op",
    "RunAnalysis",
    "SEVERITY",
    "STEP_ADVICE",
    "SUPPORTED_VERSIONS",
    "Saturation",
    "Settings",
    "Side",
    "Slo",
    "SloError",
    "SloFile",
    "StepAttribution",
    "Verdict",
    "analyze_run",
    "assign_stage",
    "compare_runs",
    "cpu_summary",
    "default_slos",
    "error_breakdown",
    "error_rate",
    "judge",
    "k6_window",
    "latency_by_stage",
    "latency_over_time",
    "leak_estimate",
    "load_slos",
    "memory_summary",
    "parse_slos",
    "parse_step_log",
    "percentile_of",
    "resource_events",
    "saturation",
    "slo_verdicts",
    "stage_table",
    "Throttling",
    "replay_balance",
    "throttling_analysis",
    "step_attribution",
    "throughput",
    "throughput_summary",
    "vus_series",
    "worst",
]
